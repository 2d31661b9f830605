"""Fleet test support: a prepared fleet database per test, host roles, users.

``fleet_template`` (session) runs initdb once and ``fleet init`` on it with eight
host roles (host1 .. host8) and an admin role (fleetadmin, in twofa_admin); each
test's ``fleet_db`` is a fresh copy (~0.3 s) with its own server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from pam_twofa import fleetclient, totp
from pam_twofa.fleet import admin
from pam_twofa.schema import defaults
from tests.harness import rundir
from tests.harness.pgserver import PgServer, make_template
from tests.harness.procs import setpriv_cmd
from tests.harness.proctree import descendants

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 1.0  # store.postgresql.timeout_seconds of the test daemons
SLACK = 0.5  # what the client waits beyond it
HOSTS = tuple(f"host{i}" for i in range(1, 9))  # 8 hosts, as in the races
ADMIN = "fleetadmin"


def prepare(tpl: Path) -> None:
    """Run ``fleet init`` and add the test roles inside the template data dir."""
    srv = PgServer(tpl)
    try:
        conn = admin.connect(srv.dsn())
        admin.init(conn, admin.settings_of(defaults()))
        for host in HOSTS:
            admin.add_host(conn, host)
        with conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {ADMIN} LOGIN IN ROLE twofa_admin")
        conn.close()
        srv.stop("fast")
        shutil.rmtree(tpl)
        shutil.copytree(srv.data, tpl)
        for name in ("postmaster.pid", "postmaster.opts"):
            (tpl / name).unlink(missing_ok=True)
    finally:
        srv.close()


@pytest.fixture(scope="session")
def fleet_template() -> Iterator[Path]:
    tpl = make_template()
    try:
        prepare(tpl)
        yield tpl
    finally:
        shutil.rmtree(tpl.parent, ignore_errors=True)


class FleetDb:
    """A running fleet database and handy connections to it."""

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self._conns: list[Any] = []

    def connect(self, user: str = "postgres") -> Any:
        conn = psycopg2.connect(self.server.dsn(user))
        conn.autocommit = True
        self._conns.append(conn)
        return conn

    def call(self, conn: Any, sql: str, *args: Any) -> Any:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0]

    def settings(self, **values: int) -> None:
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("UPDATE twofa.settings SET "
                        + ", ".join(f"{k} = %({k})s" for k in values), values)

    def enroll(self, user: str, secret: str | None = None, *, digits: int = 6,
               algorithm: str = "SHA1") -> str:
        """``user`` enrolled with ``secret`` (random by default) through the admin role."""
        secret = secret or totp.random_secret()
        conn = self.connect(ADMIN)
        outcome = self.call(conn, "SELECT twofa_api.admin_import(%s, %s, %s, 30, %s, -1, "
                                  "NULL, true)", user, totp.b32decode(secret), digits,
                            algorithm)
        assert outcome in ("added", "replaced")
        return secret

    def row(self, user: str) -> dict[str, Any]:
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT failures, lock_level, twofa.epoch(locked_until), suspended, "
                        "last_step FROM twofa.users WHERE name = %s", (user,))
            f, level, until, suspended, last = cur.fetchone()
        return {"failures": f, "lock_level": level, "locked_until": until,
                "suspended": suspended, "last_step": last}

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self.server.close()


@pytest.fixture
def fleet_db(fleet_template: Path) -> Iterator[FleetDb]:
    db = FleetDb(PgServer(fleet_template))
    try:
        yield db
    finally:
        db.close()


def check(db: FleetDb, conn: Any, user: str, answer: str) -> dict[str, Any]:
    value: dict[str, Any] = db.call(conn, "SELECT twofa_api.check_code(%s, %s)", user, answer)
    return value


class Daemon:
    """``twofa-fleetd`` for one host; ``ask`` is the login's client call."""

    def __init__(self, tmp: Path, name: str, dsn: str, cache: Path | None = None,
                 timeout: float = TIMEOUT, offline: str = "deny",
                 offline_dir: Path | None = None, uid: int | None = None) -> None:
        """``uid``: run as that uid (the login's, e.g. an unprivileged sshd's), which
        the daemon then lets ask; by default as the test (root)."""
        self.dir = tmp / name
        self.dir.mkdir(mode=0o700)
        self.socket = str(self.dir / "fleetd.sock")
        self.offline_dir = offline_dir or self.dir / "offline"  # break-glass cache
        policy = self.dir / "policy.yaml"
        policy.write_text("store:\n  backend: postgresql\n  postgresql:\n"
                          f"    dsn: \"{dsn}\"\n    timeout_seconds: {timeout}\n"
                          f"    offline: {offline}\n")
        policy.chmod(0o600)
        self.log = open(self.dir / "log", "w+")  # noqa: SIM115 (closed in stop)
        cmd = ["/usr/bin/python3", "-m", "pam_twofa.cli.fleetd", "--policy", str(policy),
               "--socket", self.socket, "--cache", str(cache or self.dir / "enrolled.json"),
               "--offline-dir", str(self.offline_dir)]
        env = dict(os.environ)
        if uid is not None:
            for path in (self.dir, policy):
                os.chown(path, uid, uid)
            rundir.let_others_traverse(tmp)
            cmd, env = setpriv_cmd(cmd, env, uid)
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not self.serving():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.02)

    def serving(self) -> bool:
        self.log.seek(0)
        return "serving" in self.log.read()

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def check(self, user: str, answer: str) -> dict[str, Any]:
        return fleetclient.check_code(self.socket, TIMEOUT + SLACK, user, answer)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.log.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts (``start``); all killed at its end."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def start(daemons: list[Daemon], tmp: Path, name: str, dsn: str,
          cache: Path | None = None, **kw: Any) -> Daemon:
    """``twofa-fleetd`` as host ``name`` (a dir of its own under ``tmp``) on ``dsn``
    (``cache``: its enrolled list, by default in its dir; ``timeout``: its
    ``timeout_seconds``; ``offline``, ``offline_dir``: break-glass; ``uid``: see
    ``Daemon``)."""
    d = Daemon(tmp, name, dsn, cache, **kw)
    daemons.append(d)
    return d


@contextlib.contextmanager
def frozen(db: FleetDb) -> Iterator[None]:
    """Every process of the database stopped (SIGSTOP): it accepts connections (the
    kernel's backlog) and never answers, calls in flight hang. Resumed afterwards."""
    first = (db.server.data / "postmaster.pid").read_text().split("\n", 1)[0]
    pids = [int(first), *descendants(int(first))]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.fixture
def hung_server() -> Iterator[int]:
    """A TCP server that accepts and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    yield int(srv.getsockname()[1])
    stop.set()
    th.join(2)
    for s in held:
        s.close()
    srv.close()
