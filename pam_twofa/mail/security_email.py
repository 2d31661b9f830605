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
    TOTP code or a recovery code, checked by ``enrollment.check_code``: the login's
    replay rule, lockout and failure count). Refusals come before anything is mailed.
    """
    from pam_twofa import enrollment

    address = mailer.check_address(address)
    server = mailer.server(policy.smtp)  # refuse early when no server is configured
    code = emergency.new_code(policy.emergency.code_digits)
    ttl = policy.emergency.ttl_seconds
    result = "new"
    with store.update(user) as st:  # refusals raise after the block: a failure counts
        now = clock.now()
        if st.enrolled and proof is None:
            result = "code-needed"
        else:
            emergency.reserve_send(st, policy, now, "verify")  # raises: nothing changes
            if st.enrolled:
                assert proof is not None
                result = enrollment.check_code(st, proof, policy, now)
            if result in ("new", "ok", "recovery"):
                st.email_pending = emergency.seal(code, now, ttl, address=address,
                                                  proven=st.enrolled)
            else:
                st.verify_sends = st.verify_sends[:-1]  # nothing is mailed: no count
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
    problem = None
    old = None
    with store.update(user) as st:  # refusals raise after the block: its changes persist
        pending = st.email_pending
        now = clock.now()
        if not pending:
            problem = "no security email is waiting for verification"
        elif st.enrolled and pending.get("proven") is not True:
            st.email_pending = None
            problem = ("the address was named without a code from your app; "
                       "name it again")
        elif emergency.matches(pending, code, now):
            old, new = st.email, str(pending["address"])
            st.email = new
            st.email_pending = None
            if old != new:
                st.email_changed_at = now
                st.emergency = None  # a code mailed to the old address stops working
        elif not now < float(pending.get("expires", 0)):
            st.email_pending = None
            problem = "the verification code expired; ask for a new one"
        else:
            tries = int(pending.get("tries", 0)) + 1
            st.email_pending = None if tries >= MAX_TRIES else {**pending, "tries": tries}
            problem = ("wrong verification code" if tries < MAX_TRIES
                       else f"{tries} wrong verification codes: ask for a new one")
        address = st.email or ""
        until = emergency.held_until(policy, st, now)
    if problem is not None:
        raise VerifyFailed(problem)
    notified = False
    if old and old != address:
        from pam_twofa.mail import notify

        notified = notify.email_changed(policy, user, old, mailer.mask(address), now=now,
                                        held_until=until)
    return Changed(email=mailer.mask(address), held_until=until, notified=notified)


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
