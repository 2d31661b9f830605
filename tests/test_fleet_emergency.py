"""Emergency codes by mail on the fleet store: pamtester on two hosts (one twofa-fleetd
and one host role each) in front of one real PostgreSQL, and a real aiosmtpd. The
database makes each code (keeping a MAC bound to the host that asked), counts the
hourly sends, the wrong codes and the hold after a change of address fleet-wide;
the host mails the code and the notices."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pam_twofa.fleet import admin
from pam_twofa.login import format_time
from pam_twofa.schema import defaults
from tests.fleet_support import (
    ADMIN,
    HOSTS,
    TIMEOUT,
    Daemon,
    FleetDb,
    daemons,
    fleet_db,
    fleet_template,
    start,
)
from tests.harness.pamenv import Result
from tests.harness.smtpd import MailServer
from tests.pam_support import log_text, output
from tests.test_emergency_pam import code_of
from tests.test_fleet_login import OFFLINE, Host, code_now, policy

__all__ = ["daemons", "fleet_db", "fleet_template"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ADDRESS = "alice@example.org"
OFFER = "Verification code (or 'email' to get one by mail): "


def mail_policy(port: int, emergency: str = "") -> str:
    """A host's policy additions: plain SMTP to the test server, emergency codes on."""
    return (f"smtp: {{host: 127.0.0.1, port: {port}, security: none, "
            "from: twofa@test.example, timeout_seconds: 2}\n"
            f"emergency: {{enabled: true{emergency}}}\n")


@pytest.fixture
def mail() -> Iterator[MailServer]:
    with MailServer(None, "none") as srv:
        yield srv


@pytest.fixture
def hosts(fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon],
          mail: MailServer) -> Iterator[list[Host]]:
    """host1 and host2 on one fleet database, both able to mail."""
    made: list[Host] = []
    for role in HOSTS[:2]:
        d = start(daemons, tmp_path, role, fleet_db.server.dsn(role))
        host = Host(tmp_path, role, d, d.socket)
        host.env.write_policy(policy(d.socket, mail_policy(mail.port)))
        made.append(host)
    yield made
    for h in made:
        h.env.close()


def with_address(db: FleetDb, user: str = "alice", address: str = ADDRESS) -> str:
    """``user`` enrolled, with a security email set by the admin (no hold)."""
    secret = db.enroll(user)
    assert db.call(db.connect(ADMIN), "SELECT twofa_api.admin_set_email(%s, %s)", user,
                   address)
    return secret


