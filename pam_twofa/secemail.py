"""The security email: an address that becomes active only once proven.

A user names an address (``start``): a verification code is mailed to it and
kept hashed, with the address, in ``state.email_pending``; entering the code
(``confirm``) makes it ``state.email``, the address emergency codes and
notifications go to. Mails count against the same hourly limit as emergency
codes, so the feature cannot be used to flood an address. An address set by an
admin (``set_by_admin``) counts as verified.
"""

from __future__ import annotations

from pam_twofa import emergency, mailer
from pam_twofa.errors import TwofaError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.clock import Clock
    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState
    from pam_twofa.store import Store


MAX_TRIES = 5  # wrong codes before a waiting address is dropped


class VerifyFailed(TwofaError):
    """The verification code is wrong, used or expired."""

    reason = "bad-verification-code"
    exit_name = "FAILED"


def start(user: str, address: str, policy: Policy, store: Store, clock: Clock,
          client: str | None = None) -> str:
    """Mail a verification code to ``address``; return the masked address."""
    address = mailer.check_address(address)
    server = mailer.server(policy.smtp)  # refuse early when no server is configured
    code = emergency.new_code(policy.emergency.code_digits)
    ttl = policy.emergency.ttl_seconds
    with store.update(user) as st:
        now = clock.now()
        emergency.reserve_send(st, policy, now)
        st.email_pending = emergency.seal(code, now, ttl, address=address)
    body = (f"To make this the security email of {user}@{mailer.hostname()}, enter this "
            f"code:\n\n    {code}\n\nIt is valid for {max(1, ttl // 60)} minutes. Requested "
            f"from {client or 'this host'}. If you did not ask for it, ignore this mail.\n")
    mailer.send(server, address, "Verify your security email", body)
    return mailer.mask(address)


def confirm(user: str, code: str, store: Store, clock: Clock) -> str:
    """Activate the pending address if ``code`` matches; return it masked."""
    problem = None
    with store.update(user) as st:  # refusals raise after the block: its changes persist
        pending = st.email_pending
        now = clock.now()
        if not pending:
            problem = "no security email is waiting for verification"
        elif emergency.matches(pending, code, now):
            st.email = str(pending["address"])
            st.email_pending = None
        elif not now < float(pending.get("expires", 0)):
            st.email_pending = None
            problem = "the verification code expired; ask for a new one"
        else:
            tries = int(pending.get("tries", 0)) + 1
            st.email_pending = None if tries >= MAX_TRIES else {**pending, "tries": tries}
            problem = ("wrong verification code" if tries < MAX_TRIES
                       else f"{tries} wrong verification codes: ask for a new one")
        address = st.email or ""
    if problem is not None:
        raise VerifyFailed(problem)
    return mailer.mask(address)


def set_by_admin(user: str, address: str | None, store: Store) -> None:
    """Set (verified) or clear (None) a user's security email."""
    if address is not None:
        address = mailer.check_address(address)
    with store.update(user) as st:
        st.email = address
        st.email_pending = None
        if address is None:
            st.emergency = None


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
