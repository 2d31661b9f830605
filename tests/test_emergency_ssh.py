"""Emergency codes through the real sshd (keyboard-interactive, paramiko client), the
module running as sshd's unprivileged uid, mail through aiosmtpd with STARTTLS + AUTH:
answer ``email``, read the code from the received mail, log in; the same code again,
an expired code and a 4th send in an hour are refused; a closed or black-holed server is
refused within timeout_seconds + 2 s."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.smtpd import CertAuthority, MailServer, black_hole, closed_port
from tests.harness.sshclient import Login, paramiko_login
from tests.harness.sshd import SshServer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

CODE_RE = re.compile(r"^ {4}(\d{6,12})\r?$", re.M)
TIMEOUT = 2
SLACK = 2.0
POLICIES: dict[SshServer, str] = {}  # the policy of each running server, with PORT


class Answers:
    """Prompt answers by substring; the emergency code is read from the mail server only
    when its prompt comes (``before`` runs first, e.g. to expire the stored code)."""

    def __init__(self, srv: MailServer, nth: int, code: str | None = None,
                 before: Callable[[], None] | None = None) -> None:
        self.srv, self.nth, self.code, self.before = srv, nth, code, before
        self.seen: list[str] = []

    def _emergency(self) -> str:
        mail = self.srv.wait(self.nth)[self.nth - 1]
        found = CODE_RE.findall(mail.body)
        assert len(found) == 1, mail.body
        self.seen.append(str(found[0]))
        if self.before is not None:
            self.before()
        return self.code or str(found[0])

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield ("Password", "secret")
        yield ("or 'email'", "email")
        yield ("Emergency code", self._emergency())

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> tuple[str, str]:
        return list(self)[index]


@pytest.fixture
def ssh(sshd_env: SshServer) -> Iterator[tuple[SshServer, MailServer]]:
    server = sshd_env
    env = server.env
    ca = CertAuthority(env.root)  # inside $T: the sshd uid can read it
    password = env.root / "smtp-password"
    password.write_text("hunter2\n")
    password.chmod(0o600)
    os.chown(password, server.uid, server.uid)  # root-only for the module = its own uid
    with MailServer(ca.server_context(), "starttls", users={"bob": "hunter2"}) as srv:
        POLICIES[server] = (
            "mandatory: {scope: all}\n"
            f"smtp: {{host: localhost, port: PORT, username: bob, password_file: {password}, "
            f"ca_file: {ca.ca_file}, from: twofa@test.example, timeout_seconds: {TIMEOUT}}}\n"
            "emergency: {max_sends_per_hour: 3}\n")
        set_port(server, srv.port)
        server.add_user("alice")
        server.enroll("alice")
        done = server.admin("email", "alice", "alice@example.com")
        assert done.returncode == 0, done.stderr
        server.start()
        try:
            yield server, srv
        finally:
            POLICIES.pop(server, None)


def set_port(server: SshServer, port: int) -> None:
    server.write_policy(POLICIES[server].replace("PORT", str(port)))


def login(server: SshServer, answers: Answers) -> Login:
    return paramiko_login(server, "alice", answers)  # type: ignore[arg-type]


def instructions_seen(server: SshServer, answers: list[tuple[str, str]]) -> str:
    """A refused keyboard-interactive login; every instruction text the client got."""
    import paramiko

    seen: list[str] = []

    def handler(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        seen.append(instructions)
        return [next((a for sub, a in answers if sub in text), "") for text, _ in prompts]

    server.drain_log()
    transport = paramiko.Transport((server.host, server.port))
    try:
        transport.start_client(timeout=20)
        with pytest.raises(paramiko.AuthenticationException):
            transport.auth_interactive("alice", handler)
    finally:
        transport.close()
    return "\n".join(seen)


def state_bytes(server: SshServer) -> bytes:
    return b"".join(p.read_bytes() for p in Path(server.env.state_dir).rglob("*")
                    if p.is_file())


def test_email_code_over_ssh(ssh: tuple[SshServer, MailServer]) -> None:
    server, srv = ssh
    first = Answers(srv, 1)
    res = login(server, first)
    assert res.ok, res
    assert res.saw("Verification code (or 'email' to get one by mail)")
    assert res.saw("a***@example.com") and res.saw("Emergency code")
    assert "reason=emergency-code notified=yes" in res.result_line()
    code = first.seen[0]
    notice = srv.wait(2)[1]
    assert "emergency code was used" in notice.message["Subject"]
    assert code not in notice.raw.decode() and "Client:  127.0.0.1" in notice.body
    assert code.encode() not in state_bytes(server)

    again = login(server, Answers(srv, 3, code=code))  # the used code: refused
    assert not again.ok and "reason=bad-emergency-code" in again.result_line()

    def expire() -> None:
        with server.as_owner(), server.store().update("alice") as st:
            assert st.emergency is not None
            st.emergency = {**st.emergency, "expires": time.time() - 1}

    expired = Answers(srv, 4, before=expire)
    late = login(server, expired)  # past its ttl: refused
    assert not late.ok and "reason=bad-emergency-code" in late.result_line()
    assert expired.seen and expired.seen[0].encode() not in state_bytes(server)

    # The 4th send within the hour: sshd hands the module's last message over as an
    # info request without prompts; the client shows its instructions.
    shown = instructions_seen(server, [("Password", "secret"), ("or 'email'", "email")])
    log = " ".join(server.drain_log())
    assert "Too many codes were mailed to you in the last hour" in shown, (shown, log)
    assert "reason=mail-send-limit" in log
    assert len(srv.received) == 4
    assert len(srv.received) == 4


@pytest.mark.parametrize("dead", ["closed", "black-hole"])
def test_dead_server_over_ssh(ssh: tuple[SshServer, MailServer], dead: str) -> None:
    server, _srv = ssh
    with black_hole() as hole:
        set_port(server, closed_port() if dead == "closed" else hole)
        answers = [("Password", "secret"), ("or 'email'", "email"), ("Emergency", "1")]
        started = time.monotonic()
        res = paramiko_login(server, "alice", answers)
        elapsed = time.monotonic() - started
    kind = "connect" if dead == "closed" else "timeout"
    assert not res.ok
    assert f"reason=mail-{kind}" in res.result_line()
    assert elapsed < TIMEOUT + SLACK, elapsed
    print(f"ssh login refused against a {dead} SMTP server in {elapsed:.2f} s")
