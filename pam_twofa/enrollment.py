"""Turning 2FA on and off for a user: secrets, otpauth URIs and status.

Shared by ``twofa-admin``, the enrollment service and inline enrollment, so the
rules (160-bit secrets, TOTP parameters fixed at enrollment, lockout reset)
live in one place. Not on the login path of enrolled users.
"""

from __future__ import annotations

import socket

from pam_twofa import totp, verify
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


def activate(state: UserState, secret: str, policy: Policy, now: float, *,
             digits: int | None = None, period: int | None = None,
             algorithm: str | None = None) -> dict[str, Any]:
    """Make ``secret`` the user's active TOTP secret, with the policy's parameters
    unless others are given (an imported google-authenticator secret keeps its own).

    Every path that (re-)enrolls comes here (admin, ``twofa-enroll``, inline, GA
    import), so one rule holds for all: what the old secret vouched for goes with
    it (trusted devices, a pending emergency code, an address waiting for
    verification); the verified security email stays. Returns what ``revoked``
    tells the person enrolling.
    """
    summary = to_revoke(state)
    state.devices = []
    state.emergency = None
    state.email_pending = None
    state.enrolled = True
    state.secret = secret
    state.digits = digits or policy.totp.digits
    state.period = period or policy.totp.period
    state.algorithm = algorithm or policy.totp.algorithm
    state.enrolled_at = now
    state.last_step = -1
    state.pending = None
    verify.unlock(state)
    return summary


def provision(state: UserState, secret: str, policy: Policy, now: float, codes: list[str],
              *, replace: bool = True, digits: int | None = None, period: int | None = None,
              algorithm: str | None = None) -> dict[str, Any] | None:
    """Under the user's lock: ``activate`` with these recovery ``codes`` (hashed; the
    old ones go); None, changing nothing, when enrolled and ``replace`` is false."""
    if state.enrolled and not replace:
        return None
    summary = activate(state, secret, policy, now, digits=digits, period=period,
                       algorithm=algorithm)
    from pam_twofa import recovery

    recovery.replace(state, list(codes))
    return summary


def to_revoke(state: UserState) -> dict[str, Any]:
    """What ``activate`` would revoke (and keep) of ``state`` now."""
    return {"devices_revoked": len(state.devices),
            "emergency_code_revoked": state.emergency is not None,
            "email_pending_dropped": state.email_pending is not None,
            "email_kept": state.email}


def revoked(summary: dict[str, Any]) -> list[str]:
    """Sentences for the person enrolling: what re-enrollment revoked and kept."""
    from pam_twofa.mail import mailer

    lines = []
    n = int(summary.get("devices_revoked") or 0)
    if n:
        lines.append(f"{n} trusted device{'s' if n != 1 else ''} revoked: "
                     "the next login from each asks for a code.")
    if summary.get("emergency_code_revoked"):
        lines.append("A pending emergency code was revoked.")
    if summary.get("email_pending_dropped"):
        lines.append("An address waiting for verification was dropped.")
    email = summary.get("email_kept")
    if email:
        lines.append(f"The security email {mailer.mask(str(email))} was kept; change it "
                     "with 'twofa-enroll email'.")
    return lines


def grace_until(policy: Policy, enrolled: bool, first_seen: float | None) -> float | None:
    """When a user not enrolled must be (``enrollment.grace_days`` after first seen)."""
    if enrolled or first_seen is None:
        return None
    return first_seen + policy.enrollment.grace_days * 86400


def status(state: UserState | None, now: float) -> dict[str, Any]:
    """What ``status`` commands show of a user: never the secret or codes."""
    if state is None:
        return {"enrolled": False, "failures": 0, "locked": False, "locked_until": None,
                "suspended_since": None}
    until = verify.locked_until(state, now)
    return {
        "enrolled": state.enrolled,
        "enrolled_at": state.enrolled_at,
        "failures": state.failures,
        "locked": until is not None,
        "locked_until": until,
        "lock_level": state.lock_level,
        "suspended_since": state.suspended,  # max_consecutive_failures reached
        "last_success": state.last_success,  # last login with a code
        "last_trusted": state.last_trusted,  # last login from a trusted device
        "first_seen": state.first_seen,
        "recovery_codes_left": len(state.recovery_codes),
        "trusted_devices": len(state.devices),
    }


# --- Pending enrollments and codes proven outside a login (service, inline) ---
#
# ``state.pending`` is ``{"secret": str, "created": float, "expires": float}``:
# a secret shown to the user but not active until a code from it verifies.


