"""Progressive lockout: doubling locks (capped), unlock, a success starts over, and the
yearly guess budget of an attacker who knows the password."""

from __future__ import annotations

import pytest

from pam_twofa import policy, schema, verify
from pam_twofa.state import UserState

YEAR = 365 * 86400.0


def _policy(**lock: int) -> policy.LockoutPolicy:
    plain, errors = schema.validate({"lockout": lock})
    assert errors == []
    return policy.build(plain).lockout


DEFAULTS = _policy()


def test_lock_duration_doubles_and_is_capped() -> None:
    assert [verify.lock_duration(DEFAULTS, n) for n in range(1, 12)] == [
        300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 76800, 86400, 86400]
    assert verify.lock_duration(DEFAULTS, 10_000) == 86400  # no overflow at silly levels
    small = _policy(lock_seconds=2, max_lock_seconds=5)
    assert [verify.lock_duration(small, n) for n in (1, 2, 3, 4)] == [2, 4, 5, 5]


def test_max_failures_within_interval_lock() -> None:
    st = UserState("alice")
    t = 1000.0
    for n in range(1, 5):
        assert verify.record_failure(st, DEFAULTS, t + n) is None
        assert verify.locked_until(st, t + n) is None
        assert st.failures == n
    until = verify.record_failure(st, DEFAULTS, t + 5)
    assert until == t + 5 + 300
    assert (st.failures, st.lock_level, st.locked_until) == (5, 1, t + 305)
    assert verify.locked_until(st, t + 304.9) == t + 305
    assert verify.locked_until(st, t + 305) is None  # the lock ends exactly then


def test_each_failure_after_a_lock_doubles_until_the_cap() -> None:
    st = UserState("alice")
    now = 0.0
    for _ in range(5):
        until = verify.record_failure(st, DEFAULTS, now)
    durations = []
    for _ in range(12):
        assert until is not None
        now = until  # the attacker waits out the lock, then tries once more
        until = verify.record_failure(st, DEFAULTS, now)
        assert until is not None
        durations.append(until - now)
    assert durations == [600, 1200, 2400, 4800, 9600, 19200, 38400, 76800, 86400, 86400,
                         86400, 86400]
    assert st.lock_level == 13 and st.failures == 17


def test_failures_outside_the_interval_do_not_add_up() -> None:
    st = UserState("alice")
    for n in range(20):
        assert verify.record_failure(st, DEFAULTS, n * 901.0) is None
    assert st.failures == 20 and st.lock_level == 0
    assert len(st.recent_failures) == 1  # the state stays small
    for n in range(20):
        verify.record_failure(st, _policy(max_failures=1000), 20000.0 + n)
    assert len(st.recent_failures) <= 1000


def test_success_starts_over() -> None:
    st = UserState("alice")
    for n in range(6):
        verify.record_failure(st, DEFAULTS, float(n))
    assert st.lock_level == 2
    verify.record_success(st, 5000.0)
    assert (st.failures, st.recent_failures, st.lock_level, st.locked_until,
            st.last_success) == (0, [], 0, 0, 5000.0)
    # a full max_failures is needed again, and the next lock is the first one
    for n in range(4):
        assert verify.record_failure(st, DEFAULTS, 5001.0 + n) is None
    assert verify.record_failure(st, DEFAULTS, 5010.0) == 5010.0 + 300


def test_unlock_lifts_the_lock_and_forgets() -> None:
    st = UserState("alice")
    for n in range(7):
        verify.record_failure(st, DEFAULTS, float(n))
    assert verify.locked_until(st, 10.0) is not None
    verify.unlock(st)
    assert verify.locked_until(st, 10.0) is None
    assert (st.failures, st.recent_failures, st.lock_level, st.locked_until) == (0, [], 0, 0)
    assert st.last_success is None  # an unlock is not a success
    assert verify.record_failure(st, DEFAULTS, 11.0) is None


def _simulate(pol: policy.LockoutPolicy, seconds: float = YEAR) -> int:
    """An attacker guessing whenever the lock allows, through record_failure itself."""
    st = UserState("mallory")
    now = 0.0
    guesses = 0
    while now < seconds and not verify.suspended(st):
        until = verify.locked_until(st, now)
        if until is not None:
            now = until
            continue
        verify.record_failure(st, pol, now)
        guesses += 1
    return guesses


@pytest.mark.parametrize(("lock", "seconds"), [
    ({}, YEAR),
    ({"max_failures": 3, "lock_seconds": 60, "max_lock_seconds": 3600}, YEAR),
    ({"max_failures": 10, "lock_seconds": 7, "max_lock_seconds": 7}, 86400.0),
    ({"max_failures": 10, "lock_seconds": 7, "max_consecutive_failures": 8}, 86400.0),
    ({}, 86400.0),
])
def test_guesses_per_year_matches_a_simulation(lock: dict[str, int], seconds: float) -> None:
    pol = _policy(**lock)
    assert verify.guesses_per_year(pol, seconds) == _simulate(pol, seconds)


def test_guesses_per_year_defaults() -> None:
    progressive = verify.guesses_per_year(DEFAULTS)
    fixed = verify.guesses_per_year(_policy(max_lock_seconds=300))
    print(f"\nguesses per year, defaults (5 in 900 s, 300 s doubling to 86400 s): "
          f"{progressive}; with a fixed 300 s lock: {fixed}; P(success) with 3 accepted "
          f"codes per guess: {progressive * 3 / 1e6:.5f}")
    # NIST SP 800-63B 5.2.2: never more than 100 in a row (max_consecutive_failures),
    # whatever the lock; before that cap the doubling lock alone allowed 377 a year
    assert progressive == fixed == 100
    uncapped = _policy(max_lock_seconds=86400)  # the doubling lock, as far as 100 goes
    assert verify.guesses_per_year(uncapped, 86400.0) == 5 + 8  # 300 * (2**8 - 1) s
