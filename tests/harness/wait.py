"""Waiting in tests: for a TOTP step with time left, and for a condition (bounded).

``wait_fresh_step``: tests that compute codes now and use them over a few logins must
not straddle a step boundary (the code would turn into the previous step's, or a
replay); tests that used up the codes of the window must wait for a newer step. Both
wait on the real clock: the module under test reads the real time too. The one helper
for that.

``wait_until``: poll for something that happens in another process or thread, with a
deadline, instead of sleeping a guessed while and then asserting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

PERIOD = 30


def wait_fresh_step(margin: float = 5.0, period: int = PERIOD, after: int | None = None) -> int:
    """Return the current step once at least ``margin`` s of it are left and (with
    ``after``) it is newer than step ``after``; sleep into the next step until then.

    ``margin`` must be below ``period``. The sleep is bounded: at most the rest of the
    current step when only the margin is short, plus one step per step to skip.
    """
    if not 0 <= margin < period:
        raise ValueError(f"margin {margin} must be in [0, {period})")
    while True:
        now = time.time()
        step = int(now // period)
        left = (step + 1) * period - now
        if left >= margin and (after is None or step > after):
            return step
        time.sleep(left + 0.05)


def wait_until(probe: Callable[[], T], done: Callable[[T], bool] = bool, *,
               timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Call ``probe`` until ``done(result)`` (default: truthy); return that result.

    Raises AssertionError with the last result after ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or probe!r}; last: {result!r}")
        time.sleep(interval)
