"""A host tree for ``twofa-admin doctor --root``: Debian's PAM files (tests/fixtures/pam.d,
copies of Debian 12's), this machine's /etc/ssh/sshd_config, a policy, a state dir, a
syslog socket, an enrollment socket and a fresh clock check; set up right, so that each
test breaks one thing and sees doctor name it (and fixes it and sees it go)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa import clockstatus
from tests.harness.pamenv import REPO_ROOT
from tests.harness.procs import LogSocket

PAM_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "pam.d"
SYSTEM_SSHD_CONFIG = Path("/etc/ssh/sshd_config")
GUARD = "auth [success=1 ignore=ignore default=die] pam_twofa_guard.so"
MODULE = "auth required pam_python.so pam_twofa.py"
GOOD_SSHD = ("UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n"
             "AuthenticationMethods keyboard-interactive\n")


class Host:
    """One host tree under ``root``; ``doctor()`` runs the CLI on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pam = root / "etc" / "pam.d"
        self.ssh = root / "etc" / "ssh"
        self.policy = root / "etc" / "pam-twofa" / "policy.yaml"
        self.state = root / "var" / "lib" / "pam-twofa"
        shutil.copytree(PAM_FIXTURES, self.pam)
        (self.ssh / "sshd_config.d").mkdir(parents=True)
        shutil.copy(SYSTEM_SSHD_CONFIG, self.ssh / "sshd_config")
        self.dropin = self.ssh / "sshd_config.d" / "pam-twofa.conf"
        self.dropin.write_text(GOOD_SSHD)
        self.enable("sshd")
        self.policy.parent.mkdir(parents=True)
        self.policy.write_text("mandatory: {scope: admins}\n")
        self.policy.chmod(0o644)
        (self.state / "users").mkdir(mode=0o700, parents=True)
        self.state.chmod(0o700)
        (self.state / "users" / "alice.json").write_text("{}\n")
        (self.state / "users" / "alice.json").chmod(0o600)
        self.clock(time.time())
        (root / "dev").mkdir()
        self.log = LogSocket(root / "dev" / "log")
        (root / "run" / "pam-twofa").mkdir(parents=True)
        self.enroll = listening(root / "run" / "pam-twofa" / "enroll.sock")

    def close(self) -> None:
        self.log.close()
        self.enroll.close()

    def enable(self, service: str, lines: tuple[str, ...] = (GUARD, MODULE),
               after: str = "@include common-auth") -> None:
        """The guard and module lines after the service's ``after`` line."""
        path = self.pam / service
        text = path.read_text()
        assert after in text, (service, after)
        path.write_text(text.replace(after, after + "\n" + "\n".join(lines), 1))

    def line_of(self, path: Path, text: str) -> int:
        """The 1-based number of the first line of ``path`` that is ``text`` (stripped)."""
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip() == text:
                return n
        raise AssertionError(f"{text!r} not in {path}")

    def clock(self, checked_at: float, verdict: str = clockstatus.IN_SYNC,
              offset: float = 0.01) -> None:
        clockstatus.write(str(self.state / "clock.json"), {
            "checked_at": checked_at, "verdict": verdict, "max_offset": 10.0,
            "offset": offset, "server": "ntp.example", "sync": "on"})

    def doctor(self, *args: str,
               admin: tuple[str, ...] = ()) -> tuple[int, list[dict[str, object]]]:
        done = run_admin(*admin, "doctor", "--root", str(self.root), "--json", *args)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert result["ok"] == (done.returncode == 0)
        return done.returncode, result["findings"]


def run_admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pam_twofa.cli.admin", *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          check=False)


def listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(os.fspath(path))
    sock.listen(8)
    return sock


def problems(findings: list[dict[str, object]]) -> list[dict[str, object]]:
    return [f for f in findings if f["severity"] != "info"]


def named(findings: list[dict[str, object]], check: str) -> list[dict[str, object]]:
    return [f for f in findings if f["check"] == check]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path / "root")
    try:
        yield h
    finally:
        h.close()


def only(host: Host, check: str, severity: str, *args: str) -> dict[str, object]:
    """Doctor exits 1 and its only problem is ``check`` with ``severity``; returns it."""
    rc, found = host.doctor(*args)
    bad = problems(found)
    assert [(f["check"], f["severity"]) for f in bad] == [(check, severity)], bad
    assert rc == 1
    return bad[0]


def clean(host: Host, *args: str) -> None:
    rc, found = host.doctor(*args)
    assert problems(found) == [] and rc == 0, found
