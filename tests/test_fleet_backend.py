"""twofa-fleetd's backend, in-process: callers take turns on the one connection in
arrival order, and a caller that waited past its deadline leaves the line."""

from __future__ import annotations

import threading
import time

from pam_twofa.fleet.backend import FairLock


def test_the_connection_is_handed_over_in_arrival_order() -> None:
    lock = FairLock()
    assert lock.acquire(0)
    order: list[int] = []

    def waiter(i: int) -> None:
        assert lock.acquire(10)
        order.append(i)
        lock.release()

    threads = []
    for i in range(8):
        th = threading.Thread(target=waiter, args=(i,))
        th.start()
        threads.append(th)
        deadline = time.monotonic() + 5
        while len(lock._waiters) < i + 1:  # queued before the next one starts
            assert time.monotonic() < deadline
            time.sleep(0.001)
    lock.release()
    for th in threads:
        th.join(10)
    assert order == list(range(8))
    assert lock.acquire(0)  # free again
    lock.release()


def test_a_waiter_past_its_deadline_leaves_the_line() -> None:
    lock = FairLock()
    assert lock.acquire(0)
    started = time.monotonic()
    assert not lock.acquire(0.05)
    assert 0.04 < time.monotonic() - started < 2
    assert len(lock._waiters) == 0
    lock.release()
    assert lock.acquire(0) and not lock.acquire(0)
