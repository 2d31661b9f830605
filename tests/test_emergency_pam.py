"""Emergency codes by mail through a real C host (pamtester under pam_wrapper) and a real
SMTP server (aiosmtpd, STARTTLS with a per-run CA, AUTH): answer ``email``, read the code
from the received message, log in; once only; expiry; the hourly send limit; a dead or
black-holed server refused within timeout_seconds + 2 s; notifications without secrets;
no code in clear in the state dir."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from tests.harness.pamenv import PamEnv, Result, oathtool
from tests.harness.procs import merge_env
from tests.harness.smtpd import CertAuthority, MailServer, Received, black_hole, closed_port
from tests.pam_support import wrong_code

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ADDRESS = "alice@example.com"
TIMEOUT = 2  # smtp.timeout_seconds
SLACK = 2.0
CODE_RE = re.compile(r"^ {4}(\d{6,12})\r?$", re.M)


class World:
    """A PamEnv with alice enrolled, a security email and a mail server to reach."""

    def __init__(self, env: PamEnv, ca: CertAuthority, srv: MailServer) -> None:
        self.env, self.ca, self.srv = env, ca, srv
        self.hosts = env.root / "hosts"
        self.hosts.write_text("127.0.0.1 mail.test\n")
        self.password = env.root / "smtp-password"
        self.password.write_text("hunter2\n")
        self.password.chmod(0o600)
        env.add_user("alice")
        env.service("svc")
        self.policy(port=srv.port)
        done = env.admin("enroll", "alice", "--json")
        assert done.returncode == 0, done.stderr
        self.secret = str(json.loads(done.stdout)["secret"])
        done = env.admin("email", "alice", ADDRESS)
        assert done.returncode == 0 and "a***@example.com" in done.stdout, done

    def policy(self, port: int, max_sends: int = 3, max_failures: int = 5) -> None:
        self.env.write_policy(
            "mandatory: {scope: all}\n"
            f"lockout: {{max_failures: {max_failures}}}\n"
            f"smtp: {{host: mail.test, port: {port}, security: starttls, username: bob, "
            f"password_file: {self.password}, ca_file: {self.ca.ca_file}, "
            f"from: twofa@test.example, timeout_seconds: {TIMEOUT}}}\n"
            f"emergency: {{enabled: true, code_digits: 8, ttl_seconds: 600, "
            f"max_sends_per_hour: {max_sends}}}\n")

    def pam_environ(self) -> dict[str, str]:
        return merge_env(self.env.wrapper_env(), {"NSS_WRAPPER_HOSTS": os.fspath(self.hosts)})

    def store(self) -> FileStore:
        paths = Paths(policy=os.fspath(self.env.policy), policy_explicit=True,
                      state_dir=os.fspath(self.env.state_dir))
        return FileStore(paths, Clock())

    def login(self, answers: list[str]) -> Result:
        return self.env.pamtester("svc", "alice", answers,
                                  env={"NSS_WRAPPER_HOSTS": os.fspath(self.hosts)})

    def emergency_login(self, code_for: int, change: str | None = None,
                        before_answer: object = None) -> tuple[Result, str]:
        """pamtester: password, ``email``, then the code of mail number ``code_for``
        (1-based) read from the server once it arrives; ``change`` replaces it."""
        proc = subprocess.Popen(
            ["pamtester", "-v", "svc", "alice", "authenticate"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.pam_environ(),
            cwd=self.env.root, text=True)
        assert proc.stdin is not None
        try:
            proc.stdin.write("secret\nemail\n")
            proc.stdin.flush()
            code = code_of(self.srv.wait(code_for)[code_for - 1])
            if callable(before_answer):
                before_answer()
            out, err = proc.communicate((change or code) + "\n", timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        logs = self.env._log.drain()
        return Result(proc.returncode, out, err, logs), code


def code_of(mail: Received) -> str:
    found = CODE_RE.findall(mail.body)
    assert len(found) == 1, mail.body
    return str(found[0])


def result_line(res: Result) -> str:
    lines = [x for x in res.log_lines if " result=" in x]
    assert len(lines) == 1, res
    return lines[0]


@pytest.fixture
def world(pam_env: PamEnv, ca: CertAuthority) -> Iterator[World]:
    with MailServer(ca.server_context("mail.test"), "starttls",
                    users={"bob": "hunter2"}) as srv:
        yield World(pam_env, ca, srv)


def assert_no_secret(world: World, mail: Received, *codes: str) -> None:
    text = mail.raw.decode()
    assert world.secret not in text and world.secret.lower() not in text
    for code in codes:
        assert code not in text, (code, text)
    assert "hunter2" not in text


def state_dir_bytes(world: World) -> bytes:
    return b"".join(p.read_bytes() for p in Path(world.env.state_dir).rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- tests
def test_email_code_logs_in_once_and_notifies(world: World) -> None:
    res, code = world.emergency_login(1)
    assert res.rc == 0, res
    assert "Verification code (or 'email' to get one by mail): " in res.stderr
    assert "An emergency code was sent to a***@example.com" in res.stdout + res.stderr
    assert "Emergency code: " in res.stderr
    line = result_line(res)
    assert "result=success reason=emergency-code notified=yes" in line
    assert code not in line
    mails = world.srv.wait(2)
    sent, notice = mails
    assert sent.rcpt_tos == [ADDRESS] and notice.rcpt_tos == [ADDRESS]
    assert sent.tls and sent.login == "bob"
    assert sent.message["Subject"] == "Your emergency verification code"
    assert "emergency code was used" in notice.message["Subject"]
    for header in ("Date", "Message-ID", "From", "To"):
        assert notice.message[header]
    body = notice.body
    assert "Account: alice" in body and "Host:" in body and "Time:" in body
    assert "Client:" in body
    assert_no_secret(world, notice, code)
    assert code.encode() not in state_dir_bytes(world)
    state = world.store().load("alice")
    assert state is not None and state.emergency is None and state.failures == 0

    # The same code again (a new send voids nothing it could still match): refused.
    res, second = world.emergency_login(3, change=code)
    assert res.rc != 0 and second != code
    assert "reason=bad-emergency-code failures=1" in result_line(res)
    assert "Wrong or expired emergency code." in res.stdout + res.stderr
    assert code.encode() not in state_dir_bytes(world)
    assert second.encode() not in state_dir_bytes(world)


def test_new_send_voids_the_previous_code(world: World) -> None:
    res, first = world.emergency_login(1, change="00000000")
    assert res.rc != 0
    res, second = world.emergency_login(2, change=first)
    assert res.rc != 0 and first != second
    assert "reason=bad-emergency-code failures=2" in result_line(res)


def test_expired_code_is_refused(world: World) -> None:
    def expire() -> None:
        with world.store().update("alice") as st:
            assert st.emergency is not None
            st.emergency = {**st.emergency, "expires": time.time() - 1}

    res, _code = world.emergency_login(1, before_answer=expire)
    assert res.rc != 0, res
    assert "reason=bad-emergency-code" in result_line(res)
    state = world.store().load("alice")
    assert state is not None and state.emergency is None  # the expired one is dropped


def test_fourth_send_in_an_hour_is_refused(world: World) -> None:
    for n in (1, 2, 3):
        res, _code = world.emergency_login(n, change="00000000")
        assert res.rc != 0 and "bad-emergency-code" in result_line(res)
    res = world.login(["secret", "email"])
    assert res.rc != 0
    assert "Too many codes were mailed to you in the last hour" in res.stdout + res.stderr
    assert "reason=mail-send-limit" in result_line(res)
    # mails go out within the login (synchronous SMTP): no fourth one can still arrive
    assert len(world.srv.wait(3)) == 3
    state = world.store().load("alice")
    assert state is not None and len(state.sends) == 3 and state.failures == 3


@pytest.mark.parametrize("dead", ["closed", "black-hole"])
def test_dead_server_refused_within_bound(world: World, dead: str) -> None:
    with black_hole() as hole:
        world.policy(port=closed_port() if dead == "closed" else hole)
        started = time.monotonic()
        res = world.login(["secret", "email", "12345678"])
        elapsed = time.monotonic() - started
    kind = "connect" if dead == "closed" else "timeout"
    assert res.rc != 0, res
    assert f"The emergency code could not be mailed ({kind})" in res.stdout + res.stderr
    assert f"reason=mail-{kind}" in result_line(res)
    assert elapsed < TIMEOUT + SLACK, elapsed
    print(f"refused against {dead} server in {elapsed:.2f} s")


def test_lock_notification_and_wrong_emergency_codes_count(world: World) -> None:
    world.policy(port=world.srv.port, max_failures=2)
    res = world.login(["secret", wrong_code(world.secret)])
    assert res.rc != 0
    res, code = world.emergency_login(1, change="00000000")
    assert res.rc != 0
    line = result_line(res)
    assert "reason=bad-emergency-code failures=2 locked_until=" in line
    assert "notified=yes" in line
    notice = world.srv.wait(2)[1]
    assert "locked" in notice.message["Subject"]
    assert "Account: alice" in notice.body and "locked until" in notice.body
    assert_no_secret(world, notice, code)
    # locked: even the right code is refused now, and no mail is sent
    res = world.login(["secret", "email"])
    assert res.rc != 0 and "reason=locked" in result_line(res)
    assert len(world.srv.received) == 2


def test_totp_lock_notifies(world: World) -> None:
    world.policy(port=world.srv.port, max_failures=1)
    wrong = wrong_code(world.secret)
    res = world.login(["secret", wrong])
    assert res.rc != 0
    assert "notified=yes" in result_line(res)
    notice = world.srv.wait(1)[0]
    assert "locked" in notice.message["Subject"]
    assert_no_secret(world, notice, wrong)


def test_admin_reset_notifies_and_address_rules(world: World) -> None:
    env = world.env
    done = env.admin("email", "alice", "not an address")
    assert done.returncode != 0 and "not a valid email address" in done.stderr
    done = env.admin("reset", "alice", env={"NSS_WRAPPER_HOSTS": os.fspath(world.hosts)})
    assert done.returncode == 0, done.stderr
    assert "notice sent to a***@example.com" in done.stdout
    notice = world.srv.wait(1)[0]
    assert "reset" in notice.message["Subject"] and "Account: alice" in notice.body
    assert_no_secret(world, notice)


def test_no_email_no_offer_and_no_mail_modules(world: World) -> None:
    """A plain TOTP login: the plain prompt when no address is set; and smtplib, ssl and
    email never load on a TOTP login even when an address is set."""
    done = world.env.admin("email", "alice", "--clear")
    assert done.returncode == 0 and "removed" in done.stdout
    res = world.login(["secret", oathtool(world.secret)])
    assert res.rc == 0, res
    assert "Verification code: " in res.stderr and "'email'" not in res.stderr
    assert world.env.admin("email", "alice", ADDRESS).returncode == 0
    probe = f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from pam_twofa import core, login, policyfile
from pam_twofa.accounts import Account
from pam_twofa.clock import Clock
from pam_twofa.paths import Paths
from pam_twofa.filestore import FileStore
class Conv(login.Conversation):
    prompts = []
    def ask(self, prompt, echo=False):
        self.prompts.append(prompt)
        return sys.argv[1]
paths = Paths(policy={str(world.env.policy)!r}, policy_explicit=True,
              state_dir={str(world.env.state_dir)!r})
acct = Account(name="alice", uid=1, gid=1, home="/", groups=frozenset())
conv = Conv()
d = core.authenticate(login.Request(user="alice", account=acct, conversation=conv),
                      policyfile.load(paths), FileStore(paths, Clock()), Clock())
print(d.outcome, conv.prompts, sorted(m for m in ("smtplib", "ssl", "email", "socket")
                                      if m in sys.modules))
"""
    later = oathtool(world.secret, at=int(time.time()) + 30)  # next step: not a replay
    out = subprocess.run(["/usr/bin/python3", "-c", probe, later],
                         capture_output=True, text=True, timeout=30, check=False,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "success [\"Verification code (or 'email' to get one by mail): \"] []"), out.stdout
    assert sys.modules  # the probe ran in its own interpreter
