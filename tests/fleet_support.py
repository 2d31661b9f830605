"""Fleet test support: a prepared fleet database per test, host roles, users.

``fleet_template`` (session) runs initdb once and ``fleet init`` on it with eight
host roles (host1 .. host8) and an admin role (fleetadmin, in twofa_admin); each
test's ``fleet_db`` is a fresh copy (~0.3 s) with its own server.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from pam_twofa import totp
from pam_twofa.fleet import admin
from pam_twofa.policy import defaults
from tests.harness.pgserver import PgServer, make_template

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
