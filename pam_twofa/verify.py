"""The code-check rule, once, for every caller: login, enrollment service, admin, fleet.

``verify(state, answer, policy, now)`` decides an answer from an enrolled user and
changes the state (held under its lock by the caller: a ``Store`` operation) as it
goes: locked? suspended? then the TOTP step (a step not newer than the last accepted
one is a replay), an empty answer, a recovery code, and the failure count with the
progressive lock and the suspension below. It returns a ``Verdict``: everything the
caller says and logs after the lock is released.

Progressive lockout: wrong codes lock the user, each lock after the first longer.

``max_failures`` wrong codes within ``interval_seconds`` lock the user for
``lock_seconds``. Until the next success, every further wrong code locks again
for twice as long as the lock before, capped at ``max_lock_seconds``. With the
defaults that alone would be ~380 guesses a year for an attacker who knows the
password, against ~105,000 for the same lock without doubling; the suspension
below caps it at 100 in all (``guesses_per_year``).
Attempts while locked are refused without looking at the code and do not count.

NIST SP 800-63B 5.2.2 caps consecutive failed attempts at 100: the
``max_consecutive_failures``-th wrong code since the last success (default and
maximum 100) suspends the second factor: every code, recovery code and emergency
code is refused until an admin unlocks the user (``twofa-admin unlock``). Whoever
gets there has typed the password that many times: the password is known.
Replays and empty answers are not failures (see ``verify`` above) and never count.
"""

from __future__ import annotations

from pam_twofa import totp
from pam_twofa.login import MSG_EMPTY, MSG_REPLAY, MSG_SUSPENDED, MSG_WRONG, format_time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.policy import LockoutPolicy, Policy
    from pam_twofa.state import UserState


class Verdict:
    """What ``verify`` decided under the lock; said to the client after it.

    ``reason``: ``ok``, ``recovery-code``, ``replay``, ``empty``, ``bad-code``,
    ``locked``, ``suspended`` or ``not-enrolled``. Everything a login needs after
    the lock comes with it, so nobody reads the state again: the failures, the new
    lock's end, the suspension, the recovery codes left, the address to notify, and
    (``Store.check_code`` with a trust binding) whether to offer trust.
    """

    def __init__(self, reason: str, message: str | None = None,
                 fields: tuple[tuple[str, Any], ...] = ()) -> None:
        self.reason = reason
        self.message = message
        self.fields = fields
        self.email: str | None = None  # where to send a lock/suspension notice
        self.locked: float | None = None  # the lock this answer started
        self.suspended = False  # this answer suspended the second factor
        self.left: int | None = None  # recovery codes left after one was used
        self.failures = 0
        self.offer_trust = False  # a TOTP success from a device not trusted yet
        self.offline = False  # decided by twofa-fleetd's break-glass cache (fleet offline)

    @property
    def proven(self) -> bool:
        """The answer proved the second factor (a TOTP code or a recovery code)."""
        return self.reason in ("ok", "recovery-code")


def verify(st: UserState, answer: str, policy: Policy, now: float) -> Verdict:
    """The decision on ``answer``, changing ``st`` (held under its lock) as it goes.

    Not counted toward the lockout: an empty answer (no guess was made) and a
    replay, a code of a step not newer than the last accepted one (it proves
    knowledge of a real code; the user typed it twice, e.g. ssh then sudo).
    """
    if not st.enrolled:  # reset by an admin while we were asking
        return Verdict("not-enrolled")
    refused = refusal(st, now)
    if refused is not None:
        return refused
    if not answer.strip():
        return Verdict("empty", MSG_EMPTY)
    step = match(st, answer, policy, now)
    if step is not None and step > st.last_step:
        st.last_step = step
        record_success(st, now)
        return Verdict("ok")
    if step is not None:
        return Verdict("replay", MSG_REPLAY)
    left = _use_recovery_code(st, answer, now)
    if left is not None:
        verdict = Verdict("recovery-code")
        verdict.left = left
        return verdict
    return failed(st, policy, now, MSG_WRONG, "bad-code")


def refusal(st: UserState, now: float) -> Verdict | None:
    """``suspended`` or ``locked`` when no answer may be looked at now, else None."""
    if suspended(st):
        return Verdict("suspended", MSG_SUSPENDED)
    until = locked_until(st, now)
    if until is not None:
        return Verdict("locked", f"Too many wrong codes: locked until {format_time(until)}.",
                       (("locked_until", int(until)),))
    return None


