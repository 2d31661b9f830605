"""``twofa-enroll`` on a fleet host (issue 14): the real enrollment service as root on
host1 (store.backend postgresql, its twofa-fleetd), ``twofa-enroll`` run by Debian's
python3 as the user, pamtester logins on host2 (another daemon, another host role),
one real PostgreSQL. Enroll once, log in elsewhere; a re-enrollment voids the old
secret everywhere; proofs, recovery codes and the security email work fleet-wide."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pam_twofa import totp
from pam_twofa.mail import mailer
from tests.enroll_support import (
    client,
    interactive_client,
    running_service,
    shown_secret,
)
from tests.fleet_support import (
    TIMEOUT,
    Daemon,
    FleetDb,
    check,
    daemons,
    fleet_db,
    fleet_template,
    start,
)
from tests.harness.pamenv import oathtool
from tests.harness.smtpd import CertAuthority, MailServer
from tests.harness.wait import wait_fresh_step
from tests.pam_support import log_text, wrong_code
from tests.test_enroll_service import PROMPT, enroll_via_client, raw_request
from tests.test_fleet_login import Host, code_now, hosts, policy
from tests.test_security_email_service import code_in

__all__ = ["daemons", "fleet_db", "fleet_template", "hosts"]

ALICE = 4242  # the first user of a Host (required: group twofa)
BOB = 4243  # not required


def later(secret: str) -> str:
    """The next step's code (this one may be spent)."""
    return oathtool(secret, at=int(time.time()) + 30)


def ask(h: Host, service: Any, uid: int, **request: object) -> dict[str, Any]:
    return raw_request(service, json.dumps(request).encode() + b"\n", uid=uid)


def test_enroll_on_one_host_log_in_on_another_recovery_codes_once(
        fleet_db: FleetDb, hosts: list[Host]) -> None:
    h1, h2 = hosts
    assert h1.env.users["alice"].uid == ALICE
    with running_service(h1.env) as service:
        secret, uri, codes = enroll_via_client(h1.env, service, "alice")
        assert f"secret={secret}" in uri
        assert len(codes) == 10 and all(len(c) == 10 for c in codes)
        shown = client(h1.env, service, ["status", "--json"], ALICE)
        assert shown.returncode == 0, shown.stderr
        info = json.loads(shown.stdout)
        assert info["enrolled"] is True and info["required"] is True
        assert info["recovery_codes_left"] == 10 and info["pending"] is False
        assert info["email"] is None and secret not in shown.stdout
    res = h2.login("alice", later(secret))  # the confirming step is spent fleet-wide
    assert res.rc == 0 and log_text(res).endswith("reason=ok"), res
    used = h2.login("alice", codes[0])
    assert used.rc == 0 and "reason=recovery-code" in log_text(used), used
    again = h1.login("alice", codes[0])  # once, fleet-wide
    assert again.rc != 0 and "reason=bad-code" in log_text(again), again


def test_reenroll_needs_a_proof_counted_fleet_wide_and_voids_the_old_secret(
        fleet_db: FleetDb, hosts: list[Host]) -> None:
    h1, h2 = hosts
    old = fleet_db.enroll("alice")
    fleet_db.call(fleet_db.connect("fleetadmin"),
                  "SELECT twofa_api.admin_set_recovery_codes('alice', %s)", ["1" * 10])
    conn = fleet_db.connect("host2")  # a device trusted on host2, revoked by re-enrolling
    grant = fleet_db.call(conn, "SELECT twofa_api.prove('alice', %s)", "1" * 10)["grant"]
    assert fleet_db.call(conn, "SELECT twofa_api.add_device('alice', %s, 'sshd', "
                               "'192.0.2.9', NULL)", grant)["result"] == "ok"
    with running_service(h1.env) as service:
        assert ask(h1, service, ALICE, op="begin")["error"] == "code-needed"
        assert ask(h1, service, ALICE, op="recovery-codes")["error"] == "code-needed"
        wrong = ask(h1, service, ALICE, op="begin", code=wrong_code(old))
        assert wrong["error"] == "bad-code"
        assert fleet_db.row("alice")["failures"] == 1  # the database counted it
        res = h2.login("alice", wrong_code(old))  # and a login elsewhere adds up
        assert res.rc != 0 and log_text(res).endswith("failures=2"), res
        wait_fresh_step()
        proc = interactive_client(h1.env, service, ["--qr", "none"], ALICE)
        proc.expect("Current code from your app")
        proc.send(code_now(old))
        new = shown_secret(proc.expect(PROMPT))
        assert new != old
        shown = client(h1.env, service, ["status", "--json"], ALICE)
        assert json.loads(shown.stdout)["pending"] is True
        proc.send(code_now(new))
        rc, out = proc.finish()
        assert rc == 0 and "Two-factor authentication is on." in out, out
        assert "1 trusted device revoked" in out, out
    assert fleet_db.row("alice")["failures"] == 0
    assert fleet_db.call(fleet_db.connect("fleetadmin"),
                         "SELECT twofa_api.admin_devices('alice')") == []
    refused = h2.login("alice", later(old))
    assert refused.rc != 0 and "reason=bad-code" in log_text(refused), refused
    ok = h2.login("alice", later(new))
    assert ok.rc == 0 and log_text(ok).endswith("reason=ok"), ok


