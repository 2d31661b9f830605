"""The last clock check, kept in ``state_dir/clock.json`` for the module and the admin.

``twofa-clockcheck`` writes it (atomically, 0600); ``twofa-admin status`` shows it;
the PAM module reads it only when it refuses a code, to tell the user the server
clock may be off. The reader is on the login path, so it stays cheap: ``fastjson``
(no ``json``), no network, and it never raises: the hint is advice, and a missing,
foreign or garbled status file must not change a login's outcome.
"""

from __future__ import annotations

from pam_twofa import fastjson, fsutil
from pam_twofa.errors import TwofaError
from pam_twofa.login import ClockHint
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSION = 1
# An older status is not trusted to describe the clock now (the timer runs hourly).
STALE_SECONDS = 2 * 86400

IN_SYNC = "in-sync"  # offset within the limit, automatic sync on or unknown
OFFSET = "offset"  # offset over the limit
SYNC_OFF = "sync-off"  # offset within the limit but automatic sync is off
NO_ANSWER = "no-answer"  # no server answered
VERDICTS = (IN_SYNC, OFFSET, SYNC_OFF, NO_ANSWER)


class ClockStatus(Record):
    """What the module and ``twofa-admin status`` need from the last check."""

    checked_at: float
    verdict: str
    max_offset: float
    offset: float | None = None  # None: no server answered
    server: str | None = None
    sync: str = "unknown"  # automatic time sync: on, off, unknown

    def offset_beyond(self, covered: float, now: float) -> float | None:
        """The measured offset if it exceeds ``covered`` seconds and is recent."""
        if self.offset is None or abs(self.offset) <= covered:
            return None
        if not -300 <= now - self.checked_at <= STALE_SECONDS:
            return None
        return self.offset

    def describe(self) -> str:
        """One line for people, e.g. for ``twofa-admin status``."""
        from pam_twofa.login import format_time

        text = f"checked {format_time(self.checked_at)}"
        if self.offset is not None:
            text += f", offset {self.offset:+.3f} s"
            if self.server:
                text += f" from {self.server}"
        words = {
            IN_SYNC: "in sync",
            OFFSET: f"OFF: more than {self.max_offset:g} s",
            SYNC_OFF: "automatic time sync is OFF",
            NO_ANSWER: "no NTP server answered",
        }
        return f"{text} ({words.get(self.verdict, self.verdict)})"


def write(path: str, document: dict[str, Any]) -> None:
    """Replace the status file with ``document`` (must hold ClockStatus's keys)."""
    fsutil.atomic_write(path, fastjson.dumps({"version": VERSION, **document}).encode() + b"\n")


def _num(value: object) -> bool:
    return isinstance(value, int | float) and type(value) is not bool and abs(value) < 1e12


def parse(data: bytes) -> ClockStatus | None:
    """A status from the file's bytes, or None when it is not one we understand."""
    try:
        doc = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if type(doc) is not dict or doc.get("version") != VERSION:
        return None
    at, verdict, limit = doc.get("checked_at"), doc.get("verdict"), doc.get("max_offset")
    offset, server, sync = doc.get("offset"), doc.get("server"), doc.get("sync", "unknown")
    if not (_num(at) and _num(limit) and verdict in VERDICTS):
        return None
    assert at is not None and limit is not None
    if not (offset is None or _num(offset)) or not (server is None or type(server) is str):
        return None
    if sync not in ("on", "off", "unknown"):
        return None
    return ClockStatus(checked_at=float(at), verdict=verdict, max_offset=float(limit),
                       offset=None if offset is None else float(offset), server=server,
                       sync=sync)


def read(path: str) -> ClockStatus | None:
    """The last check, or None (no file, not ours, unreadable or malformed)."""
    try:
        data = fsutil.read_file(path, "clock status")
    except TwofaError:
        return None
    return None if data is None else parse(data)


class FileHint(ClockHint):
    """The core's ``ClockHint`` from the status file at ``path``, read when asked
    (on a refused code only), never the network; never widens a window."""

    def __init__(self, path: str) -> None:
        self.path = path

    def offset_beyond(self, covered: float, now: float) -> float | None:
        status = read(self.path)
        return None if status is None else status.offset_beyond(covered, now)