def start_pending(state: UserState, policy: Policy, now: float) -> str:
    """A new secret waiting for its first code; replaces any older pending one."""
    secret = totp.random_secret()
    state.pending = {"secret": secret, "created": now,
                     "expires": now + policy.enrollment.pending_ttl_seconds}
    return secret


def pending_secret(state: UserState, now: float) -> str | None:
    """The pending secret if there is one that has not expired (malformed: none)."""
    pending = state.pending
    if not pending:
        return None
    secret, expires = pending.get("secret"), pending.get("expires")
    if type(secret) is not str or not isinstance(expires, (int, float)) or now >= expires:
        return None
    return secret


def check_code(state: UserState, answer: str, policy: Policy, now: float) -> str:
    """Prove an enrolled user's current TOTP or recovery code, exactly as a login does.

    ``verify.verify`` decides (one rule: replay, empty answers, lockout and
    suspension alike). Returns ``ok``, ``recovery``, or a refusal reason:
    ``locked``, ``suspended``, ``replay``, ``empty``, ``bad-code``,
    ``not-enrolled``. Call inside ``Store.update`` and raise only after it, so
    the counted failure is committed. A suspended user proves nothing here: no
    re-enrollment or disabling lifts a suspension, only ``twofa-admin unlock``.
    """
    reason = verify.verify(state, answer, policy, now).reason
    return {"recovery-code": "recovery"}.get(reason, reason)


def begin(state: UserState, proof: str | None, policy: Policy,
          now: float) -> tuple[str, str | None]:
    """Under the user's lock: a new pending secret, after an enrolled user proved the
    second factor with ``proof`` (``check_code``). (``new``, ``ok`` or ``recovery``,
    the secret) or (``code-needed`` or a refusal, None)."""
    result = "new"
    if state.enrolled:
        result = "code-needed" if proof is None else check_code(state, proof, policy, now)
    if result not in ("new", "ok", "recovery"):
        return result, None
    return result, start_pending(state, policy, now)


def confirm(state: UserState, code: str, policy: Policy,
            now: float) -> tuple[str, list[str], dict[str, Any]]:
    """Under the user's lock: activate the pending secret (``confirm_pending``) with
    new recovery codes; (result, the codes in clear or [], what it revoked)."""
    summary = to_revoke(state)  # a re-enrollment revokes these (activate)
    result = confirm_pending(state, code, policy, now)
    if result != "ok":
        return result, [], summary
    from pam_twofa import recovery

    return result, recovery.replace(state), summary


def confirm_pending(state: UserState, answer: str, policy: Policy, now: float) -> str:
    """Activate the pending secret if ``answer`` is its current code.

    Returns ``ok``, ``suspended``, ``locked``, ``no-pending`` or ``bad-code``. A wrong code
    counts in the lockout like a wrong login code; the accepted step becomes
    ``last_step``, so the same code cannot log in again.
    """
    if verify.suspended(state):
        return "suspended"
    if verify.locked_until(state, now) is not None:
        return "locked"
    secret = pending_secret(state, now)
    if secret is None:
        return "no-pending"
    return confirm_secret(state, secret, answer, policy, now)


def confirm_secret(state: UserState, secret: str, answer: str, policy: Policy,
                   now: float) -> str:
    """Activate ``secret`` (shown to the user, kept by the caller) if ``answer`` is
    its current code: ``ok``, or ``locked``, ``bad-code``; counted like ``confirm_pending``."""
    if verify.locked_until(state, now) is not None:
        return "locked"
    tp = policy.totp
    code = totp.normalize_code(answer, tp.digits)
    step = None if code is None else totp.match_step(
        totp.b32decode(secret), code, now, digits=tp.digits, period=tp.period,
        algorithm=tp.algorithm, window=tp.window)
    if step is None:
        verify.record_failure(state, policy.lockout, now)
        return "bad-code"
    activate(state, secret, policy, now)
    state.last_step = step
    verify.record_success(state, now)
    return "ok"


def deactivate(state: UserState) -> None:
    """Turn 2FA off, keeping the lockout history: secret, codes and devices go."""
    state.enrolled = False
    state.secret = None
    state.enrolled_at = None
    state.last_step = -1
    state.pending = None
    state.recovery_codes = []
    state.devices = []


REFUSAL_MESSAGES = {
    "locked": "too many wrong codes: locked; try again later or ask your administrator",
    "suspended": ("two-factor authentication is suspended after too many wrong codes; "
                  "ask your administrator"),
    "empty": "no code given",
    "not-enrolled": "two-factor authentication is not on for your account",
    "replay": "that code was already used; wait for the next one",
    "bad-code": "wrong code",
    "no-pending": "no enrollment in progress (it may have expired); start again",
}