def failed(st: UserState, policy: Policy, now: float, message: str, reason: str) -> Verdict:
    """Count one wrong answer (a TOTP, recovery or emergency code) and say what followed."""
    locked = record_failure(st, policy.lockout, now)
    return wrong(reason, message, st.failures, st.email, suspended(st), locked)


def wrong(reason: str, message: str, failures: int, email: str | None, suspended_now: bool,
          locked: float | None) -> Verdict:
    """A counted wrong answer, worded: the failures, then the suspension or the new lock
    (every backend words it the same: the file store above, the fleet's answers)."""
    verdict = Verdict(reason, message, (("failures", failures),))
    verdict.failures = failures
    verdict.email = email
    if suspended_now:
        verdict.suspended = True
        verdict.message = f"{message} {MSG_SUSPENDED}"
        verdict.fields += (("suspended", "yes"),)
    elif locked is not None:
        verdict.locked = locked
        verdict.message = f"{message} Too many wrong codes: locked until {format_time(locked)}."
        verdict.fields += (("locked_until", int(locked)),)
    return verdict


def match(st: UserState, answer: str, policy: Policy, now: float) -> int | None:
    """The TOTP step ``answer`` is the code of (within the window), or None."""
    code = totp.normalize_code(answer, st.digits)
    if code is None or st.secret is None:
        return None
    return totp.match_step(totp.b32decode(st.secret), code, now, digits=st.digits,
                           period=st.period, algorithm=st.algorithm, window=policy.totp.window)


def _use_recovery_code(st: UserState, answer: str, now: float) -> int | None:
    """Consume the recovery code ``answer``; codes left, or None (hashlib loads only here)."""
    if not st.recovery_codes:
        return None
    from pam_twofa import recovery

    left = recovery.consume(st, answer)
    if left is not None:
        record_success(st, now)
    return left


# --- The progressive lockout (state changes; ``verify`` above decides when) ---

def locked_until(state: UserState, now: float) -> float | None:
    """The end of the user's lock, or None when not locked at ``now``."""
    return state.locked_until if state.locked_until > now else None


def suspended(state: UserState) -> bool:
    """Whether the second factor is suspended (until an admin unlocks the user)."""
    return state.suspended is not None


def lock_duration(policy: LockoutPolicy, level: int) -> float:
    """How long the ``level``-th lock since the last success lasts (level >= 1)."""
    return float(min(policy.lock_seconds * 2 ** min(level - 1, 62), policy.max_lock_seconds))


def record_failure(state: UserState, policy: LockoutPolicy, now: float) -> float | None:
    """Count one wrong code; return the new lock's end if this failure locks.

    The ``max_consecutive_failures``-th failure suspends instead (``suspended``).
    """
    state.failures += 1
    if state.failures >= policy.max_consecutive_failures:
        if state.suspended is None:
            state.suspended = now
        state.recent_failures = []
        return None
    recent = [t for t in state.recent_failures if now - t < policy.interval_seconds]
    recent.append(now)
    state.recent_failures = recent[-policy.max_failures :]
    if state.lock_level > 0 or len(recent) >= policy.max_failures:
        state.lock_level += 1
        state.locked_until = now + lock_duration(policy, state.lock_level)
        state.recent_failures = []
        return state.locked_until
    return None


def record_success(state: UserState, now: float) -> None:
    """A right code starts the count over."""
    state.failures = 0
    state.recent_failures = []
    state.lock_level = 0
    state.locked_until = 0
    state.last_success = now


def unlock(state: UserState) -> None:
    """Lift the lock or suspension and forget the failures (admin action)."""
    state.suspended = None
    state.failures = 0
    state.recent_failures = []
    state.lock_level = 0
    state.locked_until = 0


def guesses_per_year(policy: LockoutPolicy, seconds: float = 365 * 86400.0) -> int:
    """Wrong codes an attacker who knows the password can try in ``seconds``.

    The attacker never succeeds, so the lock level never resets: first
    ``max_failures`` guesses, then one guess per (growing, capped) lock, and never
    more than ``max_consecutive_failures`` (then the second factor is suspended).
    """
    limit = policy.max_consecutive_failures
    guesses = min(policy.max_failures, limit)
    elapsed = 0.0
    level = 1
    while guesses < limit:
        elapsed += lock_duration(policy, level)
        if elapsed >= seconds:
            return guesses
        guesses += 1
        level += 1
    return guesses
