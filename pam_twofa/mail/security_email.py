"""The security email: an address that becomes active only once proven.

A user names an address (``start``): a verification code is mailed to it and
kept hashed, with the address, in ``state.email_pending``; entering the code
(``confirm``) makes it ``state.email``, the address emergency codes and
notifications go to. An enrolled user names an address only after proving the
second factor, the old address is told of a change, and emergency codes pause
for ``emergency.after_email_change_hours`` (issue 11: otherwise whoever runs
code as the user once could name their own address and keep a way in).
Verification mails have their own hourly limit (``state.verify_sends``), so
the feature cannot flood an address nor use up the emergency budget. An
address set by an admin (``set_by_admin``) counts as verified, without a hold.
"""

from __future__ import annotations

from pam_twofa import emergency
from pam_twofa.errors import CodeRefused, VerifyFailed
from pam_twofa.mail import mailer
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pam_twofa.clock import Clock
    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState
    from pam_twofa.store import Store


MAX_TRIES = 5  # wrong codes before a waiting address is dropped


def start(user: str, address: str, policy: Policy, store: Store, clock: Clock,
          proof: str | None = None, client: str | None = None) -> str:
    """Mail a verification code to ``address``; return the masked address.

    An enrolled user must first prove the second factor with ``proof`` (a current
    TOTP code or a recovery code, checked as at a login: replay, lockout and
    failure count). Refusals come before anything is mailed (``name_address``).
    """
    from pam_twofa import enrollment

    address = mailer.check_address(address)
    server = mailer.server(policy.smtp)  # refuse early when no server is configured
    code = emergency.new_code(policy.emergency.code_digits)
    ttl = policy.emergency.ttl_seconds
    result = store.email_start(user, address, code, proof, policy, clock.now())
    if result == "code-needed":
        raise CodeRefused("two-factor authentication is on for your account: give a current "
                          "code from your app or a recovery code to change the security "
                          "email", "code-needed")
    if result not in ("new", "ok", "recovery"):
        raise CodeRefused(enrollment.REFUSAL_MESSAGES.get(result, result), result)
    body = (f"To make this the security email of {user}@{mailer.hostname()}, enter this "
            f"code:\n\n    {code}\n\nIt is valid for {max(1, ttl // 60)} minutes. Requested "
            f"from {client or 'this host'}. If you did not ask for it, ignore this mail.\n")
    mailer.send(server, address, "Verify your security email", body)
    return mailer.mask(address)


def name_address(st: UserState, address: str, code: str, proof: str | None, policy: Policy,
                 now: float, *, enrolled: bool, claim: Callable[[str | None], str]) -> str:
    """Under the user's lock, the rule of ``start`` (both backends): an enrolled user
    needs a proof; the mail counts against the hourly verification budget (``SendLimit``
    raised, nothing changed); ``claim(proof)`` (None when not ``enrolled``) is the
    backend's check of the proof, as at a login, and its note of the address:
    ``new``/``ok``/``recovery`` or a refusal. ``st`` keeps the code, sealed, with the
    address; a refusal mails nothing, so it does not count in the budget."""
    if enrolled and proof is None:
        return "code-needed"
    emergency.reserve_send(st, policy, now, "verify")  # raises: nothing changes
    result = claim(proof if enrolled else None)
    if result in ("new", "ok", "recovery"):
        st.email_pending = emergency.seal(code, now, policy.emergency.ttl_seconds,
                                          address=address, proven=enrolled)
    else:
        st.verify_sends = st.verify_sends[:-1]
    return result


class Changed(Record):
    """What ``confirm`` did: the new address (masked) and when emergency codes return."""

    email: str
    held_until: float | None
    notified: bool


def confirm(user: str, code: str, policy: Policy, store: Store, clock: Clock) -> Changed:
    """Activate the pending address if ``code`` matches; the old address is told.

    A change by the user voids a pending emergency code and holds new ones for
    ``emergency.after_email_change_hours``. An address named while 2FA was off
    cannot be confirmed once it is on (its naming was not proven).
    """
    now = clock.now()
    done = store.email_confirm(user, code, policy, now)  # a wrong code counts: committed
    if done["problem"] is not None:
        raise VerifyFailed(done["problem"])
    old, address, until = done["old"], str(done["email"] or ""), done["held_until"]
    notified = False
    if old and old != address:
        from pam_twofa.mail import notify

        notified = notify.email_changed(policy, user, old, mailer.mask(address), now=now,
                                        held_until=until)
    return Changed(email=mailer.mask(address), held_until=until, notified=notified)


def settle(st: UserState, code: str, now: float, *, enrolled: bool,
           ) -> tuple[str | None, str | None]:
    """Under the user's lock, the rule of ``confirm`` (both backends): (None, the
    address to make the security email) when ``code`` is the waiting address's code,
    else (the problem, None). A wrong code counts; after ``MAX_TRIES`` the address is
    dropped; an address named while 2FA was off is dropped once it is on."""
    pending = st.email_pending
    if not pending:
        return "no security email is waiting for verification", None
    if enrolled and pending.get("proven") is not True:
        st.email_pending = None
        return "the address was named without a code from your app; name it again", None
    if emergency.matches(pending, code, now):
        st.email_pending = None
        return None, str(pending["address"])
    if not now < float(pending.get("expires", 0)):
        st.email_pending = None
        return "the verification code expired; ask for a new one", None
    tries = int(pending.get("tries", 0)) + 1
    st.email_pending = None if tries >= MAX_TRIES else {**pending, "tries": tries}
    return ("wrong verification code" if tries < MAX_TRIES
            else f"{tries} wrong verification codes: ask for a new one"), None


def change(st: UserState, address: str, now: float) -> str | None:
    """The file store's side of a confirmed address: the old one (to notify); a change
    voids a live emergency code and starts the hold (the fleet's ``email_set`` alike)."""
    old = st.email
    st.email = address
    if old != address:
        st.email_changed_at = now
        st.emergency = None  # a code mailed to the old address stops working
    return old


def set_by_admin(st: UserState, address: str | None) -> None:
    """Set (verified; ``mailer.check_address`` first) or clear (None) the security
    email of the state ``st`` (``FileStore.set_email``, under the user's lock)."""
    if st.email != address:
        st.emergency = None  # a code mailed to the old address stops working
    st.email = address
    st.email_pending = None
    st.email_changed_at = None  # the admin vouches for it: no hold


def masked(state: UserState | None, now: float) -> dict[str, Any]:
    """The user's addresses, masked, for ``twofa-enroll status`` (never in clear)."""
    if state is None:
        return {"email": None, "email_pending": None}
    pending = state.email_pending
    waiting = pending is not None and now < float(pending.get("expires", 0))
    return {
        "email": mailer.mask(state.email) if state.email else None,
        "email_pending": mailer.mask(str(pending["address"])) if waiting and pending else None,
    }
