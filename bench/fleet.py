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

import shutil
from typing import Any

from bench import pamrun
from bench.world import SECRET, Contender, World, code_now
from tests.harness.pamenv import ENTRY_MODULE

FILE = "pam-twofa TOTP (file store)"
FLEET = "pam-twofa TOTP (fleet store)"
TARGET = 1.15


def run(n: int) -> list[dict[str, Any]]:
    from tests.fleet_support import Daemon, FleetDb, prepare
    from tests.harness.pgserver import PgServer, make_template

    world = World()
    tpl = make_template()
    db = None
    daemon = None
    try:
        prepare(tpl)
        db = FleetDb(PgServer(tpl))
        db.enroll("alice", SECRET)
        world.add_user("alice")
        daemon = Daemon(world.tmp, "fleetd", db.server.dsn("host1"))
        fleet_dir = world.tmp / "fleet-state"
        fleet_dir.mkdir(mode=0o700)
        policy = world.tmp / "fleet-policy.yaml"
        policy.write_text("mandatory:\n  scope: none\nstore:\n  backend: postgresql\n"
                          "  postgresql:\n    dsn: \"dbname=twofa\"\n"
                          f"    socket: {daemon.socket}\n")
        world.env.service("twofa")
        world.env.service_raw("fleet", world._stack(
            f"auth required pam_python.so {ENTRY_MODULE} policy={policy} "
            f"state_dir={fleet_dir} log_socket={world.env.log_socket}"))
        su = db.connect()

        def reset_fleet() -> None:
            with su.cursor() as cur:
                cur.execute("UPDATE twofa.users SET last_step = -1 WHERE name = 'alice'")

        with_code = lambda: ["secret", code_now()]  # noqa: E731
        contenders = [Contender(FILE, "twofa", with_code, lambda: world.reset_twofa("alice")),
                      Contender(FLEET, "fleet", with_code, reset_fleet)]
        cpu: dict[str, list[float]] = {}
        times = pamrun.series(world, contenders, n, cpu=cpu)
        rows = pamrun.summarize(times, FILE, cpu)
        for row in rows:
            row["ratio_to_file"] = row.pop("ratio_to_floor")
        return rows
    finally:
        if daemon is not None:
            daemon.stop()
        if db is not None:
            db.close()
        shutil.rmtree(tpl.parent, ignore_errors=True)
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
