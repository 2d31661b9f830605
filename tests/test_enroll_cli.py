"""Issue 12 items 6 and 2 (user side), through the real ``twofa-enroll`` entry point as
an unprivileged uid against the real service: Ctrl-D (EOF on stdin) at each prompt is
"Aborted." and exit 1, not an internal error (70); a missing service says who can start
it and how."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.enroll_support import DEBIAN_PYTHON, client, running_service
from tests.harness.pamenv import REPO_ROOT, PamEnv
from tests.harness.procs import setpriv_cmd
from tests.harness.smtpd import CertAuthority, MailServer
from tests.test_enroll_service import enroll_via_client

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture
def world(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("alice", groups=["wheel"])  # required by the policy
    pam_env.add_user("bob")  # not required
    pam_env.add_user("carol")
    pam_env.service("svc")
    pam_env.write_policy("mandatory:\n  scope: admins\n")
    pam_env.allow_uid(4242)
    return pam_env


def aborted(done: subprocess.CompletedProcess[str], prompt: str) -> None:
    text = done.stdout + done.stderr
    assert prompt in text, text
    assert done.returncode == 1, (done.returncode, text)
    assert done.stderr.rstrip().endswith("Aborted."), done.stderr
    assert "internal error" not in text


def test_eof_at_every_prompt_is_aborted(world: PamEnv) -> None:
    with running_service(world) as service:
        enroll_via_client(world, service, "bob")
        bob, alice, carol = (world.users[n].uid for n in ("bob", "alice", "carol"))
        cases = [
            ([], bob, "Current code from your app"),  # re-enroll asks for a code first
            (["recovery-codes"], bob, "Current code from your app"),
            (["disable"], bob, "Current code from your app"),
            (["--if-needed"], alice, "Set it up now?"),
            (["--qr", "none"], carol, "Enter the code from your app to finish enrollment"),
        ]
        for args, uid, prompt in cases:
            aborted(client(world, service, args, uid, input=""), prompt)


def test_eof_at_the_email_prompt_is_aborted(world: PamEnv, tmp_path: Path) -> None:
    """The mail is really sent (aiosmtpd); EOF at the next prompt, whichever it is."""
    (tmp_path / "ca").mkdir()
    ca = CertAuthority(tmp_path / "ca")
    with MailServer(ca.server_context(), "starttls", users={"bob": "hunter2"}) as srv:
        password = world.root / "smtp-password"
        password.write_text("hunter2\n")
        password.chmod(0o600)
        world.write_policy(
            "mandatory:\n  scope: admins\n"
            f"smtp: {{host: localhost, port: {srv.port}, username: bob, "
            f"password_file: {password}, ca_file: {ca.ca_file}, timeout_seconds: 2}}\n")
        world.policy.chmod(0o644)
        with running_service(world) as service:
            done = client(world, service, ["email", "carol@example.com"],
                          world.users["carol"].uid, input="")
    aborted(done, "Enter the code")


def test_missing_service_says_what_to_do(world: PamEnv, tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))  # a socket file nobody listens on (a stopped service)
    sock.close()
    stale.chmod(0o666)  # as the service makes it
    for path in (tmp_path / "absent.sock", stale):
        cmd, env = setpriv_cmd([DEBIAN_PYTHON, "-m", "pam_twofa.cli.enroll", "--socket",
                                str(path), "status"], world.wrapper_env(pam=False), 4242)
        done = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 1, done
        assert done.stderr == (
            f"twofa-enroll: error: the enrollment service is not running (nothing listens "
            f"on {path}).\nAsk your administrator to start it: 'systemctl start "
            "pam-twofa-enroll.socket',\nor, on a host without systemd, run "
            "'twofa-enroll-service' as root.\n"), done.stderr
    # from the profile script (--if-needed) it stays silent
    cmd, env = setpriv_cmd([DEBIAN_PYTHON, "-m", "pam_twofa.cli.enroll", "--socket",
                            str(tmp_path / "absent.sock"), "--if-needed"],
                           world.wrapper_env(pam=False), 4242)
    quiet = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                           timeout=60, check=False)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
