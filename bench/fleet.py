"""Fleet store vs file store: the same TOTP login, one on this host's files, one on
the fleet database through twofa-fleetd, interleaved in one run.

The fleet side: a throwaway PostgreSQL 15 (tests/harness/pgserver.py: Unix socket
only, fsync and synchronous_commit off, as the tests run it), ``fleet init`` with
host roles (tests/fleet_support.py), alice enrolled with the bench's secret, one
``twofa-fleetd`` as host1 on a Unix socket. A login asks the daemon twice (the
view, then the code check). Between runs each side forgets the last step, so the
current code is new again (outside the timed part).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from typing import Any

from bench import pamrun
from bench.world import SECRET, Contender, World, code_now
from tests.harness.pamenv import ENTRY_MODULE

FILE = "pam-twofa TOTP (file store)"
FLEET = "pam-twofa TOTP (fleet store)"
TARGET = 1.15


@contextlib.contextmanager
def fleet_hosts(world: World, hosts: int, users: list[str]) -> Iterator[tuple[Any, list[str]]]:
    """A fleet database with ``users`` enrolled (the bench's secret) and ``hosts``
    daemons (host1..), each behind a PAM service of ``world`` (fleet-1..): yields the
    database (``FleetDb``) and the service names."""
    from tests.fleet_support import Daemon, FleetDb, prepare
    from tests.harness.pgserver import PgServer, make_template

    tpl = make_template()
    db = None
    daemons: list[Daemon] = []
    try:
        prepare(tpl)
        db = FleetDb(PgServer(tpl))
        for user in users:
            db.enroll(user, SECRET)
        services = []
        for i in range(1, hosts + 1):
            daemon = Daemon(world.tmp, f"fleetd-{i}", db.server.dsn(f"host{i}"))
            daemons.append(daemon)
            state = world.tmp / f"fleet-state-{i}"
            state.mkdir(mode=0o700)
            policy = world.tmp / f"fleet-policy-{i}.yaml"
            policy.write_text("mandatory:\n  scope: none\nstore:\n  backend: postgresql\n"
                              "  postgresql:\n    dsn: \"dbname=twofa\"\n"
                              f"    socket: {daemon.socket}\n")
            world.env.service_raw(f"fleet-{i}", world._stack(
                f"auth required pam_python.so {ENTRY_MODULE} policy={policy} "
                f"state_dir={state} log_socket={world.env.log_socket}"))
            services.append(f"fleet-{i}")
        yield db, services
    finally:
        for daemon in daemons:
            daemon.stop()
        if db is not None:
            db.close()
        shutil.rmtree(tpl.parent, ignore_errors=True)


def forget_steps(db: Any) -> None:
    """Every user's last step forgotten: the current code is new again."""
    su = db.connect()
    with su.cursor() as cur:
        cur.execute("UPDATE twofa.users SET last_step = -1, failures = 0")


def run(n: int) -> list[dict[str, Any]]:
    world = World()
    try:
        world.add_user("alice")
        world.env.service("twofa")
        with fleet_hosts(world, 1, ["alice"]) as (db, services):
            with_code = lambda: ["secret", code_now()]  # noqa: E731
            contenders = [
                Contender(FILE, "twofa", with_code, lambda: world.reset_twofa("alice")),
                Contender(FLEET, services[0], with_code, lambda: forget_steps(db))]
            cpu: dict[str, list[float]] = {}
            times = pamrun.series(world, contenders, n, cpu=cpu)
        rows = pamrun.summarize(times, FILE, cpu)
        for row in rows:
            row["ratio_to_file"] = row.pop("ratio_to_floor")
        return rows
    finally:
        world.close()


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        if row["name"] == FLEET:
            ok = row["ratio_to_file"] <= TARGET
            out.append(f"fleet TOTP login: {row['ratio_to_file']}x the file-store login "
                       f"(target <= {TARGET}x): {'met' if ok else 'NOT met'}; "
                       f"CPU time {row.get('cpu_ratio')}x")
    return out