def test_devices_of_this_host_and_disable_only_when_not_required(
        fleet_db: FleetDb, hosts: list[Host]) -> None:
    h1, h2 = hosts
    a_secret = fleet_db.enroll("alice")
    with running_service(h1.env) as service:
        _secret, _uri, codes = enroll_via_client(h1.env, service, "bob")
        # a trusted device of bob on each host (each with a grant of that host)
        for role, proof in (("host1", codes[0]), ("host2", codes[1])):
            conn = fleet_db.connect(role)
            grant = fleet_db.call(conn, "SELECT twofa_api.prove(%s, %s)", "bob", proof)["grant"]
            dev = fleet_db.call(conn, "SELECT twofa_api.add_device(%s, %s, 'sshd', "
                                      "'192.0.2.1', NULL)", "bob", grant)
            assert dev["result"] == "ok", dev
        listed = client(h1.env, service, ["devices", "--json"], BOB)
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert len(rows) == 1 and rows[0]["ip"] == "192.0.2.1"  # host1's only
        gone = client(h1.env, service, ["devices", "revoke", rows[0]["id"]], BOB)
        assert gone.returncode == 0 and "Revoked 1" in gone.stdout, gone
        assert json.loads(client(h1.env, service, ["devices", "--json"], BOB).stdout) == []
        admin = fleet_db.connect("fleetadmin")
        assert len(fleet_db.call(admin, "SELECT twofa_api.admin_devices('bob')")) == 1
        # alice is required by the policy: no disable, and her code is not used up
        wait_fresh_step()
        no = client(h1.env, service, ["disable"], ALICE, input=code_now(a_secret) + "\n")
        assert no.returncode == 77 and "requires" in no.stderr, no
        # bob may, with a proof; then he is off fleet-wide
        off = client(h1.env, service, ["disable"], BOB, input=codes[2] + "\n")
        assert off.returncode == 0, off.stderr
        info = json.loads(client(h1.env, service, ["status", "--json"], BOB).stdout)
        assert info["enrolled"] is False and info["recovery_codes_left"] == 0
        assert ask(h1, service, BOB, op="disable", code="123456")["error"] == "not-enrolled"
    assert fleet_db.call(admin, "SELECT twofa_api.admin_devices('bob')") == []
    res = h2.login("bob", None)  # not required, not enrolled: the password alone
    assert res.rc == 0 and "reason=not-enrolled" in log_text(res), res
    ok = h2.login("alice", code_now(a_secret))  # alice's code was not spent
    assert ok.rc == 0, ok


def test_sql_mask_is_mailer_mask(fleet_db: FleetDb) -> None:
    conn = fleet_db.connect()
    for address in ("alice@example.com", "a@b.c", "x.y+z@mail.example.org",
                    "\u00e9l\u00e8ve@example.fr"):
        assert fleet_db.call(conn, "SELECT twofa.mask(%s)", address) == mailer.mask(address)


@pytest.fixture
def srv(ca: CertAuthority) -> Iterator[MailServer]:
    with MailServer(ca.server_context(), "starttls", users={"bob": "hunter2"}) as server:
        yield server


