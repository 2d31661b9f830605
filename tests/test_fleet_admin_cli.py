"""``twofa-admin enroll|recovery-codes|trust|email`` on the fleet store (issue 14), run
through the real entry point against a real PostgreSQL with ``admin_dsn``, then proven
by logins: pamtester on hosts with their own twofa-fleetd (tests/test_fleet_login.py's
``Host``). The admin host makes the secret and shows it; the database keeps it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fleet_support import (
    ADMIN,
    FleetDb,
    check,
    daemons,
    fleet_db,
    fleet_template,
    hung_server,
)
from tests.harness.pamenv import PamEnv
from tests.harness.wait import wait_fresh_step
from tests.pam_support import log_text, wrong_code
from tests.test_emergency_pam import World, world
from tests.test_fleet_admin import admin, fleet_policy
from tests.test_fleet_login import Host, code_now, hosts, policy
from tests.test_googleauth_cli import ga_file

__all__ = ["daemons", "fleet_db", "fleet_template", "hosts", "hung_server", "world"]


def adm(tmp: Path, db: FleetDb, *args: str) -> Any:
    """``twofa-admin ARGS --json`` on an admin host whose policy names the fleet."""
    where = tmp / "admin-host"
    if not where.exists():
        where.mkdir()
        fleet_policy(where, db)
    done = admin(where, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def recovery_left(db: FleetDb, user: str) -> int:
    return int(db.server.psql("SELECT count(*) FROM twofa.recovery_codes "
                              f"WHERE user_name = '{user}'"))


def test_admin_enrolls_on_the_fleet_and_the_user_logs_in_on_both_hosts(
        fleet_db: FleetDb, hosts: list[Host], tmp_path: Path) -> None:
    h1, h2 = hosts
    shown = adm(tmp_path, fleet_db, "enroll", "alice", "--recovery-codes")
    secret, codes = str(shown["secret"]), shown["recovery_codes"]
    assert isinstance(codes, list) and len(codes) == 10
    assert str(shown["uri"]).startswith("otpauth://totp/") and secret in str(shown["uri"])
    assert recovery_left(fleet_db, "alice") == 10
    assert fleet_db.server.psql("SELECT count(*) FROM twofa.recovery_codes WHERE "
                                f"mac = convert_to('{codes[0]}', 'UTF8')") == "0"  # MACs
    assert not (tmp_path / "admin-host" / "state" / "users" / "alice.json").exists()
    wait_fresh_step()
    ok = h1.login("alice", code_now(secret))  # the code of the secret the admin was shown
    assert ok.rc == 0 and log_text(ok).endswith("result=success reason=ok"), ok
    rc = h2.login("alice", str(codes[0]))  # a recovery code on the other host: once
    assert rc.rc == 0 and "reason=recovery-code" in log_text(rc), rc
    again = h1.login("alice", str(codes[0]))
    assert again.rc != 0 and "reason=bad-code" in log_text(again), again
    assert recovery_left(fleet_db, "alice") == 9

    # re-enrolling replaces the secret: the old one's codes stop working everywhere
    fleet_db.server.psql("UPDATE twofa.users SET failures = 3 WHERE name = 'alice'")
    new = adm(tmp_path, fleet_db, "enroll", "alice")
    assert new["secret"] != secret and new["recovery_codes"] == []
    assert recovery_left(fleet_db, "alice") == 0 and fleet_db.row("alice")["failures"] == 0
    wait_fresh_step()
    old = h2.login("alice", code_now(secret))
    assert old.rc != 0 and "reason=bad-code" in log_text(old), old
    assert h2.login("alice", code_now(str(new["secret"]))).rc == 0


def test_enroll_given_secret_file_and_bad_input_change_nothing(
        fleet_db: FleetDb, tmp_path: Path) -> None:
    given = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    (tmp_path / "secret").write_text(given + "\n")
    shown = adm(tmp_path, fleet_db, "enroll", "bob", "--secret-file", str(tmp_path / "secret"))
    assert shown["secret"] == given
    host = fleet_db.connect("host1")
    assert check(fleet_db, host, "bob", code_now(given))["result"] == "ok"
    bad = admin(tmp_path / "admin-host", "enroll", "bob", "--secret", "SHORT")
    assert bad.returncode != 0 and fleet_db.row("bob")["last_step"] >= 0  # not re-keyed
    name = admin(tmp_path / "admin-host", "enroll", "../etc")
    assert name.returncode == 2, name.stderr
    assert fleet_db.server.psql("SELECT count(*) FROM twofa.users") == "1"


def test_recovery_codes_reset_work_once_and_void_the_old_ones(
        fleet_db: FleetDb, hosts: list[Host], tmp_path: Path) -> None:
    h1 = hosts[0]
    first = adm(tmp_path, fleet_db, "enroll", "alice", "--recovery-codes")["recovery_codes"]
    fresh = adm(tmp_path, fleet_db, "recovery-codes", "alice")
    assert fresh["user"] == "alice"
    codes = fresh["recovery_codes"]
    assert isinstance(codes, list) and isinstance(first, list) and len(codes) == 10
    assert recovery_left(fleet_db, "alice") == 10
    old = h1.login("alice", str(first[0]))
    assert old.rc != 0 and "reason=bad-code" in log_text(old), old
    grouped = f"{codes[3][:5]}-{codes[3][5:]}"  # as 'recovery.groups' prints it
    ok = h1.login("alice", grouped)
    assert ok.rc == 0 and "reason=recovery-code" in log_text(ok), ok
    twice = h1.login("alice", str(codes[3]))
    assert twice.rc != 0, twice
    text = admin(tmp_path / "admin-host", "recovery-codes", "alice")
    assert text.returncode == 0 and text.stdout.count("    ") == 10, text.stdout
    nobody = admin(tmp_path / "admin-host", "recovery-codes", "carol")
    assert nobody.returncode != 0 and "carol is not enrolled" in nobody.stderr
    assert fleet_db.server.psql("SELECT count(*) FROM twofa.users WHERE name = 'carol'") == "0"


def test_admin_made_codes_carry_the_break_glass_hash_only_when_it_is_on(
        fleet_db: FleetDb, tmp_path: Path) -> None:
    """Every place recovery codes are made gives them the host-verifiable hash while
    ``offline_days`` is on (break-glass), and none while it is off."""
    slow = "SELECT count(slow) FROM twofa.recovery_codes WHERE user_name = 'alice'"
    adm(tmp_path, fleet_db, "enroll", "alice", "--recovery-codes")
    assert recovery_left(fleet_db, "alice") == 10 and fleet_db.server.psql(slow) == "0"
    fleet_db.settings(offline_days=30)
    adm(tmp_path, fleet_db, "recovery-codes", "alice")
    assert fleet_db.server.psql(slow) == "10"
    adm(tmp_path, fleet_db, "enroll", "alice", "--recovery-codes")
    assert fleet_db.server.psql(slow) == "10"
    fleet_db.settings(offline_days=0)
    adm(tmp_path, fleet_db, "recovery-codes", "alice")
    assert fleet_db.server.psql(slow) == "0"


def test_trust_list_shows_every_host_and_revoke_asks_for_a_code_again(
        fleet_db: FleetDb, hosts: list[Host], tmp_path: Path) -> None:
    for h in hosts:
        assert h.daemon is not None
        h.env.write_policy(policy(h.daemon.socket, "trusted_devices:\n  enabled: true\n"))
    secret = fleet_db.enroll("alice")
    env = {"PAM_RHOST": "192.0.2.9"}
    wait_fresh_step()
    done = hosts[0].env.pamtester("svc", "alice", ["secret", code_now(secret), "yes"], env=env)
    assert done.rc == 0 and "trusted_device=" in log_text(done), done
    # host2's device as add_device makes it (a second TOTP login would wait for a step)
    fleet_db.server.psql("INSERT INTO twofa.devices SELECT 'beef0002', user_name, 'host2', "
                         "service, ip, key, created, expires, last_used FROM twofa.devices")
    rows = adm(tmp_path, fleet_db, "trust", "list", "alice")
    assert isinstance(rows, list)
    assert sorted(r["host"] for r in rows) == ["host1", "host2"]
    assert {r["ip"] for r in rows} == {"192.0.2.9"} and not any(r["expired"] for r in rows)
    table = admin(tmp_path / "admin-host", "trust", "list", "alice").stdout
    assert table.splitlines()[0].startswith("HOST ") and "host2" in table
    one = next(r for r in rows if r["host"] == "host1")
    gone = admin(tmp_path / "admin-host", "trust", "revoke", "alice", one["id"])
    assert gone.returncode == 0 and "revoked 1 trusted device" in gone.stdout, gone.stderr
    h1, h2 = hosts
    asked = h1.login("alice", wrong_code(secret), env=env)  # host1 asks for a code again
    assert asked.rc != 0 and "reason=bad-code" in log_text(asked), asked
    still = h2.login("alice", None, env=env)  # host2's device stays
    assert still.rc == 0 and "reason=trusted-device" in log_text(still), still
    every = admin(tmp_path / "admin-host", "trust", "revoke", "alice", "--all")
    assert every.returncode == 0 and "revoked 1 trusted device" in every.stdout
    again = h2.login("alice", wrong_code(secret), env=env)
    assert again.rc != 0 and "reason=bad-code" in log_text(again), again
    unknown = admin(tmp_path / "admin-host", "trust", "revoke", "alice", "nosuchid")
    assert unknown.returncode != 0 and "no trusted device nosuchid" in unknown.stderr
    nobody = admin(tmp_path / "admin-host", "trust", "revoke", "carol", "--all")
    assert nobody.returncode != 0 and "carol has no 2FA state" in nobody.stderr


def email_row(db: FleetDb, user: str) -> str:
    return db.server.psql("SELECT coalesce(email, '-'), emergency_mac IS NOT NULL, "
                          f"email_changed_at IS NULL FROM twofa.users WHERE name = '{user}'")


def test_email_set_voids_a_pending_emergency_code_and_clear(
        fleet_db: FleetDb, tmp_path: Path) -> None:
    where = tmp_path / "admin-host"
    where.mkdir()
    fleet_policy(where, fleet_db)
    fleet_db.enroll("alice")
    done = admin(where, "email", "alice", "alice@example.org")
    assert done.returncode == 0 and "(verified)" in done.stdout, done.stderr
    assert email_row(fleet_db, "alice") == "alice@example.org|f|t"
    host = fleet_db.connect("host1")  # no hold: an emergency code can be mailed at once
    begun = fleet_db.call(host, "SELECT twofa_api.emergency_begin('alice')")
    assert begun["result"] == "ok", begun
    assert admin(where, "email", "alice", "alice@example.org").returncode == 0
    assert email_row(fleet_db, "alice") == "alice@example.org|t|t"  # same address: kept
    assert admin(where, "email", "alice", "new@example.org").returncode == 0
    assert email_row(fleet_db, "alice") == "new@example.org|f|t"  # the code mailed is void
    voided = fleet_db.call(host, "SELECT twofa_api.emergency_check('alice', %s)",
                           begun["code"])
    assert voided["result"] == "bad-emergency-code", voided
    bad = admin(where, "email", "alice", "not an address")
    assert bad.returncode == 2 and email_row(fleet_db, "alice").startswith("new@")
    cleared = admin(where, "email", "alice", "--clear")
    assert cleared.returncode == 0 and "removed" in cleared.stdout
    assert email_row(fleet_db, "alice").startswith("-|")
    nobody = admin(where, "email", "carol", "--clear")
    assert nobody.returncode != 0 and "carol has no 2FA state" in nobody.stderr
    assert admin(where, "email", "dave", "dave@example.org").returncode == 0  # before enrolling
    assert email_row(fleet_db, "dave") == "dave@example.org|f|t"


def test_google_authenticator_import_goes_to_the_fleet(
        fleet_db: FleetDb, pam_env: PamEnv, tmp_path: Path) -> None:
    """The file's secret and scratch codes (8 digits) land in the database: the secret's
    codes work on a host, a scratch code works once; --force needed to replace."""
    pam_env.add_user("carol")
    pam_env.write_policy("store:\n  backend: postgresql\n  postgresql:\n"
                         f"    dsn: \"{fleet_db.server.dsn('host1')}\"\n"
                         f"    admin_dsn: \"{fleet_db.server.dsn(ADMIN)}\"\n")
    path = tmp_path / "carol-ga"
    text = ga_file(path, pam_env.users["carol"].uid, "-d")
    secret, scratch = text.splitlines()[0], text.splitlines()[-1]
    done = pam_env.admin("import-google-authenticator", "carol", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["recovery_codes"] == 5
    assert recovery_left(fleet_db, "carol") == 5
    host = fleet_db.connect("host1")
    assert check(fleet_db, host, "carol", scratch)["result"] == "recovery-code"
    assert check(fleet_db, host, "carol", scratch)["result"] == "bad-code"
    assert check(fleet_db, host, "carol", code_now(secret))["result"] == "ok"
    again = pam_env.admin("import-google-authenticator", "carol", str(path))
    assert again.returncode == 2 and "--force" in again.stderr
    assert not (pam_env.state_dir / "users" / "carol.json").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # aiosmtpd's own
def test_reset_on_the_fleet_mails_the_notice_to_the_fleets_address(
        fleet_db: FleetDb, world: World) -> None:
    """tests/test_emergency_pam.py's mail set-up (alice has alice@example.com in this
    host's files), the policy switched to the fleet, where alice's address differs."""
    env = world.env
    env.write_policy(env.policy.read_text() + "store:\n  backend: postgresql\n"
                     "  postgresql:\n"
                     f"    dsn: \"{fleet_db.server.dsn('host1')}\"\n"
                     f"    admin_dsn: \"{fleet_db.server.dsn(ADMIN)}\"\n")
    fleet_db.enroll("alice")
    assert env.admin("email", "alice", "office@example.org").returncode == 0
    done = env.admin("reset", "alice", env={"NSS_WRAPPER_HOSTS": str(world.hosts)})
    assert done.returncode == 0, done.stderr
    assert "notice sent to o***@example.org" in done.stdout
    notice = world.srv.wait(1)[0]
    assert notice.rcpt_tos == ["office@example.org"], notice
    assert "reset" in notice.message["Subject"] and "Account: alice" in notice.body
    assert fleet_db.server.psql("SELECT count(*) FROM twofa.users") == "0"
