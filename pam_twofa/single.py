"""Single-prompt mode, for clients that cannot answer two prompts: like
google-authenticator's ``forward_pass``, but the code is checked only after the
password was.

Two lines of the module, around a password module that takes the password from
PAM_AUTHTOK (``use_first_pass``) and is ``requisite``::

    auth required  pam_python.so pam_twofa.py single_prompt=ask
    auth requisite pam_unix.so use_first_pass
    auth required  pam_python.so pam_twofa.py single_prompt=verify

``ask`` asks once for "Password and verification code", takes the trailing digits
(as many as the user's TOTP digits) as the code, sets PAM_AUTHTOK to the rest and
keeps the code in PAM_OLDAUTHTOK. It decides nothing (PAM_IGNORE): a wrong
password ends the stack at the requisite password module, so nobody who lacks the
password can count wrong codes against a user (lock them out), learn whether a
code was right, or use up a right one. ``verify`` takes the kept code, clears it,
and runs the normal decision with it.

Why PAM_OLDAUTHTOK: it belongs to the PAM handle (so to this login only), only a
module can set it (not the application, not the client), auth modules do not read
it, and pam_end wipes it. ``verify`` clears it at once.

A user who is not enrolled (out of scope, in grace, or unknown) has no code: the
whole answer is the password, and the core's decision is unchanged. Trusted
devices are neither offered nor honoured in this mode: the answer already holds a
code, and a second question is what this mode exists to avoid.
"""

from __future__ import annotations

from pam_twofa.errors import TwofaError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.login import Conversation
    from pam_twofa.store import Store

PROMPT = "Password and verification code: "
MARK = "pam_twofa single_prompt code:"  # what ``ask`` leaves in PAM_OLDAUTHTOK


def split(answer: str, digits: int | None) -> tuple[str, str]:
    """(password, code): the last ``digits`` characters are the code when they are
    all ASCII digits; otherwise (or with no ``digits``) the code is empty."""
    if digits is None:
        return answer, ""
    tail = answer[-digits:] if len(answer) >= digits else ""
    if len(tail) == digits and tail.isascii() and tail.isdigit():
        return answer[:-digits], tail
    return answer, ""


def user_digits(store: Store, user: str) -> int | None:
    """The enrolled user's code length, or None (not enrolled, or no usable state:
    then the core decides as for any such user)."""
    try:
        view = store.view(user, 0.0)
    except TwofaError:
        return None
    if view is None or not view.enrolled:
        return None
    return view.digits


def ask(pamh: Any, conv: Conversation, store: Store, user: str) -> bool:
    """Ask once; set PAM_AUTHTOK to the password part and keep the code part
    (``""`` when there is none) for ``take``. False when there was no answer."""
    answer = conv.ask(PROMPT)
    if answer is None:
        return False
    password, code = split(answer, user_digits(store, user))
    pamh.authtok = password
    pamh.oldauthtok = MARK + code
    return True


def take(pamh: Any) -> str | None:
    """The code ``ask`` kept, cleared from the handle; None when ``ask`` did not run
    in this login (a stack without the ask line)."""
    kept = pamh.oldauthtok
    if not isinstance(kept, str) or not kept.startswith(MARK):
        return None
    pamh.oldauthtok = None
    return kept[len(MARK):]
