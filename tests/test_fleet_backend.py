"""twofa-fleetd's backend: callers take turns on the one connection in arrival order,
a caller that waited past its deadline leaves the line (in-process), and a database
that was only slow is online again at once (a daemon and a frozen database)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pam_twofa import fleetclient
from pam_twofa.fleet.backend import FairLock
from tests.fleet_support import (
    SLACK,
    TIMEOUT,
    Daemon,
    FleetDb,
    daemons,
    fleet_db,
    fleet_template,
    frozen,
    start,
)
from tests.harness.wait import wait_until

__all__ = ["daemons", "fleet_db", "fleet_template"]


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


def test_a_database_that_was_only_slow_is_online_again_at_once(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    """A call past its deadline is offline and marks the database so; the health check
    then runs at once (not up to 5 s later), so logins get answers again as soon as
    the database does."""
    d = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    fleet_db.enroll("alice")
    assert fleetclient.status(d.socket, TIMEOUT + SLACK, "alice").get("enrolled") is True
    with frozen(fleet_db):
        started = time.monotonic()
        assert fleetclient.status(d.socket, TIMEOUT + SLACK, "alice") == {
            "result": "offline", "enrolled": True}
        assert time.monotonic() - started < TIMEOUT + SLACK
    resumed = time.monotonic()
    wait_until(lambda: fleetclient.status(d.socket, TIMEOUT + SLACK, "alice"),
               lambda got: "result" not in got and got.get("enrolled") is True, timeout=10)
    assert time.monotonic() - resumed < 1.0  # the health check's next round: 5 s