class Asking:
    """One pamtester login, answered prompt by prompt (its stderr read as it comes)."""

    def __init__(self, host: Host, user: str = "alice") -> None:
        self.env = host.env
        self.proc = subprocess.Popen(
            ["pamtester", "-v", "svc", user, "authenticate"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env.wrapper_env(),
            cwd=self.env.root, bufsize=0)
        self.err = b""

    def say(self, answer: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(answer.encode() + b"\n")

    def wait_for(self, text: str, timeout: float = 15.0) -> None:
        assert self.proc.stderr is not None
        fd, deadline = self.proc.stderr.fileno(), time.monotonic() + timeout
        while text.encode() not in self.err:
            left = deadline - time.monotonic()
            assert left > 0, self.err
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 4096)
                assert chunk, self.err
                self.err += chunk

    def finish(self, timeout: float = 20.0) -> Result:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return Result(self.proc.returncode, out.decode(), (self.err + err).decode(),
                      self.env._log.drain())


def other(code: str) -> str:
    """A code of the same length that is not ``code``."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def emergency_login(host: Host, srv: MailServer, n: int,
                    answer: Callable[[str], str] | None = None,
                    before: Callable[[str], None] | None = None) -> tuple[Result, str]:
    """Password, ``email``, then the code of mail number ``n`` (1-based) once it
    arrived (``answer(code)``: typed instead; ``before(code)``: run first)."""
    ask = Asking(host)
    ask.say("secret")
    ask.say("email")
    code = code_of(srv.wait(n)[n - 1])
    if before is not None:
        before(code)
    ask.say(answer(code) if answer else code)
    return ask.finish(), code


def reason(res: Result) -> str:
    return log_text(res).split("result=", 1)[1]


# ----------------------------------------------------------------------------- tests
def test_code_by_mail_logs_in_once_fleet_wide(fleet_db: FleetDb, hosts: list[Host],
                                              mail: MailServer) -> None:
    h1, h2 = hosts
    with_address(fleet_db)

    def not_in_the_database(code: str) -> None:
        rows = fleet_db.server.psql("SELECT row_to_json(u) FROM twofa.users AS u")
        assert code not in rows and "emergency_host\":\"host1" in rows

    res, code = emergency_login(h1, mail, 1, before=not_in_the_database)
    assert res.rc == 0, res
    assert OFFER in res.stderr and "Emergency code: " in res.stderr
    assert "An emergency code was sent to a***@example.org; it is valid for 10 minutes" \
        in output(res)
    assert reason(res) == "success reason=emergency-code notified=yes"
    sent, notice = mail.wait(2)
    assert sent.rcpt_tos == [ADDRESS] and notice.rcpt_tos == [ADDRESS]
    assert "emergency code was used" in notice.message["Subject"]
    assert "Account: alice" in notice.body and code not in notice.raw.decode()
    assert fleet_db.row("alice")["failures"] == 0
    # The used code, afterwards: on the other host, then on the host that mailed it
    # (each asks for a fresh code first, which voids nothing the old one could match).
    for n, host in ((3, h2), (4, h1)):
        res, fresh = emergency_login(host, mail, n, answer=lambda _new: code)
        assert res.rc != 0 and fresh != code, res
        assert reason(res) == f"refused reason=bad-emergency-code failures={n - 2}"
        assert "Wrong or expired emergency code." in output(res)
    assert len(mail.wait(4)) == 4  # no notice for a refused code


def test_wrong_codes_on_two_hosts_add_up_to_one_lock(fleet_db: FleetDb, hosts: list[Host],
                                                     mail: MailServer) -> None:
    h1, h2 = hosts
    fleet_db.settings(max_failures=3, max_sends_per_hour=10)
    secret = with_address(fleet_db)
    said = [reason(emergency_login(h, mail, n, answer=other)[0])
            for n, h in enumerate((h1, h2, h1), start=1)]
    assert said[:2] == [f"refused reason=bad-emergency-code failures={i}" for i in (1, 2)]
    assert said[2].startswith("refused reason=bad-emergency-code failures=3 locked_until=")
    assert said[2].endswith(" notified=yes")
    notice = mail.wait(4)[3]  # the owner hears of the lock
    assert "locked" in notice.message["Subject"] and notice.rcpt_tos == [ADDRESS]
    for host in (h2, h1):  # locked on both: no code is mailed, no TOTP code looked at
        res = host.env.pamtester("svc", "alice", ["secret", "email"])
        assert res.rc != 0 and reason(res).startswith("refused reason=locked"), res
        assert "locked until" in output(res)
        res = host.login("alice", code_now(secret))
        assert res.rc != 0 and reason(res).startswith("refused reason=locked"), res
    assert len(mail.received) == 4
    assert fleet_db.row("alice")["failures"] == 3


def test_hourly_send_limit_is_fleet_wide(fleet_db: FleetDb, hosts: list[Host],
                                         mail: MailServer) -> None:
    h1, h2 = hosts
    fleet_db.settings(max_sends_per_hour=2, emergency_ttl_seconds=120)
    with_address(fleet_db)
    for n, host in ((1, h1), (2, h2)):
        res, _code = emergency_login(host, mail, n, answer=other)
        assert res.rc != 0 and "bad-emergency-code" in reason(res)
        assert "it is valid for 2 minutes" in output(res)  # the fleet's ttl, not the host's
        assert "valid for 2 minutes" in mail.received[n - 1].body
    for host in (h1, h2):  # two sends from two hosts: the fleet's hour is used up
        res = host.env.pamtester("svc", "alice", ["secret", "email"])
        assert res.rc != 0 and reason(res) == "refused reason=mail-send-limit", res
        assert "Too many codes were mailed to you in the last hour" in output(res)
    assert len(mail.received) == 2


def test_address_change_holds_codes_and_says_until_when(
        fleet_db: FleetDb, hosts: list[Host], mail: MailServer) -> None:
    h1, h2 = hosts
    secret = with_address(fleet_db)
    fleet_db.server.psql("UPDATE twofa.users SET email = 'new@example.org', "
                         "email_changed_at = now() - interval '1 hour' WHERE name = 'alice'")
    changed = float(fleet_db.server.psql(
        "SELECT twofa.epoch(email_changed_at) FROM twofa.users WHERE name = 'alice'"))
    paused = (f"Emergency codes by mail are paused until {format_time(changed + 24 * 3600)}: "
              "your security email was changed.")
    res = h1.login("alice", code_now(secret))  # the plain prompt, and why
    assert res.rc == 0, res
    assert paused in output(res) and OFFER not in res.stderr
    # A host whose own policy has no pause: the database holds the codes all the same.
    assert h2.daemon is not None
    h2.env.write_policy(policy(h2.daemon.socket,
                               mail_policy(mail.port, ", after_email_change_hours: 0")))
    res = h2.env.pamtester("svc", "alice", ["secret", "email"])
    assert res.rc != 0 and reason(res) == "refused reason=email-changed", res
    assert OFFER in res.stderr and paused in output(res)
    assert mail.received == []
    # The admin vouches for the address: no hold, codes go to it.
    assert fleet_db.call(fleet_db.connect(ADMIN),
                         "SELECT twofa_api.admin_set_email('alice', 'new@example.org')")
    res, _code = emergency_login(h1, mail, 1)
    assert res.rc == 0 and OFFER in res.stderr, res
    assert mail.received[0].rcpt_tos == ["new@example.org"]


@pytest.mark.parametrize("phase", ["email", "code"])
def test_database_down_while_asking_refuses_in_time(
        fleet_db: FleetDb, hosts: list[Host], mail: MailServer, phase: str) -> None:
    """The database stops after the prompt (``email``: before the code is made;
    ``code``: after it was mailed): refused within timeout_seconds, never let in."""
    with_address(fleet_db)
    ask = Asking(hosts[0])
    ask.say("secret")
    ask.wait_for(OFFER)
    answer = "email"
    if phase == "code":
        ask.say("email")
        answer = code_of(mail.wait(1)[0])
        ask.wait_for("Emergency code: ")
    fleet_db.server.stop("fast")
    started = time.monotonic()
    ask.say(answer)
    res = ask.finish()
    took = time.monotonic() - started
    print(f"database down at the {phase} prompt: refused in {took:.2f} s")
    assert took < TIMEOUT + 0.5, (took, res)
    assert res.rc != 0 and OFFLINE in output(res), res
    assert reason(res) == "refused reason=offline enrolled=yes"
    assert len(mail.received) == int(phase == "code")


# ------------------------------------------------------------------- the database side
def test_status_says_whether_and_since_when_never_the_address(fleet_db: FleetDb) -> None:
    fleet_db.enroll("alice")
    h1 = fleet_db.connect("host1")
    status, begin = "SELECT twofa_api.status('alice')", "SELECT twofa_api.emergency_begin(%s)"
    st = fleet_db.call(h1, status)
    assert st["email"] is False and st["email_changed_at"] is None
    with_address(fleet_db, "bob")  # another user's address changes nothing of alice's
    assert fleet_db.call(fleet_db.connect(ADMIN),
                         "SELECT twofa_api.admin_set_email('alice', 'a@example.org')")
    code = fleet_db.call(h1, begin, "alice")["code"]
    fleet_db.server.psql("UPDATE twofa.users SET email_changed_at = now() WHERE name = 'alice'")
    st = fleet_db.call(h1, status)
    assert st["email"] is True and abs(st["email_changed_at"] - time.time()) < 60
    assert "example.org" not in json.dumps(st)
    assert fleet_db.call(h1, begin, "alice")["result"] == "email-changed"
    # The admin sets another address: verified (no hold), and the code mailed to the
    # old one stops working.
    assert fleet_db.call(fleet_db.connect(ADMIN),
                         "SELECT twofa_api.admin_set_email('alice', 'b@example.org')")
    assert fleet_db.call(h1, status)["email_changed_at"] is None
    used = fleet_db.call(h1, "SELECT twofa_api.emergency_check('alice', %s)", code)
    assert used["result"] == "bad-emergency-code"


def test_init_upgrades_version_1_and_copies_the_emergency_settings(fleet_db: FleetDb) -> None:
    fleet_db.server.psql("ALTER TABLE twofa.users DROP COLUMN emergency_host; "
                         "UPDATE twofa.schema_version SET version = 1")
    base = defaults()
    pol = base.replace(emergency=base.emergency.replace(
        code_digits=6, ttl_seconds=300, max_sends_per_hour=5, after_email_change_hours=2))
    conn = admin.connect(fleet_db.server.dsn())
    try:
        assert admin.init(conn, admin.settings_of(pol)) == (1, admin.SCHEMA_VERSION)
    finally:
        conn.close()
    assert fleet_db.server.psql(
        "SELECT emergency_digits, emergency_ttl_seconds, max_sends_per_hour, "
        "after_email_change_hours FROM twofa.settings") == "6|300|5|2"
    with_address(fleet_db, "nina", "n@example.org")
    h1, h2 = fleet_db.connect("host1"), fleet_db.connect("host2")
    got = fleet_db.call(h1, "SELECT twofa_api.emergency_begin('nina')")
    assert len(got["code"]) == 6 and got["ttl_seconds"] == 300
    assert 290 < got["expires"] - time.time() <= 300
    use = "SELECT twofa_api.emergency_check('nina', %s)"
    assert fleet_db.call(h2, use, got["code"])["result"] == "bad-emergency-code"
    assert fleet_db.call(h1, use, got["code"])["result"] == "emergency-code"
