"""``twofa-admin doctor`` with ``store.backend: postgresql`` (issue 15 item 4 on the
fleet): the host tree of tests/doctor_support.py, a real PostgreSQL and a real
twofa-fleetd whose socket is inside the tree. Each check is shown broken (named,
with its severity, exit 1 unless info) and fixed (gone)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor_support import Host, host, named, problems
from tests.fleet_support import ADMIN, Daemon, FleetDb, daemons, fleet_db, fleet_template, start
from tests.harness.wait import wait_until

__all__ = ["daemons", "fleet_db", "fleet_template", "host"]

SOCKET = "/run/fleetd/fleetd.sock"  # inside the tree: Daemon(root/run, "fleetd")


class FleetHost:
    """The doctor's host tree with a fleet policy; ``daemon`` serves its socket."""

    def __init__(self, host: Host, db: FleetDb, daemons: list[Daemon]) -> None:
        self.host, self.db, self.daemons = host, db, daemons
        self.daemon: Daemon | None = None

    def policy(self, dsn: str | None = None, admin_dsn: str | None = ADMIN,
               socket: str = SOCKET) -> None:
        lines = ["mandatory: {scope: admins}", "store:", "  backend: postgresql",
                 "  postgresql:", f"    dsn: \"{dsn or self.db.server.dsn('host1')}\"",
                 f"    socket: {socket}"]
        if admin_dsn:
            lines.append(f"    admin_dsn: \"{self.db.server.dsn(admin_dsn)}\"")
        self.host.policy.write_text("\n".join(lines) + "\n")

    def start_daemon(self) -> None:
        self.daemon = start(self.daemons, self.host.root / "run", "fleetd",
                            self.db.server.dsn("host1"))
        assert self.daemon.socket == str(self.host.root) + SOCKET

    def doctor(self) -> tuple[int, list[dict[str, object]]]:
        return self.host.doctor()


@pytest.fixture
def fleet_host(host: Host, fleet_db: FleetDb, daemons: list[Daemon]) -> Iterator[FleetHost]:
    fh = FleetHost(host, fleet_db, daemons)
    fh.policy()
    yield fh


def checks(found: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(f["check"], f["severity"]) for f in problems(found)]


def test_the_fleet_host_set_up_right_has_nothing_to_report(fleet_host: FleetHost) -> None:
    fleet_host.start_daemon()
    rc, found = fleet_host.doctor()
    assert (rc, checks(found)) == (0, []), found
    assert not [f for f in found if str(f["check"]).startswith("fleet")], found


def test_no_daemon_then_database_down_then_back(fleet_host: FleetHost) -> None:
    rc, found = fleet_host.doctor()  # broken: nothing listens on the socket
    assert (rc, checks(found)) == (1, [("fleet", "error")]), found
    assert SOCKET in str(named(found, "fleet")[0]["message"])
    fleet_host.start_daemon()
    assert fleet_host.doctor()[0] == 0  # fixed
    fleet_host.db.server.stop("fast")  # broken: the daemon cannot reach the database
    rc, found = fleet_host.doctor()
    assert (rc, checks(found)) == (1, [("fleet-database", "error")]), found
    assert "answers 'offline'" in str(found[0]["message"])
    fleet_host.db.server.start()  # fixed: the daemon reconnects by itself
    daemon = fleet_host.daemon
    assert daemon is not None
    wait_until(lambda: daemon.check("root", "").get("result") != "offline", timeout=15,
               what="the daemon back online")
    assert fleet_host.doctor()[0] == 0


def test_a_password_in_the_dsn_is_named_with_its_line(fleet_host: FleetHost) -> None:
    fleet_host.start_daemon()
    fleet_host.policy(dsn=fleet_host.db.server.dsn("host1") + " password=hunter2")
    rc, found = fleet_host.doctor()
    policy = named(found, "policy")
    assert rc == 1 and [f["severity"] for f in policy] == ["error"], found
    assert policy[0]["line"] == 5 and "must not hold a password" in str(policy[0]["message"])
    assert "hunter2" not in str(found)  # the finding never repeats the secret
    fleet_host.policy()  # fixed
    assert fleet_host.doctor()[0] == 0


def test_tcp_without_certificate_verification(fleet_host: FleetHost) -> None:
    fleet_host.start_daemon()  # the policy's dsn is what doctor reads; the daemon has its own
    for dsn in ("host=db.example.org dbname=twofa user=web1",
                "host=db.example.org dbname=twofa sslmode=require",
                "postgresql://web1@db1.example.org,db2.example.org/twofa?"
                "target_session_attrs=read-write"):
        fleet_host.policy(dsn=dsn)
        rc, found = fleet_host.doctor()
        assert (rc, checks(found)) == (1, [("fleet-tls", "warning")]), (dsn, found)
    fleet_host.policy(dsn="host=db.example.org dbname=twofa sslmode=verify-full "
                          "sslrootcert=/etc/pam-twofa/fleet-ca.crt")
    assert fleet_host.doctor()[0] == 0
    fleet_host.policy(dsn="host=/run/postgresql dbname=twofa")  # a Unix socket: no TLS
    assert fleet_host.doctor()[0] == 0


def test_unit_installed_but_not_enabled(fleet_host: FleetHost) -> None:
    fleet_host.start_daemon()
    units = fleet_host.host.root / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    unit = Path(__file__).resolve().parent.parent / "systemd" / "pam-twofa-fleetd.service"
    (units / unit.name).write_text(unit.read_text())
    rc, found = fleet_host.doctor()
    assert (rc, checks(found)) == (1, [("fleet-unit", "warning")]), found
    assert named(found, "fleet-unit")[0]["file"] == f"/lib/systemd/system/{unit.name}"
    wants = fleet_host.host.root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / unit.name).symlink_to(f"/lib/systemd/system/{unit.name}")  # systemctl enable
    assert fleet_host.doctor()[0] == 0


def test_admin_dsn_missing_is_information_only(fleet_host: FleetHost) -> None:
    fleet_host.start_daemon()
    fleet_host.policy(admin_dsn=None)
    rc, found = fleet_host.doctor()
    assert rc == 0 and [f["severity"] for f in named(found, "fleet-admin-dsn")] == ["info"]
    fleet_host.policy()
    assert named(fleet_host.doctor()[1], "fleet-admin-dsn") == []


def test_the_file_backend_has_no_fleet_findings(host: Host) -> None:
    rc, found = host.doctor()
    assert rc == 0 and not [f for f in found if str(f["check"]).startswith("fleet")]
