"""The fleet database itself (a real PostgreSQL 15): SQL TOTP, replay, lockout, grants,
privileges, races. Every call goes through a host role, as a host's daemon makes it."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

import psycopg2
import pytest

from pam_twofa import totp, verify
from pam_twofa.schema import defaults
from tests.fleet_support import ADMIN, HOSTS, FleetDb, check, fleet_db, fleet_template

__all__ = ["fleet_db", "fleet_template"]

RFC_KEYS = {"SHA1": b"12345678901234567890",
            "SHA256": b"12345678901234567890123456789012",
            "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234"}
RFC_VECTORS = {  # RFC 6238 appendix B: time -> 8-digit code per algorithm
    59: ("94287082", "46119246", "90693936"),
    1111111109: ("07081804", "68084774", "25091201"),
    1111111111: ("14050471", "67062674", "99943326"),
    1234567890: ("89005924", "91819424", "93441116"),
    2000000000: ("69279037", "90698825", "38618901"),
    20000000000: ("65353130", "77737706", "47863826"),
}


def hotp_sql(db: FleetDb, key: bytes, step: int, digits: int, algorithm: str) -> str:
    return str(db.call(db.connect(), "SELECT twofa.hotp(%s, %s, %s, %s)", key, step, digits,
                       algorithm))


def test_sql_totp_matches_rfc6238_vectors(fleet_db: FleetDb) -> None:
    for when, codes in RFC_VECTORS.items():
        for algorithm, code in zip(("SHA1", "SHA256", "SHA512"), codes, strict=True):
            assert hotp_sql(fleet_db, RFC_KEYS[algorithm], when // 30, 8, algorithm) == code


def test_sql_totp_matches_oathtool(fleet_db: FleetDb) -> None:
    for algorithm in ("SHA1", "SHA256", "SHA512"):
        for digits in (6, 7, 8):
            secret = totp.random_secret()
            when = 1_700_000_000 + digits * 977
            expected = subprocess.run(
                ["oathtool", f"--totp={algorithm.lower()}", "-b", "-d", str(digits),
                 "-N", f"@{when}", secret], check=True, capture_output=True, text=True,
            ).stdout.strip()
            got = hotp_sql(fleet_db, totp.b32decode(secret), when // 30, digits, algorithm)
            assert got == expected, (algorithm, digits)


def now_code(secret: str, offset: int = 0) -> str:
    return totp.totp(totp.b32decode(secret), time.time() + offset * 30)


def test_a_code_used_through_host1_is_refused_through_host2(fleet_db: FleetDb) -> None:
    secret = fleet_db.enroll("alice")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    code = now_code(secret)
    first = check(fleet_db, h1, "alice", code)
    assert first["result"] == "ok" and len(first["grant"]) == 48
    assert check(fleet_db, h2, "alice", code) == {"result": "replay"}
    assert fleet_db.row("alice")["failures"] == 0  # a replay is not a guess


def test_wrong_codes_through_two_hosts_add_up_to_one_lock(fleet_db: FleetDb) -> None:
    secret = fleet_db.enroll("bob")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    wrong = f"{(int(now_code(secret)) + 500000) % 1000000:06d}"
    seen = [check(fleet_db, h, "bob", wrong) for h in (h1, h2, h1, h2)]
    assert [s["failures"] for s in seen] == [1, 2, 3, 4]
    assert all(s["locked_until"] is None for s in seen)
    fifth = check(fleet_db, h1, "bob", wrong)  # max_failures 5 across the fleet
    assert fifth["result"] == "bad-code" and fifth["failures"] == 5
    assert fifth["locked_until"] == pytest.approx(time.time() + 300, abs=5)
    assert check(fleet_db, h2, "bob", now_code(secret))["result"] == "locked"
    assert check(fleet_db, h2, "bob", wrong)["result"] == "locked"
    assert fleet_db.row("bob")["failures"] == 5  # not counted while locked


def test_empty_answer_is_not_counted(fleet_db: FleetDb) -> None:
    fleet_db.enroll("carol")
    h1 = fleet_db.connect("host1")
    assert check(fleet_db, h1, "carol", "  ") == {"result": "no-answer"}
    assert check(fleet_db, h1, "nobody-here", "123456") == {"result": "not-enrolled"}
    assert fleet_db.row("carol")["failures"] == 0


def test_progressive_lock_follows_the_file_store_rule(fleet_db: FleetDb) -> None:
    """Lock lengths double per lock after the first, capped: lockout.lock_duration."""
    fleet_db.settings(max_failures=2, lock_seconds=1, max_lock_seconds=2)
    fleet_db.enroll("dave")
    h1 = fleet_db.connect("host1")
    policy = defaults().lockout.replace(max_failures=2, lock_seconds=1, max_lock_seconds=2)
    assert check(fleet_db, h1, "dave", "000000")["locked_until"] is None
    for level in (1, 2, 3):
        answer = check(fleet_db, h1, "dave", "000000")
        assert answer["result"] == "bad-code"
        length = answer["locked_until"] - time.time()
        assert length == pytest.approx(verify.lock_duration(policy, level), abs=0.3)
        assert fleet_db.row("dave")["lock_level"] == level
        time.sleep(length + 0.05)


def test_max_consecutive_failures_suspends_until_unlock(fleet_db: FleetDb) -> None:
    fleet_db.settings(max_failures=1000, max_consecutive_failures=3)
    secret = fleet_db.enroll("erin")
    h1 = fleet_db.connect("host1")
    answers = [check(fleet_db, h1, "erin", "000000") for _ in range(3)]
    assert [a["suspended"] for a in answers] == [False, False, True]
    assert check(fleet_db, h1, "erin", now_code(secret))["result"] == "suspended"
    assert fleet_db.call(fleet_db.connect(ADMIN), "SELECT twofa_api.admin_unlock('erin')")
    assert check(fleet_db, h1, "erin", now_code(secret))["result"] == "ok"


def test_host_role_has_no_privilege_on_any_table(fleet_db: FleetDb) -> None:
    owner = fleet_db.connect()
    with owner.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'twofa'")
        tables = sorted(r[0] for r in cur.fetchall())
    assert {"users", "recovery_codes", "devices", "grants", "settings", "hosts"} <= set(tables)
    host = fleet_db.connect("host1")
    refused = [f"SELECT * FROM twofa.{t}" for t in tables] + [
        "UPDATE twofa.settings SET window_steps = 10",
        "SELECT twofa.hotp('\\x00'::bytea, 1, 6, 'SHA1')",
        "SELECT twofa_api.admin_reset('x')",
        "SELECT twofa_api.admin_import('x', '\\x00'::bytea, 6, 30, 'SHA1', -1, NULL, true)",
    ]
    for statement in refused:
        with host.cursor() as cur, pytest.raises(psycopg2.Error) as info:
            cur.execute(statement)
        assert info.value.pgcode == "42501", statement
    admin = fleet_db.connect(ADMIN)
    with admin.cursor() as cur, pytest.raises(psycopg2.Error) as info:
        cur.execute("SELECT secret FROM twofa.users")
    assert info.value.pgcode == "42501"


# The whole door, pinned: a new twofa_api function is executable by nobody until it
# is added here and granted on purpose (functions are PUBLIC's by default).
HOST_API = {"account", "add_device", "check_code", "devices", "disable", "email_begin",
            "email_set", "emergency_begin", "emergency_check", "enroll_begin", "enrolled_since",
            "enroll_confirm", "enroll_finish", "enrolled_users", "first_seen", "hello",
            "new_recovery_codes", "offline_codes", "offline_report", "prove",
            "revoke_device", "skip_device", "status"}
ADMIN_API = {"admin_devices", "admin_email", "admin_enroll", "admin_import",
             "admin_recovery_codes", "admin_report", "admin_reset", "admin_revoke_devices",
             "admin_set_email", "admin_set_recovery_codes", "admin_status", "admin_unlock",
             "enrolled_users", "status"}


def test_each_api_function_runs_as_definer_for_exactly_its_roles(fleet_db: FleetDb) -> None:
    owner = fleet_db.connect()
    with owner.cursor() as cur:
        cur.execute("CREATE ROLE stranger LOGIN")  # in no twofa group: PUBLIC's rights
        cur.execute(
            "SELECT p.proname, p.prosecdef, p.proconfig,"
            " has_function_privilege('host1', p.oid, 'EXECUTE'),"
            " has_function_privilege('twofa_admin', p.oid, 'EXECUTE'),"
            " has_function_privilege('stranger', p.oid, 'EXECUTE')"
            " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'twofa_api'")
        rows = cur.fetchall()
    assert {r[0] for r in rows} == HOST_API | ADMIN_API
    for name, definer, config, host, admin, stranger in rows:
        assert definer and config == ["search_path=twofa, pg_temp"], name
        assert (host, admin, stranger) == (name in HOST_API, name in ADMIN_API, False), name


def test_grants_forged_reused_or_foreign_are_refused(fleet_db: FleetDb) -> None:
    secret = fleet_db.enroll("frank")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    add = "SELECT twofa_api.add_device(%s, %s, 'sshd', '192.0.2.7', 'SHA256:k')"
    skip = "SELECT twofa_api.skip_device(%s, 'sshd', '192.0.2.7', 'SHA256:k')"
    assert fleet_db.call(h1, add, "frank", "0" * 48) == {"result": "no-grant"}
    assert fleet_db.call(h1, add, "frank", None) == {"result": "no-grant"}
    grant = check(fleet_db, h1, "frank", now_code(secret))["grant"]
    assert fleet_db.call(h2, add, "frank", grant) == {"result": "no-grant"}  # other host
    assert fleet_db.call(h1, add, "mallory", grant) == {"result": "not-enrolled"}
    fleet_db.enroll("mallory")
    assert fleet_db.call(h1, add, "mallory", grant) == {"result": "no-grant"}  # other user
    assert fleet_db.call(h1, add, "frank", grant)["result"] == "ok"
    assert fleet_db.call(h1, add, "frank", grant) == {"result": "no-grant"}  # used once
    assert fleet_db.call(h1, skip, "frank")["trusted"] is True
    assert fleet_db.call(h2, skip, "frank")["trusted"] is False  # bound to host1
    assert fleet_db.call(h1, "SELECT twofa_api.skip_device(%s, 'sudo', '192.0.2.7', "
                              "'SHA256:k')", "frank")["trusted"] is False
    for _ in range(5):
        check(fleet_db, h2, "frank", "000000")
    assert fleet_db.call(h1, skip, "frank")["trusted"] is False  # never while locked
    codes = fleet_db.call(h1, "SELECT twofa_api.new_recovery_codes(%s, %s)", "frank", grant)
    assert codes == {"result": "no-grant"}


def test_enrollment_secret_goes_to_the_enrolling_host_only(fleet_db: FleetDb) -> None:
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    begin = "SELECT twofa_api.enroll_begin(%s, %s, 6, 30, 'SHA1')"
    started = fleet_db.call(h1, begin, "gina", None)
    secret = totp.b32encode(bytes.fromhex(started["secret"]))
    confirm = "SELECT twofa_api.enroll_confirm(%s, %s)"
    assert fleet_db.call(h2, confirm, "gina", now_code(secret)) == {"result": "no-pending"}
    assert fleet_db.call(h1, confirm, "gina", "000000") == {"result": "bad-code"}
    assert fleet_db.call(h1, confirm, "gina", now_code(secret)) == {"result": "ok"}
    assert check(fleet_db, h2, "gina", now_code(secret, 1))["result"] == "ok"
    # re-enrolling an enrolled user needs a grant (the current code, on this host)
    assert fleet_db.call(h2, begin, "gina", None) == {"result": "no-grant"}
    status = fleet_db.call(h2, "SELECT twofa_api.status('gina')")
    assert status["enrolled"] is True and "secret" not in status


def test_recovery_codes_work_once(fleet_db: FleetDb) -> None:
    secret = fleet_db.enroll("hank")
    h1 = fleet_db.connect("host1")
    grant = check(fleet_db, h1, "hank", now_code(secret))["grant"]
    codes = fleet_db.call(h1, "SELECT twofa_api.new_recovery_codes(%s, %s)", "hank",
                          grant)["codes"]
    assert len(codes) == 10 and all(len(c) == 10 and c.isdigit() for c in codes)
    spaced = f"{codes[3][:5]}-{codes[3][5:]}"
    assert check(fleet_db, h1, "hank", spaced) == {"result": "recovery-code", "left": 9}
    assert check(fleet_db, h1, "hank", codes[3])["result"] == "bad-code"


def race(n: int, target: Any) -> list[Any]:
    """``target(i)`` in ``n`` threads released together; their results in order."""
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = target(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return results


def host_conns(db: FleetDb, n: int) -> list[Any]:
    """``n`` connections spread over the 8 host roles."""
    return [db.connect(HOSTS[i % len(HOSTS)]) for i in range(n)]


def test_64_racers_one_code_exactly_one_success(fleet_db: FleetDb) -> None:
    secret = fleet_db.enroll("ivy")
    conns = host_conns(fleet_db, 64)
    code = now_code(secret)
    results = race(64, lambda i: check(fleet_db, conns[i], "ivy", code)["result"])
    assert results.count("ok") == 1 and results.count("replay") == 63
    assert fleet_db.row("ivy")["failures"] == 0


def test_64_users_64_successes(fleet_db: FleetDb) -> None:
    secrets = [fleet_db.enroll(f"u{i}") for i in range(64)]
    conns = host_conns(fleet_db, 64)
    results = race(64, lambda i: check(fleet_db, conns[i], f"u{i}", now_code(secrets[i])))
    assert [r["result"] for r in results] == ["ok"] * 64


def test_64_wrong_codes_count_exactly_64(fleet_db: FleetDb) -> None:
    fleet_db.settings(max_failures=1000)
    fleet_db.enroll("jack")
    conns = host_conns(fleet_db, 64)
    results = race(64, lambda i: check(fleet_db, conns[i], "jack", "000000"))
    assert sorted(r["failures"] for r in results) == list(range(1, 65))
    assert fleet_db.row("jack")["failures"] == 64


def test_one_recovery_code_64_racers_exactly_one(fleet_db: FleetDb) -> None:
    fleet_db.enroll("kate")
    admin = fleet_db.connect(ADMIN)
    assert fleet_db.call(admin, "SELECT twofa_api.admin_set_recovery_codes('kate', %s)",
                         ["1234567890", "2345678901"]) == 2
    conns = host_conns(fleet_db, 64)
    results = race(64, lambda i: check(fleet_db, conns[i], "kate", "1234567890")["result"])
    assert results.count("recovery-code") == 1
    assert results.count("bad-code") + results.count("locked") == 63


def test_64_wrong_codes_with_the_default_lockout_lock_once(fleet_db: FleetDb) -> None:
    """Racers that arrive after the lock are refused, not counted: the row lock makes the
    later UPDATEs re-check ``locked_until`` on the newest row."""
    fleet_db.enroll("liam")
    conns = host_conns(fleet_db, 64)
    results = race(64, lambda i: check(fleet_db, conns[i], "liam", "000000")["result"])
    assert results.count("bad-code") == 5 and results.count("locked") == 59
    row = fleet_db.row("liam")
    assert row["failures"] == 5 and row["lock_level"] == 1


def test_devices_listed_and_revoked_per_host_and_by_the_admin(fleet_db: FleetDb) -> None:
    secret = fleet_db.enroll("mona")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    add = "SELECT twofa_api.add_device('mona', %s, 'sshd', %s, NULL)"
    g1 = check(fleet_db, h1, "mona", now_code(secret))["grant"]
    assert fleet_db.call(h1, add, g1, "192.0.2.1")["result"] == "ok"
    g2 = check(fleet_db, h2, "mona", now_code(secret, 1))["grant"]
    assert fleet_db.call(h2, add, g2, "192.0.2.2")["result"] == "ok"
    listed = fleet_db.call(h1, "SELECT twofa_api.devices('mona')")
    assert [d["ip"] for d in listed] == ["192.0.2.1"]  # this host's only
    assert fleet_db.call(h2, "SELECT twofa_api.revoke_device('mona', %s)", listed[0]["id"]) == 0
    admin = fleet_db.connect(ADMIN)
    every = fleet_db.call(admin, "SELECT twofa_api.admin_devices('mona')")
    assert sorted((d["host"], d["ip"]) for d in every) == [("host1", "192.0.2.1"),
                                                          ("host2", "192.0.2.2")]
    assert fleet_db.call(h1, "SELECT twofa_api.revoke_device('mona', NULL)") == 1
    assert fleet_db.call(admin, "SELECT twofa_api.admin_revoke_devices('mona', NULL)") == 1
    assert fleet_db.call(admin, "SELECT twofa_api.admin_set_email('mona', 'm@example.org')")
    assert fleet_db.call(h1, "SELECT twofa_api.status('mona')")["email"] is True


def test_emergency_codes_once_budgeted_and_counted(fleet_db: FleetDb) -> None:
    fleet_db.settings(max_sends_per_hour=2)
    fleet_db.enroll("nina")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    begin, use = "SELECT twofa_api.emergency_begin(%s)", "SELECT twofa_api.emergency_check(%s, %s)"
    assert fleet_db.call(h1, begin, "nina") == {"result": "no-email"}
    admin = fleet_db.connect(ADMIN)
    assert fleet_db.call(admin, "SELECT twofa_api.admin_set_email('nina', 'n@example.org')")
    first = fleet_db.call(h1, begin, "nina")
    assert first["result"] == "ok" and first["email"] == "n@example.org"
    assert len(first["code"]) == 8 and first["code"].isdigit()
    second = fleet_db.call(h1, begin, "nina")["code"]  # voids the first
    assert fleet_db.call(h1, begin, "nina") == {"result": "send-limit"}
    wrong = fleet_db.call(h2, use, "nina", first["code"])
    assert wrong["result"] == "bad-emergency-code" and wrong["failures"] == 1
    # live, but host1 asked for it: a host cannot mint codes for use elsewhere
    elsewhere = fleet_db.call(h2, use, "nina", second)
    assert elsewhere["result"] == "bad-emergency-code" and elsewhere["failures"] == 2
    assert fleet_db.call(h1, use, "nina", " \t") == {"result": "no-answer"}  # not counted
    assert fleet_db.row("nina")["failures"] == 2
    spaced = f"{second[:4]} {second[4:]}"
    assert fleet_db.call(h1, use, "nina", spaced) == {"result": "emergency-code",
                                                      "email": "n@example.org"}
    assert fleet_db.row("nina")["failures"] == 0
    assert fleet_db.call(h1, use, "nina", second)["result"] == "bad-emergency-code"  # once
    for _ in range(4):
        last = fleet_db.call(h1, use, "nina", "00000000")
    assert last["locked_until"] is not None and last["email_address"] == "n@example.org"
    assert fleet_db.call(h1, begin, "nina")["result"] == "locked"
