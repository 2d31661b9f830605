"""twofa-fleetd and the login's client: real daemons (Debian's /usr/bin/python3 with
python3-psycopg2, as installed) in front of a real PostgreSQL."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from pam_twofa import fleetclient, totp
from pam_twofa.errors import FleetError
from pam_twofa.fleet.backend import HEALTH_SECONDS
from pam_twofa.fleet.daemon import SPARE
from tests.fleet_support import (
    SLACK,
    TIMEOUT,
    Daemon,
    FleetDb,
    daemons,
    fleet_db,
    fleet_template,
    hung_server,
    start,
)
from tests.harness import rundir
from tests.harness.pgserver import PgServer, free_port

__all__ = ["daemons", "fleet_db", "fleet_template", "hung_server"]

REPO = Path(__file__).resolve().parent.parent


def code_now(secret: str) -> str:
    return totp.totp(totp.b32decode(secret), time.time())


def test_two_daemons_one_fleet_replay_and_lockout(fleet_db: FleetDb, tmp_path: Path,
                                                  daemons: list[Daemon]) -> None:
    secret = fleet_db.enroll("alice")
    d1 = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    d2 = start(daemons, tmp_path, "h2", fleet_db.server.dsn("host2"))
    code = code_now(secret)
    ok = d1.check("alice", code)
    assert ok["result"] == "ok" and len(ok["grant"]) == 48
    assert d2.check("alice", code) == {"result": "replay"}
    assert [d.check("alice", "000000")["failures"] for d in (d1, d2, d1, d2)] == [1, 2, 3, 4]
    assert d2.check("alice", "000000")["locked_until"] > time.time()
    assert d1.check("alice", code_now(secret))["result"] == "locked"
    dev = fleetclient.add_device(d1.socket, 2, "alice", ok["grant"], "sshd", "192.0.2.1", None)
    assert dev["result"] == "locked"  # no device is trusted while the user is locked
    status = fleetclient.status(d2.socket, 2, "alice")
    assert status["enrolled"] is True and status["failures"] == 5 and "secret" not in status


def test_enrollment_through_the_daemon(fleet_db: FleetDb, tmp_path: Path,
                                       daemons: list[Daemon]) -> None:
    d1 = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    begun = fleetclient.enroll_begin(d1.socket, 2, "bob", None, 6, 30, "SHA1")
    assert begun["result"] == "ok"
    secret = begun["secret"]
    assert len(totp.b32decode(secret)) == 20
    assert fleetclient.enroll_confirm(d1.socket, 2, "bob", code_now(secret)) == {"result": "ok"}
    first = fleetclient.first_seen(d1.socket, 2, "carol")["first_seen"]
    assert abs(first - time.time()) < 5
    assert fleetclient.first_seen(d1.socket, 2, "carol")["first_seen"] == first
    assert fleetclient.devices(d1.socket, 2, "bob") == {"devices": []}
    assert fleetclient.emergency_begin(d1.socket, 2, "bob") == {"result": "no-email"}
    wrong = fleetclient.emergency_check(d1.socket, 2, "bob", "12345678")
    assert wrong["result"] == "bad-emergency-code" and wrong["failures"] == 1
    assert fleetclient.revoke_device(d1.socket, 2, "bob", None) == {"revoked": 0}


def test_64_concurrent_logins_through_two_daemons(fleet_db: FleetDb, tmp_path: Path,
                                                  daemons: list[Daemon]) -> None:
    secret = fleet_db.enroll("ivy")
    pair = (start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1")),
            start(daemons, tmp_path, "h2", fleet_db.server.dsn("host2")))
    code = code_now(secret)
    results: list[Any] = [None] * 64
    barrier = threading.Barrier(64)

    def login(i: int) -> None:
        barrier.wait()
        results[i] = pair[i % 2].check("ivy", code)["result"]

    threads = [threading.Thread(target=login, args=(i,)) for i in range(64)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert results.count("ok") == 1 and results.count("replay") == 63


def test_database_stopped_answers_offline_in_time_then_recovers(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    secret = fleet_db.enroll("dave")
    d1 = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    assert d1.check("dave", code_now(secret))["result"] == "ok"
    fleet_db.server.stop("fast")  # immediate could lose commits (synchronous_commit=off)
    for user, enrolled in (("dave", True), ("eve", False), ("dave", True)):
        started = time.monotonic()
        assert d1.check(user, "123456") == {"result": "offline", "enrolled": enrolled}
        assert time.monotonic() - started < TIMEOUT + SLACK
    assert "database offline" in d1.output()
    fleet_db.server.start()
    deadline = time.monotonic() + 10
    while d1.check("dave", "000000")["result"] == "offline":
        assert time.monotonic() < deadline, d1.output()
        time.sleep(0.2)
    assert fleet_db.row("dave")["failures"] == 1


def test_an_enrollment_elsewhere_is_known_offline_within_a_health_check(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    """A user enrolled on another host a few seconds ago, never asked about here, is
    known as enrolled when the database goes away (refused, not let in on the
    password): the list follows enrollments at each health check (5 s), not only at
    its full refresh (60 s)."""
    d1 = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    assert d1.check("fay", "123456")["result"] == "not-enrolled"
    fleet_db.enroll("fay")  # elsewhere: no answer of this daemon says so
    time.sleep(HEALTH_SECONDS + 1.5)
    fleet_db.server.stop("fast")
    assert d1.check("fay", "123456") == {"result": "offline", "enrolled": True}


def test_a_database_restart_between_logins_costs_no_offline_answer(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    secret = fleet_db.enroll("ella")
    d1 = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    assert d1.check("ella", "000000")["failures"] == 1
    fleet_db.server.stop("fast")
    fleet_db.server.start()  # the daemon's connection is dead; its health check is 5 s off
    assert d1.check("ella", code_now(secret))["result"] == "ok"
    assert "offline" not in d1.output()


def test_a_server_that_never_answers_gives_offline_in_time(
        hung_server: int, tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start(daemons, tmp_path, "h1", f"host=127.0.0.1 port={hung_server} user=host1 "
                                       "dbname=postgres sslmode=disable")
    times: list[float] = []
    answers: list[Any] = []

    def login() -> None:
        started = time.monotonic()
        answers.append(d.check("frank", "123456"))
        times.append(time.monotonic() - started)

    def burst() -> int:
        threads = [threading.Thread(target=login) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        time.sleep(8)  # the health check keeps trying meanwhile
        return int(Path(f"/proc/{d.proc.pid}/status").read_text()
                   .split("Threads:")[1].split()[0])

    first = burst()
    assert answers == [{"result": "offline", "enrolled": None}] * 8
    assert max(times) < TIMEOUT + SLACK
    # Abandoned calls leave no thread behind (8 more each burst before abandon()):
    # the accepting threads shrink back to SPARE idle ones (+ the main one, + one
    # started when none was idle), beside health, watchdog and one connect attempt.
    second = burst()
    assert second <= max(first, SPARE + 6), (first, second)
    assert first <= SPARE + 6, first
    started = time.monotonic()
    assert d.check("frank", "1") == {"result": "offline", "enrolled": None}
    assert time.monotonic() - started < TIMEOUT + SLACK


def test_multi_host_dsn_first_host_down_uses_the_second(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    secret = fleet_db.enroll("gina")
    missing = tmp_path / "no-server-here"
    missing.mkdir()
    dsn = (f"host={missing},{fleet_db.server.dir} port=5432,5432 user=host1 "
           "dbname=postgres target_session_attrs=read-write")
    d = start(daemons, tmp_path, "h1", dsn)
    assert d.check("gina", code_now(secret))["result"] == "ok"


def test_a_second_daemon_cannot_take_the_socket_a_stale_one_is_replaced(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    """A second twofa-fleetd started by mistake (or by whoever can run it) must not
    take the live daemon's clients; a socket nobody listens on is replaced, and
    anything else at the path is refused."""
    d1 = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    twice = subprocess.run(
        ["/usr/bin/python3", "-m", "pam_twofa.cli.fleetd", "--policy",
         str(d1.dir / "policy.yaml"), "--socket", d1.socket], cwd=REPO,
        capture_output=True, text=True, timeout=30)
    assert twice.returncode != 0 and "already listens" in twice.stderr, twice
    assert d1.check("gus", "123456")["result"] == "not-enrolled"  # still d1's socket
    d1.stop()
    daemons.remove(d1)
    assert stat.S_ISSOCK(os.lstat(d1.socket).st_mode)  # left behind: stale
    again = subprocess.Popen(
        ["/usr/bin/python3", "-m", "pam_twofa.cli.fleetd", "--policy",
         str(d1.dir / "policy.yaml"), "--socket", d1.socket,
         "--cache", str(tmp_path / "again.json"), "--offline-dir", str(tmp_path / "off")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert again.stdout is not None
        said = [again.stdout.readline() for _ in range(2)]  # reachable, then serving
        assert "serving" in said[-1], said
        assert fleetclient.status(d1.socket, 2, "gus")["enrolled"] is False
    finally:
        again.kill()
        again.wait(5)
    plain = tmp_path / "plain"
    plain.write_text("not a socket")
    refused = subprocess.run(
        ["/usr/bin/python3", "-m", "pam_twofa.cli.fleetd", "--policy",
         str(d1.dir / "policy.yaml"), "--socket", str(plain)], cwd=REPO,
        capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "is not a socket" in refused.stderr, refused
    assert plain.read_text() == "not a socket"


def test_only_root_may_ask_and_requests_are_checked(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start(daemons, tmp_path, "h1", fleet_db.server.dsn("host1"))
    assert os.stat(d.socket).st_mode & 0o777 == 0o600
    os.chmod(d.socket, 0o666)  # even reachable, the kernel's uid decides
    rundir.let_others_traverse(d.dir)
    # The daemon may refuse before the request is sent: the send can then meet a
    # closed socket (EPIPE), the refusal is still there to read.
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
             "try:\n s.sendall(b'{\"op\":\"status\",\"user\":\"root\"}\\n')\n"
             "except OSError:\n pass\nprint(s.recv(999))")
    out = subprocess.run(["/usr/bin/python3", "-c", probe, d.socket], user=65534, group=65534,
                         extra_groups=[], cwd="/",
                         capture_output=True, text=True, check=True, timeout=10).stdout
    assert "not-allowed" in out
    for bad in ({"op": "drop_table"}, {"op": "status", "user": "../x"},
                {"op": "status", "user": "a", "extra": 1},
                {"op": "check_code", "user": "a", "answer": "1" * 1025},
                {"op": "skip_device", "user": "a", "service": "sshd", "ip": "\udcff",
                 "key": None}):
        with pytest.raises(FleetError):
            fleetclient.request(d.socket, 2, **bad)  # type: ignore[arg-type]
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(d.socket)
        s.sendall(b"x" * 10000)
        assert b"too-large" in s.recv(999)
    # hostile answers are wrong answers, counted, and the daemon serves on
    fleet_db.enroll("root")
    for answer in ("\udcff\udcfe123456", "9" * 1024, "\u0663" * 6, "1\n2"):
        assert d.check("root", answer)["result"] == "bad-code", answer
    assert fleet_db.row("root")["failures"] == 4


def test_tls_with_a_client_certificate_per_host(fleet_template: Path, tmp_path: Path,
                                                daemons: list[Daemon]) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost")
    pems = tmp_path / "pem"
    pems.mkdir()
    server_cert.cert_chain_pems[0].write_to_path(str(pems / "server.crt"))
    server_cert.private_key_pem.write_to_path(str(pems / "server.key"))
    ca.cert_pem.write_to_path(str(pems / "ca.crt"))
    client = ca.issue_cert("host1", common_name="host1")
    client.cert_chain_pems[0].write_to_path(str(pems / "host1.crt"))
    client.private_key_pem.write_to_path(str(pems / "host1.key"))
    os.chmod(pems / "host1.key", 0o600)
    srv = PgServer(fleet_template, tls=(str(pems / "server.crt"), str(pems / "server.key"),
                                        str(pems / "ca.crt")))
    try:
        db = FleetDb(srv)
        secret = db.enroll("hank")
        base = (f"host=localhost hostaddr=127.0.0.1 port={srv.port} dbname=postgres "
                f"sslmode=verify-full sslrootcert={pems / 'ca.crt'} "
                f"sslcert={pems / 'host1.crt'} sslkey={pems / 'host1.key'}")
        d = start(daemons, tmp_path, "h1", base + " user=host1")
        assert d.check("hank", code_now(secret))["result"] == "ok"
        # the certificate says host1: it cannot log in as host2
        d2 = start(daemons, tmp_path, "h2", base + " user=host2")
        assert d2.check("hank", "000000") == {"result": "offline", "enrolled": None}
        assert "certificate authentication failed" in d2.output()
        assert free_port() != srv.port
    finally:
        srv.close()


def test_the_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (REPO / "systemd" / "pam-twofa-fleetd.service").read_text()
    assert "ExecStart=/usr/bin/twofa-fleetd --policy /etc/pam-twofa/policy.yaml\n" in unit
    for needed in ("RuntimeDirectoryMode=0755\n", "RuntimeDirectoryPreserve=yes\n",
                   "CapabilityBoundingSet=\n", "NoNewPrivileges=yes\n"):
        assert needed in unit, needed  # the enroll socket shares /run/pam-twofa
    # verify wants ExecStart's binary to exist: this checkout's module under Debian's python
    (tmp_path / "pam-twofa-fleetd.service").write_text(unit.replace(
        "/usr/bin/twofa-fleetd", "/usr/bin/python3 -m pam_twofa.cli.fleetd"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           str(tmp_path / "pam-twofa-fleetd.service")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true",
                               str(tmp_path / "pam-twofa-fleetd.service")],
                              capture_output=True, text=True, timeout=60, check=False)
    level = float(security.stdout.split("Overall exposure level for")[1].split()[1])
    assert level <= 2.0, security.stdout


def test_the_client_loads_only_what_a_login_has(tmp_path: Path) -> None:
    """A login will load fleetclient: no json, socket, psycopg2 or ssl with it."""
    probe = ("import sys; before = set(sys.modules); import pam_twofa.fleetclient; "
             "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run(["/usr/bin/python3", "-S", "-c", probe], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=30).stdout.split()
    assert set(out) <= {"__future__", "pam_twofa", "pam_twofa.fleetclient", "pam_twofa.fastjson",
                        "pam_twofa.errors", "_json", "_socket"}, out
