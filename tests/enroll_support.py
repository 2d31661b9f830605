"""Helpers for the enrollment tests: the real service as root, clients as other uids,
and a driver for interactive programs (twofa-enroll, pamtester) that answers prompts
from what they printed before (the secret shown decides the code typed)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.harness.pamenv import REPO_ROOT, PamEnv
from tests.harness.procs import merge_env, setpriv_cmd

DEBIAN_PYTHON = "/usr/bin/python3"
LIBSTDBUF = "/usr/libexec/coreutils/libstdbuf.so"
SECRET_RE = re.compile(r"Secret(?: key)?:\s+((?:[A-Z2-7]{4} ?)+)")
URI_RE = re.compile(r"URI:\s+(otpauth://\S+)")


def service_world(pam_env: PamEnv, client_uid: int) -> PamEnv:
    """alice (wheel), bob, service "svc", admins must enroll; ``client_uid`` (and the
    uids after it) can reach the service's socket through the run dir."""
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.add_user("bob")
    pam_env.service("svc")
    pam_env.write_policy("mandatory:\n  scope: admins\n")
    pam_env.allow_uid(client_uid)  # o+x on $T's ancestors
    return pam_env


def shown_secret(text: str) -> str:
    found = SECRET_RE.findall(text)
    assert found, text
    return str(found[-1]).replace(" ", "")


class Interactive:
    """A process whose prompts are answered one at a time, after reading its output."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> None:
        self.proc = subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.data = b""
        self._seen = 0

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def _read(self, deadline: float) -> bool:
        assert self.proc.stdout is not None
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.proc.stdout], [], [], left)
        if not ready:
            return False
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            return False
        self.data += chunk
        return True

    def expect(self, text: str, timeout: float = 30) -> str:
        """Wait for ``text`` after the last match; return everything printed so far."""
        deadline = time.monotonic() + timeout
        needle = text.encode()
        while needle not in self.data[self._seen :]:
            if not self._read(deadline):
                self.kill()
                raise AssertionError(f"no {text!r} within {timeout} s; output:\n{self.text}")
        self._seen = self.data.index(needle, self._seen) + len(needle)
        return self.text

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            pass
        try:
            rc = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.text}") from None
        return rc, self.text

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()


class Service:
    """``twofa-enroll-service`` as root over the PamEnv's state, policy and NSS files."""

    def __init__(self, env: PamEnv) -> None:
        self.env = env
        # Outside pytest's 0700 tmp tree: other test sessions restore its modes at will.
        self.dir = Path(tempfile.mkdtemp(prefix="twofa-enroll-"))
        self.dir.chmod(0o755)
        self.socket = self.dir / "enroll.sock"
        full_env = env.wrapper_env(pam=False)
        full_env["PATH"] = os.environ.get("PATH", full_env["PATH"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pam_twofa.cli.enroll_service", "--socket", str(self.socket),
             "--state-dir", str(env.state_dir), "--policy", str(env.policy),
             "--log-socket", str(env.log_socket)],
            cwd=REPO_ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                out, err = self.proc.communicate()
                raise AssertionError(f"the service did not start: {out}{err}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def user_dir(self, uid: int) -> Path:
        """A directory ``uid`` owns and can reach (for the PNG)."""
        path = self.dir / str(uid)
        path.mkdir(mode=0o700, exist_ok=True)
        os.chown(path, uid, uid)
        return path


@contextlib.contextmanager
def running_service(env: PamEnv) -> Iterator[Service]:
    service = Service(env)
    try:
        yield service
    finally:
        service.close()


def client_cmd(env: PamEnv, service: Service, args: Sequence[str], uid: int | None,
               ) -> tuple[list[str], dict[str, str]]:
    """``twofa-enroll --socket S ARGS`` (Debian's python3) as ``uid`` (None: root)."""
    cmd = [DEBIAN_PYTHON, "-m", "pam_twofa.cli.enroll", "--socket", str(service.socket),
           *args]
    base = env.wrapper_env(pam=False)
    if uid is None:
        return cmd, base
    env.allow_uid(uid)
    return setpriv_cmd(cmd, base, uid)


def client(env: PamEnv, service: Service, args: Sequence[str], uid: int | None,
           input: str = "") -> subprocess.CompletedProcess[str]:
    cmd, full_env = client_cmd(env, service, args, uid)
    return subprocess.run(cmd, input=input, capture_output=True, text=True, env=full_env,
                          cwd=REPO_ROOT, timeout=60, check=False)


def interactive_client(env: PamEnv, service: Service, args: Sequence[str],
                       uid: int | None) -> Interactive:
    cmd, full_env = client_cmd(env, service, args, uid)
    return Interactive(cmd, full_env)


def interactive_pamtester(env: PamEnv, service: str, user: str) -> Interactive:
    """pamtester with unbuffered stdout (libstdbuf), so a prompt follows its messages."""
    full_env = merge_env(env.wrapper_env(), {"LD_PRELOAD": LIBSTDBUF, "_STDBUF_O": "0"})
    return Interactive(["pamtester", "-v", service, user, "authenticate"], full_env,
                       cwd=env.root)


def seed_for_reenrollment(state_dir: Path, user: str) -> None:
    """Give ``user`` what a re-enrollment must revoke (a trusted device, a pending
    emergency code, an address waiting for verification) and keep (a verified email)."""
    from pam_twofa import emergency
    from pam_twofa.clock import Clock
    from pam_twofa.filestore import FileStore
    from pam_twofa.paths import Paths

    now = time.time()
    store = FileStore(Paths(state_dir=str(state_dir)), Clock())
    with store.update(user) as st:
        assert st.enrolled
        st.devices = [{"id": "d1", "token_hash": "00" * 32, "created": now,
                       "expires": now + 86400, "label": "laptop"}]
        st.emergency = emergency.seal("12345678", now, 600)
        st.email_pending = emergency.seal("87654321", now, 600, address="new@example.org",
                                          proven=True)
        st.email = "keep@example.com"


def revoked_and_kept(state_dir: Path, user: str) -> None:
    """Assert what ``seed_for_reenrollment`` put in went, except the verified email."""
    data = json.loads((state_dir / "users" / f"{user}.json").read_text())
    assert data["enrolled"] is True and data["devices"] == []
    assert data["emergency"] is None and data["email_pending"] is None
    assert data["email"] == "keep@example.com"


REVOKED_TEXT = ("1 trusted device revoked", "A pending emergency code was revoked.",
                "The security email k***@example.com was kept")
