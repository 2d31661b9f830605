"""The machine-wide lock around every test change to the system (apt-get, dpkg,
/etc/pam.d, users, setuid bits): two checkouts' runs on one machine take turns.

Reentrant within a process: test_deb holds it for the installed package's whole life
while a test inside takes it again for its own /etc changes (a second flock on a new
file description of the same file would wait for ever)."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator

SYSTEM_LOCK = "/run/lock/pam-twofa-system.lock"
_depth = 0


@contextlib.contextmanager
def system_lock(timeout: float = 900) -> Iterator[None]:
    global _depth
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    with open(SYSTEM_LOCK, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{SYSTEM_LOCK} held for {timeout} s") from None
                time.sleep(0.2)
        _depth = 1
        try:
            yield
        finally:
            _depth = 0
            fcntl.flock(f, fcntl.LOCK_UN)
