"""Turning 2FA on and off for a user: secrets, otpauth URIs and status.

Shared by ``twofa-admin``, the enrollment service and inline enrollment, so the
rules (160-bit secrets, TOTP parameters fixed at enrollment, lockout reset)
live in one place. Not on the login path of enrolled users.
"""

from __future__ import annotations

import socket

from pam_twofa import lockout, totp
from pam_twofa.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState

MIN_SECRET_BYTES = 16  # RFC 4226 section 4: at least 128 bits


def check_secret(secret: str) -> str:
    """A base32 secret given by an admin, normalized; refused under 128 bits."""
    try:
        raw = totp.b32decode(secret)
    except ValueError as exc:
        raise UsageError(f"the secret is not base32: {exc}") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise UsageError(f"the secret has {len(raw) * 8} bits; at least 128 are needed")
    return totp.b32encode(raw)


def issuer(policy: Policy) -> str:
    return policy.totp.issuer or socket.gethostname()


def label(user: str, policy: Policy) -> str:
    """The account name shown in the app: ``user@host``."""
    return f"{user}@{socket.gethostname()}"


def uri(user: str, secret: str, policy: Policy, *, digits: int | None = None,
        period: int | None = None, algorithm: str | None = None) -> str:
    """The otpauth:// URI an authenticator app scans (label ``issuer:user@host``)."""
    from urllib.parse import quote, urlencode

    name = issuer(policy)
    query = urlencode({
        "secret": secret,
        "issuer": name,
        "algorithm": algorithm or policy.totp.algorithm,
        "digits": digits or policy.totp.digits,
        "period": period or policy.totp.period,
    }, quote_via=quote)
    return f"otpauth://totp/{quote(name)}:{quote(label(user, policy))}?{query}"


def activate(state: UserState, secret: str, policy: Policy, now: float) -> None:
    """Make ``secret`` the user's active TOTP secret, with the policy's parameters."""
    state.enrolled = True
    state.secret = secret
    state.digits = policy.totp.digits
    state.period = policy.totp.period
    state.algorithm = policy.totp.algorithm
    state.enrolled_at = now
    state.last_step = -1
    state.pending = None
    lockout.unlock(state)


def status(state: UserState | None, now: float) -> dict[str, Any]:
    """What ``status`` commands show of a user: never the secret or codes."""
    if state is None:
        return {"enrolled": False, "failures": 0, "locked": False, "locked_until": None}
    until = lockout.locked_until(state, now)
    return {
        "enrolled": state.enrolled,
        "enrolled_at": state.enrolled_at,
        "failures": state.failures,
        "locked": until is not None,
        "locked_until": until,
        "lock_level": state.lock_level,
        "last_success": state.last_success,
        "first_seen": state.first_seen,
        "recovery_codes_left": len(state.recovery_codes),
        "trusted_devices": len(state.devices),
    }
