"""``twofa-admin fleet init|add-host|import|status`` against a real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from pam_twofa import enrollment, totp
from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.fleet.admin import SCHEMA_VERSION
from pam_twofa.paths import Paths
from pam_twofa.schema import defaults
from tests.fleet_support import FleetDb, check, fleet_db, fleet_template

__all__ = ["fleet_db", "fleet_template"]

REPO = Path(__file__).resolve().parent.parent


def admin(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    policy = tmp / "policy.yaml"
    if not policy.exists():
        policy.write_text("lockout:\n  max_failures: 7\n")
        policy.chmod(0o600)
    return subprocess.run(
        [sys.executable, "-m", "pam_twofa.cli.admin", "--policy", str(policy),
         "--state-dir", str(tmp / "state"), "--log-socket", str(tmp / "log.sock"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def test_init_creates_is_idempotent_and_copies_the_policy(fleet_db: FleetDb,
                                                          tmp_path: Path) -> None:
    fleet_db.server.psql("CREATE DATABASE fresh")
    dsn = fleet_db.server.dsn(dbname="fresh")
    first = admin(tmp_path, "fleet", "init", "--dsn", dsn)
    assert first.returncode == 0, first.stderr
    assert f"Fleet schema version {SCHEMA_VERSION} created." in first.stdout
    again = admin(tmp_path, "fleet", "init", "--dsn", dsn)
    assert again.returncode == 0 and "is current" in again.stdout
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT max_failures, window_steps FROM twofa.settings")
        assert cur.fetchone() == (7, 1)
    conn.close()
    added = admin(tmp_path, "fleet", "add-host", "web-01.example", "--dsn", dsn)
    assert added.returncode == 0, added.stderr
    assert "hostssl fresh web-01.example HOST-ADDRESS/32 cert" in added.stdout
    assert "already there" in admin(tmp_path, "fleet", "add-host", "web-01.example",
                                    "--dsn", dsn).stdout
    assert fleet_db.server.psql("SELECT rolconnlimit, rolconfig FROM pg_roles "
                                "WHERE rolname = 'web-01.example'") == (
        "8|{statement_timeout=10s}")
    bad = admin(tmp_path, "fleet", "add-host", "Robert'); DROP", "--dsn", dsn)
    assert bad.returncode == 2 and "bad host name" in bad.stderr
    fleet_db.server.psql("CREATE ROLE alien LOGIN")
    alien = admin(tmp_path, "fleet", "add-host", "alien", "--dsn", dsn)
    assert alien.returncode == 1 and "not a pam-twofa host" in alien.stderr
    status = admin(tmp_path, "fleet", "status", "--dsn", dsn, "--json")
    assert status.returncode == 0, status.stderr
    value = json.loads(status.stdout)
    assert value["reachable"] is True and value["version"] == SCHEMA_VERSION
    assert [h["name"] for h in value["hosts"]] == ["web-01.example"]


def test_init_upgrades_an_older_layout_and_refuses_a_newer_one(fleet_db: FleetDb,
                                                               tmp_path: Path) -> None:
    fleet_db.server.psql("ALTER TABLE twofa.users DROP COLUMN suspended")  # before 1's end
    dsn = fleet_db.server.dsn()
    done = admin(tmp_path, "fleet", "init", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    assert fleet_db.server.psql("SELECT count(*) FROM information_schema.columns WHERE "
                                "table_name = 'users' AND column_name = 'suspended'") == "1"
    fleet_db.server.psql("UPDATE twofa.schema_version SET version = 99")
    newer = admin(tmp_path, "fleet", "init", "--dsn", dsn)
    assert newer.returncode == 1 and "schema version 99" in newer.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    done = admin(tmp_path, "fleet", "status", "--dsn", f"host={tmp_path} user=x")
    assert done.returncode == 74 and "cannot connect to the fleet database" in done.stderr
    assert done.stdout == "Database: unreachable\n"
    as_json = admin(tmp_path, "fleet", "status", "--dsn", f"host={tmp_path} user=x", "--json")
    assert as_json.returncode == 74 and json.loads(as_json.stdout) == {"reachable": False}
    none = admin(tmp_path, "fleet", "status")
    assert none.returncode == 2 and "no --dsn" in none.stderr


def test_import_1000_file_store_users_then_the_fleet_accepts_their_codes(
        fleet_db: FleetDb, tmp_path: Path) -> None:
    clock = Clock()
    store = FileStore(Paths(state_dir=str(tmp_path / "state")), clock)
    policy = defaults()
    secrets = {}
    for i in range(1000):
        user = f"user{i:04d}"
        secrets[user] = totp.random_secret()
        with store.update(user) as st:
            enrollment.activate(st, secrets[user], policy, clock.now(),
                                algorithm=("SHA1", "SHA256", "SHA512")[i % 3])
            st.email = f"{user}@example.org" if i % 2 else None
    with store.update("withcodes") as st:
        secrets["withcodes"] = totp.random_secret()
        enrollment.activate(st, secrets["withcodes"], policy, clock.now())
        st.recovery_codes = ["scrypt$16384$8$1$AAAA$BBBB"]
    dsn = fleet_db.server.dsn("fleetadmin")
    started = time.monotonic()
    done = admin(tmp_path, "fleet", "import", "--dsn", dsn)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "added: 1001" in done.stdout and "withcodes" in done.stdout
    host = fleet_db.connect("host1")
    for i, (user, secret) in enumerate(secrets.items()):
        algorithm = ("SHA1", "SHA256", "SHA512")[i % 3] if user != "withcodes" else "SHA1"
        code = totp.totp(totp.b32decode(secret), time.time(), algorithm=algorithm)
        assert check(fleet_db, host, user, code)["result"] == "ok", user
    status = fleet_db.call(host, "SELECT twofa_api.status('user0001')")
    assert status["email"] is True
    # a user re-enrolled here with another secret: refused unless --force
    with store.update("user0002") as st:
        enrollment.activate(st, totp.random_secret(), policy, clock.now())
    again = admin(tmp_path, "fleet", "import", "--dsn", dsn)
    assert again.returncode == 1 and "user0002" in again.stderr
    assert "same: 1000" in again.stdout
    forced = admin(tmp_path, "fleet", "import", "--dsn", dsn, "--force")
    assert forced.returncode == 0 and "replaced: 1" in forced.stdout
    print(f"fleet import of 1001 users: {took:.2f} s")  # shown with -s



def fleet_policy(tmp: Path, db: FleetDb) -> None:
    policy = tmp / "policy.yaml"
    policy.write_text("store:\n  backend: postgresql\n  postgresql:\n"
                      f"    dsn: \"{db.server.dsn('host1')}\"\n"
                      f"    admin_dsn: \"{db.server.dsn('fleetadmin')}\"\n")
    policy.chmod(0o600)


def test_status_unlock_reset_act_on_the_fleet(fleet_db: FleetDb, tmp_path: Path) -> None:
    """With store.backend: postgresql, twofa-admin status/unlock/reset work on the
    fleet database (admin_dsn), not on this host's (empty) state directory."""
    fleet_policy(tmp_path, fleet_db)
    fleet_db.enroll("alice")
    h1 = fleet_db.connect("host1")
    for _ in range(5):
        check(fleet_db, h1, "alice", "000000")
    status = admin(tmp_path, "status", "alice", "--json")
    assert status.returncode == 0, status.stderr
    row = json.loads(status.stdout)
    assert row["enrolled"] is True and row["failures"] == 5 and row["locked"] is True
    listing = admin(tmp_path, "status")
    assert listing.returncode == 0 and "alice" in listing.stdout, listing.stderr
    unlocked = admin(tmp_path, "unlock", "alice")
    assert unlocked.returncode == 0, unlocked.stderr
    assert fleet_db.row("alice")["failures"] == 0
    assert fleet_db.row("alice")["locked_until"] == 0
    assert admin(tmp_path, "reset", "alice").returncode == 0
    assert json.loads(admin(tmp_path, "status", "alice", "--json").stdout)["enrolled"] is False
    assert admin(tmp_path, "unlock", "alice").returncode != 0  # nothing left to unlock
    no_yet = admin(tmp_path, "recovery-codes", "alice")
    assert no_yet.returncode != 0 and "not available with the fleet store" in no_yet.stderr
    assert not (tmp_path / "state" / "users" / "alice.json").exists()


def test_fleet_import_reads_this_hosts_files_with_the_fleet_policy(
        fleet_db: FleetDb, tmp_path: Path) -> None:
    """README order: switch the policy, then import: the import still reads the files."""
    fleet_policy(tmp_path, fleet_db)
    store = FileStore(Paths(state_dir=str(tmp_path / "state")), Clock())
    secret = totp.random_secret()
    with store.update("bob") as st:
        st.enrolled, st.secret = True, secret
    res = admin(tmp_path, "fleet", "import", "--dsn", fleet_db.server.dsn("fleetadmin"))
    assert res.returncode == 0, res.stderr
    assert check(fleet_db, fleet_db.connect("host1"), "bob",
                 totp.totp(totp.b32decode(secret), time.time()))["result"] == "ok"
