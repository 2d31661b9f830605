"""Offline break-glass (``store.postgresql.offline: recovery-codes``) through real parts:
pamtester on two hosts, each with its own twofa-fleetd and host role, in front of one
real PostgreSQL that the tests stop and start again. A user who logged in on a host
may use a recovery code there while the database is unreachable (once; wrong answers
lock locally); what was used is reported, and refused fleet-wide, when it is back."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pam_twofa import fleetclient, policyfile
from pam_twofa import policy as policy_mod
from pam_twofa.errors import FleetError
from pam_twofa.fleet.admin import settings_of
from pam_twofa.fleet.offline import Bcrypt
from tests.fleet_support import (
    ADMIN,
    HOSTS,
    TIMEOUT,
    Daemon,
    FleetDb,
    check,
    daemons,
    fleet_db,
    fleet_template,
    hung_server,
    start,
)
from tests.harness.wait import wait_fresh_step
from tests.pam_support import log_text, output
from tests.test_fleet_login import OFFLINE, Host, code_now, policy

__all__ = ["daemons", "fleet_db", "fleet_template", "hung_server"]

BREAK_GLASS = "    offline: recovery-codes\n"  # inside store.postgresql
CODES = {"alice": ["1234567890", "2345678901", "3456789012"],
         "carol": ["4567890123", "5678901234", "6789012345"],
         "dave": ["7890123456", "8901234567", "9012345678"]}
WRONG = "9999999999"
PREFIX = "pam_twofa(svc:auth): user={} rhost=- "


def set_codes(db: FleetDb, user: str) -> None:
    conn = db.connect(ADMIN)
    assert db.call(conn, "SELECT twofa_api.admin_set_recovery_codes(%s, %s)", user,
                   CODES[user]) == 3


def wait_for(pred: Callable[[], object], what: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def cached(d: Daemon, user: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((d.offline_dir / f"{user}.json").read_text())
    except FileNotFoundError:
        return None
    return data


def n_cached(d: Daemon, user: str) -> int:
    entry = cached(d, user)
    return len(entry["codes"]) if entry else 0


@pytest.fixture
def glass_hosts(fleet_db: FleetDb, tmp_path: Path,
                daemons: list[Daemon]) -> Iterator[list[Host]]:
    """host1 and host2, break-glass on (the fleet's offline_days and both policies)."""
    fleet_db.settings(offline_days=30)
    made: list[Host] = []
    for role in HOSTS[:2]:
        d = start(daemons, tmp_path, role, fleet_db.server.dsn(role), offline="recovery-codes")
        h = Host(tmp_path, role, d, d.socket, users=("dave",))
        h.env.write_policy(policy(d.socket, BREAK_GLASS))
        made.append(h)
    yield made
    for h in made:
        h.env.close()


def test_break_glass_one_use_offline_local_lock_reported_fleet_wide(
        fleet_db: FleetDb, glass_hosts: list[Host]) -> None:
    h1, h2 = glass_hosts
    assert h1.daemon is not None and h2.daemon is not None
    secrets = {u: fleet_db.enroll(u) for u in CODES}
    for user in CODES:
        set_codes(fleet_db, user)
    wait_fresh_step()
    for h, user in ((h1, "alice"), (h1, "carol"), (h2, "dave")):
        res = h.login(user, code_now(secrets[user]))
        assert res.rc == 0, res
    for user in ("alice", "carol"):  # fetched after the login's answer
        wait_for(lambda u=user: n_cached(h1.daemon, u) == 3, f"{user}'s hashes on host1")
    # dave logged in on host2 only; host1 saw him enrolled (its offline list), no more
    assert h1.login("dave", "").rc != 0
    assert cached(h1.daemon, "dave") is None
    # the cache: root's 0600 files in a 0700 dir, hashes only, never a code
    st_dir = os.lstat(h1.daemon.offline_dir)
    assert stat.S_IMODE(st_dir.st_mode) == 0o700 and st_dir.st_uid == 0
    path = h1.daemon.offline_dir / "alice.json"
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    text = path.read_text()
    assert all(c not in text for codes in CODES.values() for c in codes)
    entry = cached(h1.daemon, "alice")
    assert entry is not None and all(h.startswith("$2a$10$") for h in entry["codes"])

    fleet_db.server.stop("fast")
    started = time.monotonic()
    ok = h1.login("alice", CODES["alice"][0])
    took = time.monotonic() - started
    assert ok.rc == 0, ok
    assert log_text(ok) == PREFIX.format("alice") + (
        "result=success reason=offline verdict=recovery-code recovery_codes_left=2")
    assert "only a recovery code can be used now" in output(ok), ok
    assert took < TIMEOUT + 2.5, took  # status at once (health-checked), ~3 bcrypt checks
    again = h1.login("alice", CODES["alice"][0])  # used: never twice on this host
    assert again.rc != 0 and log_text(again).endswith(
        "result=refused reason=offline verdict=bad-code failures=1"), again
    habit = h1.login("alice", code_now(secrets["alice"]))  # a TOTP code: no guess, not counted
    assert habit.rc != 0 and log_text(habit).endswith("verdict=bad-code failures=1"), habit
    # hostile answers straight to the daemon: other digits, undecodable bytes, a
    # right code with a tail or made of Arabic-Indic digits, the longest answer: none
    # is a recovery code, none is a guess, the daemon serves on
    right = CODES["alice"][1]
    assert h1.daemon is not None
    for hostile in ("\u0661" * 10, "\udcff\udcfe" + right, right + "\n1",
                    "".join(chr(0x660 + int(c)) for c in right), "9" * 1024):
        got = fleetclient.offline_check(h1.daemon.socket, TIMEOUT + 2.5, "alice", hostile)
        assert got.get("result") != "recovery-code", (hostile, got)
    with pytest.raises(FleetError, match="bad-arguments"):  # NUL: no request at all
        fleetclient.offline_check(h1.daemon.socket, TIMEOUT + 2.5, "alice", right + "\x00")
    habit = h1.login("alice", code_now(secrets["alice"]))
    assert habit.rc != 0 and log_text(habit).endswith("verdict=bad-code failures=1"), habit
    texts = [log_text(h1.login("carol", WRONG)) for _ in range(5)]
    assert [t.split("failures=")[1].split()[0] for t in texts] == ["1", "2", "3", "4", "5"]
    assert "offline_locked=yes" in texts[4] and "offline_locked" not in texts[3]
    locked = h1.login("carol", CODES["carol"][0])  # even a right code, once locked here
    assert locked.rc != 0 and log_text(locked).endswith(
        "result=refused reason=offline verdict=locked"), locked
    assert n_cached(h1.daemon, "carol") == 3
    for user, answers in (("dave", ["secret"]), ("bob", ["secret"])):
        started = time.monotonic()  # no hashes here / out of scope: as with offline: deny
        res = h1.env.pamtester("svc", user, answers)
        assert time.monotonic() - started < TIMEOUT + 0.5, res
        refused = user == "dave"
        assert (res.rc != 0) is refused, res
        assert log_text(res).endswith(
            f"result={'refused' if refused else 'ignored'} reason=offline "
            f"enrolled={'yes' if refused else 'no'}"), res
        assert (OFFLINE in output(res)) is refused

    fleet_db.server.start()  # host1 reports before anything else, then host2 refuses
    for _ in range(2):  # meanwhile on host1: decided locally, or by the database once told
        res = h1.login("alice", CODES["alice"][0])
        assert res.rc != 0 and ("verdict=bad-code" in log_text(res)
                                or "reason=bad-code" in log_text(res)), res
    wait_for(lambda: "reported offline use of 'alice'" in h1.daemon.output()
             and "reported offline use of 'carol'" in h1.daemon.output(), "host1's report")
    wait_for(lambda: h2.daemon.output().count("database reachable")
             == 1 + h2.daemon.output().count("database offline"), "host2 back online")
    failures = fleet_db.row("alice")["failures"]  # her wrong answers offline, and since
    assert failures >= 1
    reused = h2.login("alice", CODES["alice"][0])
    assert reused.rc != 0 and log_text(reused).endswith(
        f"result=refused reason=bad-code failures={failures + 1}"), reused
    fresh = h2.login("alice", CODES["alice"][1])  # the codes not used offline still work
    assert fresh.rc == 0 and log_text(fresh).endswith(
        "reason=recovery-code recovery_codes_left=1"), fresh
    row = fleet_db.row("carol")  # carol's wrong answers offline count fleet-wide: locked
    assert row["failures"] == 5 and row["locked_until"] > time.time(), row
    after = cached(h1.daemon, "alice")  # reported: nothing left to report
    assert after is not None and after["used"] == [] and len(after["codes"]) == 2, after
    fleet_db.server.stop("fast")  # down again: carol's lock in the database holds offline
    still = h1.login("carol", CODES["carol"][0])
    assert still.rc != 0 and log_text(still).endswith(
        f"result=refused reason=offline verdict=locked locked_until={int(row['locked_until'])}")


def test_hashes_only_for_hosts_the_user_logged_in_on(fleet_db: FleetDb) -> None:
    """The host functions: offline_codes and offline_report answer only the hosts a
    user passed a code check on, and only while break-glass is on fleet-wide."""
    fleet_db.settings(offline_days=30)
    secret = fleet_db.enroll("alice")
    set_codes(fleet_db, "alice")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")

    def codes(conn: Any) -> dict[str, Any]:
        got: dict[str, Any] = fleet_db.call(conn, "SELECT twofa_api.offline_codes(%s)",
                                            "alice")
        return got

    def report(conn: Any, used: list[str], failures: int) -> dict[str, Any]:
        got: dict[str, Any] = fleet_db.call(
            conn, "SELECT twofa_api.offline_report(%s, %s, %s)", "alice", used, failures)
        return got

    assert codes(h1) == {"result": "not-allowed"}  # no login on host1 yet
    wait_fresh_step()
    assert check(fleet_db, h1, "alice", code_now(secret))["result"] == "ok"
    got = codes(h1)
    assert got["result"] == "ok" and len(got["codes"]) == 3 and got["locked_until"] is None
    bcrypt = Bcrypt()  # the host verifies pgcrypto's hashes
    assert sorted(c for c in CODES["alice"]
                  if any(bcrypt.matches(h, c) for h in got["codes"])) == CODES["alice"]
    assert not any(bcrypt.matches(h, "0000000000") for h in got["codes"])
    assert codes(h2) == {"result": "not-allowed"}  # alice never logged in on host2
    assert report(h2, got["codes"], 5) == {"result": "not-allowed"}
    assert fleet_db.row("alice")["failures"] == 0 and len(codes(h1)["codes"]) == 3
    assert report(h1, got["codes"][:1], 2) == {"result": "ok", "used": 1,
                                               "locked_until": None, "suspended": False}
    assert len(codes(h1)["codes"]) == 2 and fleet_db.row("alice")["failures"] == 2
    fleet_db.settings(offline_days=0)  # break-glass off fleet-wide: none given, none made
    assert codes(h1) == {"result": "not-allowed"}
    set_codes(fleet_db, "alice")
    assert fleet_db.server.psql("SELECT count(*) FROM twofa.recovery_codes "
                                "WHERE slow IS NOT NULL") == "0"
    fleet_db.settings(offline_days=30)
    admin = fleet_db.connect(ADMIN)
    assert fleet_db.call(admin, "SELECT twofa_api.admin_reset(%s)", "alice") is True
    assert codes(h1) == {"result": "not-allowed"}  # reset: the host's login is forgotten


def test_offline_deny_caches_nothing_and_drops_an_old_cache(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> None:
    fleet_db.settings(offline_days=30)
    secret = fleet_db.enroll("alice")
    set_codes(fleet_db, "alice")
    glass = tmp_path / "glass"
    d = start(daemons, tmp_path, "host1", fleet_db.server.dsn("host1"),
              offline="recovery-codes", offline_dir=glass)
    h = Host(tmp_path, "host1", d, d.socket)
    h.env.write_policy(policy(d.socket, BREAK_GLASS))
    try:
        wait_fresh_step()
        assert h.login("alice", code_now(secret)).rc == 0
        wait_for(lambda: n_cached(d, "alice") == 3, "alice's hashes")
        d.stop()
        daemons.remove(d)
        deny = start(daemons, tmp_path, "host1-deny", fleet_db.server.dsn("host1"),
                     offline_dir=glass)
        assert os.listdir(glass) == []  # dropped at start
        # the module's policy says recovery-codes, the daemon's deny: nothing cached
        h.env.write_policy(policy(deny.socket, BREAK_GLASS))
        wait_fresh_step(after=int(time.time()) // 30)
        assert h.login("alice", code_now(secret)).rc == 0
        time.sleep(1.0)
        assert os.listdir(glass) == []
        fleet_db.server.stop("fast")
        started = time.monotonic()
        res = h.env.pamtester("svc", "alice", ["secret", CODES["alice"][0]])
        assert time.monotonic() - started < TIMEOUT + 0.5, res
        assert res.rc != 0 and log_text(res).endswith(
            "result=refused reason=offline enrolled=yes"), res
        assert "Recovery code" not in output(res)
    finally:
        h.env.close()


def test_a_reset_user_is_dropped_from_the_cache(fleet_db: FleetDb,
                                                glass_hosts: list[Host]) -> None:
    h1 = glass_hosts[0]
    assert h1.daemon is not None
    secret = fleet_db.enroll("alice")
    set_codes(fleet_db, "alice")
    wait_fresh_step()
    assert h1.login("alice", code_now(secret)).rc == 0
    wait_for(lambda: n_cached(h1.daemon, "alice") == 3, "alice's hashes")
    admin = fleet_db.connect(ADMIN)
    assert fleet_db.call(admin, "SELECT twofa_api.admin_reset(%s)", "alice") is True
    res = h1.login("alice", None)  # not enrolled any more (alice is required: grace)
    assert res.rc == 0 and "reason=grace" in log_text(res), res
    wait_for(lambda: cached(h1.daemon, "alice") is None, "alice dropped")


def test_break_glass_in_time_when_the_server_never_answers(
        fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon], hung_server: int) -> None:
    """A database that accepts TCP and never answers: the daemon's health check gives
    up on it within the timeout, and recovery codes are checked on the host at once
    (measured: 0.16 s a login, load ~15), once each."""
    fleet_db.settings(offline_days=30)
    secret = fleet_db.enroll("alice")
    set_codes(fleet_db, "alice")
    glass, cache = tmp_path / "glass", tmp_path / "enrolled.json"
    d = start(daemons, tmp_path, "host1", fleet_db.server.dsn("host1"), cache,
              offline="recovery-codes", offline_dir=glass)
    h = Host(tmp_path, "host1", d, d.socket)
    try:
        h.env.write_policy(policy(d.socket, BREAK_GLASS))
        wait_fresh_step()
        assert h.login("alice", code_now(secret)).rc == 0
        wait_for(lambda: n_cached(d, "alice") == 3, "alice's hashes")
        d.stop()
        daemons.remove(d)
        hung = start(daemons, tmp_path, "hung", f"host=127.0.0.1 port={hung_server} "
                     "user=host1 dbname=postgres sslmode=disable", cache,
                     offline="recovery-codes", offline_dir=glass)
        h.env.write_policy(policy(hung.socket, BREAK_GLASS))
        for code, ok in ((CODES["alice"][2], True), (CODES["alice"][2], False)):
            started = time.monotonic()
            res = h.login("alice", code)
            assert time.monotonic() - started < TIMEOUT + 2.5, res
            assert (res.rc == 0) is ok, res
            assert "reason=offline verdict=" + ("recovery-code" if ok else "bad-code") in (
                log_text(res)), res
    finally:
        h.env.close()


def test_policy_accepts_offline_recovery_codes_and_fleet_init_copies_it() -> None:
    """Strict validation stays (test_policy_core: a bad value names its line); ``fleet
    init`` turns break-glass on fleet-wide only from a recovery-codes policy."""
    base = ("store:\n  backend: postgresql\n  postgresql:\n"
            "    dsn: host=db dbname=twofa user=web1\n")
    pol = policy_mod.build(policyfile.parse_text(base + BREAK_GLASS, "p.yaml"))
    assert pol.store.postgresql.offline == "recovery-codes"
    assert settings_of(pol)["offline_days"] == 30
    deny = policy_mod.build(policyfile.parse_text(base, "p.yaml"))
    assert deny.store.postgresql.offline == "deny" and settings_of(deny)["offline_days"] == 0
