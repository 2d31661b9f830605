"""``twofa-enroll email`` through the real enrollment service (root) and a real SMTP server:
the address is active only after the mailed code is entered, status shows it masked, the
state never holds the code in clear; the verified address then gets emergency codes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa.clock import Clock
from pam_twofa.paths import Paths
from pam_twofa.store import FileStore
from tests.enroll_support import client, interactive_client, running_service
from tests.harness.pamenv import PamEnv
from tests.harness.smtpd import CertAuthority, MailServer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

CODE_RE = re.compile(r"^ {4}(\d{6,12})\r?$", re.M)
ALICE = 4242


@pytest.fixture
def srv(ca: CertAuthority) -> Iterator[MailServer]:
    with MailServer(ca.server_context(), "starttls", users={"bob": "hunter2"}) as server:
        yield server


@pytest.fixture
def world(pam_env: PamEnv, ca: CertAuthority, srv: MailServer) -> PamEnv:
    user = pam_env.add_user("alice")
    assert user.uid == ALICE
    pam_env.service("svc")
    password = pam_env.root / "smtp-password"
    password.write_text("hunter2\n")
    password.chmod(0o600)
    pam_env.write_policy(
        "mandatory: {scope: all}\n"
        f"smtp: {{host: localhost, port: {srv.port}, username: bob, "
        f"password_file: {password}, ca_file: {ca.ca_file}, timeout_seconds: 2}}\n"
        "emergency: {max_sends_per_hour: 3}\n")
    pam_env.policy.chmod(0o644)
    pam_env.allow_uid(ALICE)
    assert pam_env.admin("enroll", "alice", "--json").returncode == 0
    return pam_env


def store(env: PamEnv) -> FileStore:
    return FileStore(Paths(policy=str(env.policy), policy_explicit=True,
                           state_dir=str(env.state_dir)), Clock())


def code_in(srv: MailServer, n: int) -> str:
    found = CODE_RE.findall(srv.wait(n)[n - 1].body)
    assert len(found) == 1
    return str(found[0])


def state_bytes(env: PamEnv) -> bytes:
    return b"".join(p.read_bytes() for p in Path(env.state_dir).rglob("*") if p.is_file())


def test_address_active_only_after_code(world: PamEnv, srv: MailServer) -> None:
    with running_service(world) as service:
        run = interactive_client(world, service, ["email", "alice.smith@example.com"], ALICE)
        run.expect("A verification code was sent to a***@example.com.")
        run.expect("Enter the code from the mail")
        code = code_in(srv, 1)
        mail = srv.received[0]
        assert mail.rcpt_tos == ["alice.smith@example.com"]
        assert mail.message["Subject"] == "Verify your security email"
        state = store(world).load("alice")
        assert state is not None and state.email is None  # not active yet
        assert state.email_pending is not None
        assert code.encode() not in state_bytes(world)
        shown = client(world, service, ["status"], ALICE)
        assert "Waiting for verification: a***@example.com" in shown.stdout, shown
        wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
        run.send(wrong)
        run.expect("wrong verification code; try again.")
        run.send(code)
        rc, text = run.finish()
        assert rc == 0, text
        assert "Security email set: a***@example.com." in text
        state = store(world).load("alice")
        assert state is not None and state.email == "alice.smith@example.com"
        assert state.email_pending is None
        shown = client(world, service, ["status", "--json"], ALICE)
        info = json.loads(shown.stdout)
        assert info["email"] == "a***@example.com" and info["email_pending"] is None
        assert "alice.smith" not in shown.stdout
        shown = client(world, service, ["status"], ALICE)
        assert "Security email:" in shown.stdout and "a***@example.com" in shown.stdout

        # Later: a code entered with email-verify; five wrong ones drop the address.
        done = client(world, service, ["email", "new@example.org", "--no-wait"], ALICE)
        assert done.returncode == 0 and "n***@example.org" in done.stdout, done
        second = code_in(srv, 2)
        for _ in range(5):
            bad = client(world, service, ["email-verify", "99999999"
                                          if second != "99999999" else "88888888"], ALICE)
            assert bad.returncode != 0
        assert "5 wrong verification codes" in bad.stderr
        late = client(world, service, ["email-verify", second], ALICE)
        assert late.returncode != 0 and "no security email is waiting" in late.stderr
        state = store(world).load("alice")
        assert state is not None and state.email == "alice.smith@example.com"

        # The hourly limit covers verification mails too (3 per hour here).
        done = client(world, service, ["email", "x@example.org", "--no-wait"], ALICE)
        assert done.returncode == 0
        done = client(world, service, ["email", "y@example.org", "--no-wait"], ALICE)
        assert done.returncode != 0 and "Too many codes were mailed" in done.stderr
        bad = client(world, service, ["email", "not-an-address", "--no-wait"], ALICE)
        assert bad.returncode != 0 and "not a valid email address" in bad.stderr
        assert len(srv.wait(3)) == 3  # sent before the service answers: nothing more comes
