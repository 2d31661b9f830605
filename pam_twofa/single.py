"""Single-prompt mode (module argument ``single_prompt``), for clients that cannot
answer two prompts: like google-authenticator's ``forward_pass``.

The module is stacked *before* the password module, which takes ``use_first_pass``
(or any module that uses an existing PAM_AUTHTOK). It asks once for
"Password and verification code", takes the trailing digits (as many as the user's
TOTP digits) as the code and sets PAM_AUTHTOK to the rest for the next module.

A user who is not enrolled (out of scope, in grace, or unknown) has no code: the
whole answer is the password, and the core's decision (PAM_IGNORE for a user out of
scope or in grace, a refusal otherwise) is unchanged. Trusted devices are neither
offered nor honoured in this mode: the answer already holds a code, and a second
question is what this mode exists to avoid.
"""

from __future__ import annotations

from pam_twofa.errors import TwofaError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.core import Conversation
    from pam_twofa.store import Store

PROMPT = "Password and verification code: "


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
        state = store.load(user)
    except TwofaError:
        return None
    if state is None or not state.enrolled:
        return None
    return state.digits


def take(pamh: Any, conv: Conversation, store: Store, user: str) -> str | None:
    """Ask once; set PAM_AUTHTOK to the password part; return the code part
    (``""`` when there is none), or None when there was no answer."""
    answer = conv.ask(PROMPT)
    if answer is None:
        return None
    password, code = split(answer, user_digits(store, user))
    pamh.authtok = password
    return code