def test_security_email_on_the_fleet(fleet_db: FleetDb, hosts: list[Host],
                                     daemons: list[Daemon], ca: CertAuthority,
                                     srv: MailServer, tmp_path: Path) -> None:
    h1, _h2 = hosts
    password = tmp_path / "smtp-password"
    password.write_text("hunter2\n")
    password.chmod(0o600)
    assert h1.daemon is not None
    extra = (f"smtp: {{host: localhost, port: {srv.port}, username: bob, "
             f"password_file: {password}, ca_file: {ca.ca_file}, timeout_seconds: 2}}\n"
             "emergency: {max_sends_per_hour: 3}\n")
    h1.env.write_policy(policy(h1.daemon.socket, extra))
    h1.env.policy.chmod(0o644)
    secret = fleet_db.enroll("alice")
    proofs = [f"{i}" * 10 for i in range(1, 4)]  # recovery codes: no wait for a fresh step
    fleet_db.call(fleet_db.connect("fleetadmin"),
                  "SELECT twofa_api.admin_set_recovery_codes(%s, %s)", "alice", proofs)
    email = "SELECT email, email_changed_at IS NOT NULL FROM twofa.users WHERE name = %s"
    pg = fleet_db.connect()
    with running_service(h1.env) as service:
        first = ask(h1, service, ALICE, op="email", address="alice@example.com")
        assert first["error"] == "code-needed"  # no proof: nothing mailed
        bad = ask(h1, service, ALICE, op="email", address="alice@example.com",
                  code=wrong_code(secret))
        assert bad["error"] == "bad-code" and fleet_db.row("alice")["failures"] == 1
        done = client(h1.env, service, ["email", "alice@example.com", "--no-wait"], ALICE,
                      input=proofs[0] + "\n")
        assert done.returncode == 0 and "a***@example.com" in done.stdout, done
        code = code_in(srv, 1)
        assert srv.received[0].rcpt_tos == ["alice@example.com"]
        info = json.loads(client(h1.env, service, ["status", "--json"], ALICE).stdout)
        assert info["email"] is None and info["email_pending"] == "a***@example.com"
        assert code.encode() not in b"".join(
            p.read_bytes() for p in h1.env.state_dir.rglob("*") if p.is_file())
        wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
        no = client(h1.env, service, ["email-verify", wrong], ALICE)
        assert no.returncode != 0 and "wrong verification code" in no.stderr, no
        with pg.cursor() as cur:
            cur.execute(email, ("alice",))
            assert cur.fetchone() == (None, False)
        ok = client(h1.env, service, ["email-verify", code], ALICE)
        assert ok.returncode == 0 and "a***@example.com" in ok.stdout, ok
        with pg.cursor() as cur:
            cur.execute(email, ("alice",))
            assert cur.fetchone() == ("alice@example.com", True)
        info = json.loads(client(h1.env, service, ["status", "--json"], ALICE).stdout)
        assert info["email"] == "a***@example.com" and info["email_pending"] is None
        held = info["emergency_held_until"]
        assert held is not None and abs(held - (time.time() + 24 * 3600)) < 120
        # a second change: proven again, the old address is told
        done = client(h1.env, service, ["email", "new@example.org", "--no-wait"], ALICE,
                      input=code_now(secret) + "\n")  # a TOTP code proves it too
        assert done.returncode == 0, done
        ok = client(h1.env, service, ["email-verify", code_in(srv, 2)], ALICE)
        assert ok.returncode == 0, ok
        told = srv.wait(3)[2]
        assert told.rcpt_tos == ["alice@example.com"] and "n***@example.org" in told.body
        with pg.cursor() as cur:
            cur.execute(email, ("alice",))
            assert cur.fetchone() == ("new@example.org", True)
        # the hourly verification budget holds (3 here): the third is refused first
        d = client(h1.env, service, ["email", "x@example.org", "--no-wait"], ALICE,
                   input=proofs[1] + "\n")
        assert d.returncode == 0, d
        d = client(h1.env, service, ["email", "y@example.org", "--no-wait"], ALICE,
                   input=proofs[2] + "\n")
        assert d.returncode != 0 and "Too many codes were mailed" in d.stderr, d
        x_code = code_in(srv, 4)
        # the daemon gone: email-verify fails offline and the waiting address stays
        h1.daemon.stop()
        off = client(h1.env, service, ["email-verify", x_code], ALICE)
        assert off.returncode != 0 and "cannot be reached" in off.stderr, off
        # a new daemon (another socket: the policy in force is read at each request)
        d2 = start(daemons, tmp_path, "host1-again", fleet_db.server.dsn("host1"))
        h1.env.write_policy(policy(d2.socket, extra))
        ok = client(h1.env, service, ["email-verify", x_code], ALICE)
        assert ok.returncode == 0, ok
        assert srv.wait(5)[4].rcpt_tos == ["new@example.org"]  # the old address is told
    assert len(srv.received) == 5
    left = fleet_db.call(fleet_db.connect(), "SELECT count(*) FROM twofa.recovery_codes")
    assert left == 1  # the refusal came before the proof: proofs[2] still works


