"""``twofa-enroll email`` through the real enrollment service (root) and a real SMTP server:
the address is active only after the mailed code is entered, status shows it masked, the
state never holds the code in clear; the verified address then gets emergency codes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
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


def recovery_codes(env: PamEnv) -> list[str]:
    done = env.admin("recovery-codes", "alice", "--json")
    assert done.returncode == 0, done.stderr
    codes: list[str] = json.loads(done.stdout)["recovery_codes"]
    return codes


def test_address_active_only_after_code(world: PamEnv, srv: MailServer) -> None:
    proofs = recovery_codes(world)  # alice is enrolled: each change needs one
    with running_service(world) as service:
        run = interactive_client(world, service, ["email", "alice.smith@example.com"], ALICE)
        run.expect("Current code from your app (or a recovery code)")
        run.send(proofs[0])
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
        done = client(world, service, ["email", "new@example.org", "--no-wait"], ALICE,
                      input=proofs[1] + "\n")
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
        done = client(world, service, ["email", "x@example.org", "--no-wait"], ALICE,
                      input=proofs[2] + "\n")
        assert done.returncode == 0
        done = client(world, service, ["email", "y@example.org", "--no-wait"], ALICE,
                      input=proofs[3] + "\n")
        assert done.returncode != 0 and "Too many codes were mailed" in done.stderr
        state = store(world).load("alice")  # the refusal came first: proofs[3] still works
        assert state is not None and len(state.recovery_codes) == 7
        assert len(state.verify_sends) == 3 and state.sends == []  # a budget of its own
        bad = client(world, service, ["email", "not-an-address", "--no-wait"], ALICE)
        assert bad.returncode != 0 and "not a valid email address" in bad.stderr
        assert "Current code" not in bad.stdout  # refused before a code was asked
        assert len(srv.wait(3)) == 3  # sent before the service answers: nothing more comes


def totp_of(env: PamEnv, at_offset: int = 0) -> str:
    """alice's current TOTP code (her secret read from the root-owned state)."""
    state = store(env).load("alice")
    assert state is not None and state.secret is not None
    from tests.harness.pamenv import oathtool

    return oathtool(state.secret, at=int(time.time()) + at_offset)


def test_replacing_the_address_needs_the_second_factor(world: PamEnv, srv: MailServer) -> None:
    """Issue 11 finding 3: over the socket, ``email NEW`` + ``email-verify CODE`` (the code
    mailed to NEW) replaced a verified address with no TOTP or recovery code, and the old
    address was not told. Now the service refuses before mailing anything."""
    from tests.test_enroll_service import raw_request

    assert world.admin("email", "alice", "old@example.com").returncode == 0
    with running_service(world) as service:
        answer = raw_request(service, b'{"op": "email", "address": "evil@example.org"}\n',
                             uid=ALICE)
        if answer.get("ok"):  # the old code: the attacker gets the mailed code and uses it
            code = code_in(srv, 1)
            raw_request(service, json.dumps({"op": "email-verify", "code": code}).encode()
                        + b"\n", uid=ALICE)
        state = store(world).load("alice")
        assert state is not None and state.email == "old@example.com"
        assert answer["ok"] is False and answer["error"] == "code-needed", answer
        assert "current code" in str(answer["message"])
        # a wrong code is refused the same way a login refuses it (and counted)
        wrong = raw_request(service, b'{"op": "email", "address": "evil@example.org", '
                                     b'"code": "000000"}\n', uid=ALICE)
        assert wrong["ok"] is False and wrong["error"] == "bad-code", wrong
        state = store(world).load("alice")
        assert state is not None and state.failures == 1 and state.email_pending is None
        time.sleep(0.2)
        assert srv.received == []  # nothing was mailed to the new address

        # the owner, with a code from the app (asked at a prompt, never on argv)
        run = interactive_client(world, service, ["email", "new@example.org", "--no-wait"],
                                 ALICE)
        run.expect("Current code from your app (or a recovery code)")
        run.send(totp_of(world))
        rc, text = run.finish()
        assert rc == 0, text
        assert "n***@example.org" in text
        code = code_in(srv, 1)
        assert srv.received[0].rcpt_tos == ["new@example.org"]
        # email-verify asks for the mailed code at a prompt
        done = client(world, service, ["email-verify"], ALICE, input=code + "\n")
        assert done.returncode == 0, done.stderr
        assert "Security email set: n***@example.org." in done.stdout
        assert "Emergency codes by mail are paused until" in done.stdout
        notice = srv.wait(2)[1]
        assert notice.rcpt_tos == ["old@example.com"]
        assert "security email of your account was changed" in notice.body
        assert "n***@example.org" in notice.body and code not in notice.body
        state = store(world).load("alice")
        assert state is not None and state.email == "new@example.org"
        assert state.email_changed_at is not None
        shown = client(world, service, ["status"], ALICE)
        assert "Emergency codes paused:" in shown.stdout and "until " in shown.stdout, shown
    # the login does not offer emergency codes for 24 hours, and says so at the prompt
    res = world.pamtester("svc", "alice", ["secret", "email"])
    assert res.rc != 0
    out = res.stdout + res.stderr
    assert "Emergency codes by mail are paused until" in out, out
    assert "'email'" not in out
    time.sleep(0.2)
    assert len(srv.received) == 2  # no emergency code went out


def test_email_verify_code_on_argv_warns(world: PamEnv, srv: MailServer) -> None:
    with running_service(world) as service:
        done = client(world, service, ["email-verify", "12345678"], ALICE)
        assert done.returncode != 0
        assert "visible to other users" in done.stderr, done.stderr


def test_a_user_without_2fa_names_an_address_without_a_code(world: PamEnv,
                                                            srv: MailServer) -> None:
    carol = world.add_user("carol")
    world.allow_uid(carol.uid)
    with running_service(world) as service:
        done = client(world, service, ["email", "carol@localhost", "--no-wait"], carol.uid)
        assert done.returncode == 0, done.stderr
        assert "Current code" not in done.stdout + done.stderr  # nothing to prove with
        assert srv.wait(1)[0].rcpt_tos == ["carol@localhost"]  # a dotless domain is fine
