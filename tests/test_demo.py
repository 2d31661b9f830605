"""``make demo``: the check mode as CI runs it, and the interactive mode stopped by Ctrl-C
(SIGINT) after a login with what it printed. Both must leave nothing behind: no sandbox
directory, no process from it, no /tmp/pam.* directory of a dead process."""

from __future__ import annotations

import glob
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.pamenv import PAM_TMP_GLOB, REPO_ROOT, oathtool
from tests.harness.sshclient import openssh_login

SANDBOX_RE = re.compile(r"demo: sandbox (\S+)")


def processes_under(root: str) -> list[str]:
    found = []
    prefix = root.rstrip("/") + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{entry}/cwd") + "/"
        except OSError:
            continue
        if cmd.startswith(prefix) or cwd.startswith(prefix):
            found.append(f"{entry}: {cmd}")
    return found


def pam_dirs_of(sandbox: str) -> list[str]:
    """/tmp/pam.* dirs (pam_wrapper's copies of the service dir) left by the demo: their
    service file names paths in its sandbox. Other programs' dirs are not counted."""
    left = []
    for path in glob.glob(PAM_TMP_GLOB):
        for name in ("sshd-twofa", "other"):
            try:
                if sandbox in Path(path, name).read_text(errors="replace"):
                    left.append(path)
                    break
            except OSError:
                continue
    return left


def assert_nothing_left(sandbox: str) -> None:
    assert not os.path.exists(sandbox)
    assert processes_under(sandbox) == []
    assert pam_dirs_of(sandbox) == []


def test_make_demo_check() -> None:
    res = subprocess.run(["make", "--no-print-directory", "demo", "DEMO_CHECK=1",
                          f"PYTHON={sys.executable}"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demo check: OK" in res.stdout
    assert "output 'logged-in-as-demo'" in res.stdout
    assert "'Password:', 'Verification code:'" in res.stdout
    [sandbox] = SANDBOX_RE.findall(res.stdout)
    assert f"demo: removed {sandbox}" in res.stdout
    assert_nothing_left(sandbox)


class Printed:
    """What the interactive demo printed, standing in for the harness's SshServer."""

    host = "127.0.0.1"

    def __init__(self, text: str, workdir: Path) -> None:
        self.port = int(re.findall(r"ssh -p (\d+) ", text)[0])
        self.password = re.findall(r"Password:\s+(\S+)", text)[0]
        self.secret = re.findall(r"oathtool --totp -b ([A-Z2-7]+)", text)[0]
        self.dir = workdir / "server"
        self.dir.mkdir(parents=True)

    def drain_log(self) -> list[str]:
        return []

    def sshd_log(self) -> str:
        return ""


def test_interactive_demo_login_then_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "tools/demo.py"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + 60
    try:
        while b"Press Ctrl-C" not in out:
            assert time.monotonic() < deadline and proc.poll() is None, out.decode()
            if select.select([proc.stdout], [], [], 0.5)[0]:
                out += os.read(proc.stdout.fileno(), 65536)
        text = out.decode()
        printed = Printed(text, tmp_path)
        assert "█" in text or "##" in text  # the QR code
        res = openssh_login(printed, "demo",  # type: ignore[arg-type]
                            [("Trust this device", "n"), ("Password:", printed.password),
                             ("Verification code:", oathtool(printed.secret))],
                            command="echo $USER")
        assert res.ok and res.output.strip() == "demo", res
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out + rest).decode()
    [sandbox] = SANDBOX_RE.findall(text)
    assert f"demo: removed {sandbox}" in rest.decode()
    assert_nothing_left(sandbox)


def test_demo_check_runs_doctor_on_the_sandbox_and_it_finds_nothing() -> None:
    """Issue 15: the demo's sandbox is set up as the README says (guard, requisite
    password step, keyboard-interactive only, an enrollment service), and
    ``twofa-admin doctor`` pointed at it exits 0; only the missing clock check is info."""
    res = subprocess.run([sys.executable, "tools/demo.py", "--check"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "demo check: OK" in res.stdout
    doctor = [line.removeprefix("demo check: doctor: ") for line in res.stdout.splitlines()
              if line.startswith("demo check: doctor: ")]
    assert doctor[-1].startswith("doctor: nothing wrong found"), doctor
    infos = {line.split("[")[1].split("]")[0] for line in doctor if line.startswith("INFO:")}
    assert infos <= {"clock", "sshd-t"}, doctor  # no clock check in a sandbox; sshd -T may not run
    assert not [line for line in doctor if line.startswith(("CRITICAL", "ERROR", "WARNING"))]
    assert "demo check: doctor exit 0" in res.stdout
    [sandbox] = SANDBOX_RE.findall(res.stdout)
    assert_nothing_left(sandbox)