def test_proof_without_grant_is_refused_by_the_database(fleet_db: FleetDb) -> None:
    """A host cannot disable or name an address for an enrolled user without a grant,
    nor use another host's grant."""
    secret = fleet_db.enroll("alice")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    no = {"result": "no-grant"}
    assert fleet_db.call(h1, "SELECT twofa_api.disable('alice', %s)", "x" * 48) == no
    assert fleet_db.call(h1, "SELECT twofa_api.email_begin('alice', NULL, "
                             "'m@evil.example', 600)") == no
    grant = check(fleet_db, h1, "alice", code_now(secret))["grant"]
    assert fleet_db.call(h2, "SELECT twofa_api.disable('alice', %s)", grant) == no
    assert fleet_db.call(h2, "SELECT twofa_api.email_set('alice', 'm@evil.example')") == {
        "result": "no-pending"}
    assert fleet_db.call(h1, "SELECT twofa_api.disable('alice', %s)", grant) == {"result": "ok"}


def test_unreachable_database_is_a_clear_refusal_in_time(fleet_db: FleetDb,
                                                         hosts: list[Host]) -> None:
    """The service answers ``offline`` within the daemon's timeout, changes nothing
    and keeps serving; with no daemon at all, too."""
    h1, _h2 = hosts
    secret = fleet_db.enroll("alice")
    with running_service(h1.env) as service:
        fleet_db.server.stop("fast")
        for _ in range(2):
            started = time.monotonic()
            shown = client(h1.env, service, ["status"], ALICE)
            assert shown.returncode != 0, shown
            assert "the fleet database cannot be reached" in shown.stderr, shown
            begun = ask(h1, service, ALICE, op="begin", code=code_now(secret))
            assert begun["error"] == "offline", begun
            assert time.monotonic() - started < 2 * (TIMEOUT + 0.5) + 3
            assert h1.daemon is not None
            h1.daemon.stop()  # the second round: no daemon at all
        assert service.alive()


def test_reenrollment_begun_before_a_lock_does_not_lift_it(fleet_db: FleetDb) -> None:
    """A re-enrollment's wrong confirming codes count as at a login; once locked or
    suspended, finishing the re-enrollment is refused (the file store's rule)."""
    fleet_db.settings(max_failures=2)
    secret = fleet_db.enroll("alice")
    h1 = fleet_db.connect("host1")
    grant = check(fleet_db, h1, "alice", code_now(secret))["grant"]
    begun = fleet_db.call(h1, "SELECT twofa_api.enroll_begin('alice', %s, 6, 30, 'SHA1')",
                          grant)
    new = totp.b32encode(bytes.fromhex(begun["secret"]))
    finish = "SELECT twofa_api.enroll_finish('alice', %s)"
    first = fleet_db.call(h1, finish, wrong_code(new))
    assert first["result"] == "bad-code" and first["failures"] == 1, first
    assert fleet_db.call(h1, finish, wrong_code(new))["locked_until"] is not None
    locked = fleet_db.call(h1, finish, code_now(new))
    assert locked["result"] == "locked", locked
    assert fleet_db.row("alice")["lock_level"] == 1
    refused = check(fleet_db, h1, "alice", code_now(new))
    assert refused["result"] == "locked"  # the old secret is still the one, and locked
