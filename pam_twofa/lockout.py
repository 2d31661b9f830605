"""Progressive lockout: wrong codes lock the user, each lock after the first longer.

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
Replays and empty answers are not failures (see ``core``) and never count.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.policy import LockoutPolicy
    from pam_twofa.state import UserState


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
