"""Time as an object passed in: the core never reads the system clock itself."""

from __future__ import annotations

import time


class Clock:
    """The source of "now" (seconds since the epoch, UTC)."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FixedClock(Clock):
    """A clock that only moves when told to: for tests and tools."""

    def __init__(self, now: float) -> None:
        self._now = float(now)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def sleep(self, seconds: float) -> None:
        self._now += seconds


def format_time(epoch: float) -> str:
    """A local time for messages: ``2026-12-01 14:05:00 UTC``-style, no datetime import."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))
