"""Time as an object passed in: the core never reads the system clock itself."""

from __future__ import annotations

import time


class Clock:
    """The source of "now" (seconds since the epoch, UTC)."""

    status_path: str | None = None  # twofa-clockcheck's last result (see clockstatus)

    def __init__(self, status_path: str | None = None) -> None:
        self.status_path = status_path

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def offset_beyond(self, covered: float) -> float | None:
        """This clock's last measured offset if over ``covered`` s; never widens a window.

        Reads the status file only when asked (on a refused code), never the network.
        """
        if self.status_path is None:
            return None
        from pam_twofa import clockstatus

        status = clockstatus.read(self.status_path)
        return None if status is None else status.offset_beyond(covered, self.now())


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
