"""The enrollment service's systemd units (systemd-analyze), socket activation through
systemd's own LISTEN_FDS protocol (systemd-socket-activate), and the profile.d script
with ``twofa-enroll --if-needed``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.enroll_support import (
    interactive_client,
    running_service,
    shown_secret,
)
from tests.harness.pamenv import REPO_ROOT, PamEnv, oathtool
from tests.harness.wait import wait_fresh_step

UNITS = REPO_ROOT / "systemd"
SOCKET = "pam-twofa-enroll.socket"
SERVICE = "pam-twofa-enroll.service"
PROFILE = REPO_ROOT / "enroll" / "pam-twofa-enroll.sh"


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(directory / SOCKET),
                           str(directory / SERVICE)], capture_output=True, text=True,
                          timeout=60, check=False)


def _copy_units(tmp_path: Path, edit: str = "") -> Path:
    """The units with ExecStart pointing at the installed console script (verify wants
    the binary to exist; the Debian package puts it at /usr/bin)."""
    script = Path(sys.executable).parent / "twofa-enroll-service"
    assert script.is_file(), "pip install -e . (make deps) installs the console script"
    service = (UNITS / SERVICE).read_text()
    assert "ExecStart=/usr/bin/twofa-enroll-service --idle-exit 300\n" in service
    (tmp_path / SERVICE).write_text(service.replace("/usr/bin/twofa-enroll-service",
                                                    str(script)) + edit)
    shutil.copy(UNITS / SOCKET, tmp_path / SOCKET)
    return tmp_path


def test_units_verify_and_are_hardened(tmp_path: Path) -> None:
    done = _verify(_copy_units(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""
    service = (UNITS / SERVICE).read_text()
    for needed in ("ProtectSystem=strict\n", "ReadWritePaths=/var/lib/pam-twofa\n",
                   "NoNewPrivileges=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                   "ProtectHome=yes", "CapabilityBoundingSet=\n", "UMask=0077",
                   "SystemCallFilter=@system-service", "Requires=pam-twofa-enroll.socket"):
        assert needed in service, needed
    socket_unit = (UNITS / SOCKET).read_text()
    for needed in ("ListenStream=/run/pam-twofa/enroll.sock\n", "SocketMode=0666\n",
                   "Accept=no\n"):
        assert needed in socket_unit, needed
    assert f"DEFAULT_SOCKET = \"{'/run/pam-twofa/enroll.sock'}\"" in (
        REPO_ROOT / "pam_twofa" / "paths.py").read_text()
    security = subprocess.run(["systemd-analyze", "security", "--offline=true",
                               str(tmp_path / SERVICE)], capture_output=True, text=True,
                              timeout=60, check=False)
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert level is not None, security.stdout + security.stderr
    print(f"systemd-analyze security: exposure {level.group(1)}")
    assert float(level.group(1)) <= 2.5  # "OK" band; measured 1.8


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    done = _verify(_copy_units(tmp_path, edit="ProtectSytem=strict\n"))
    assert "Unknown key" in done.stdout + done.stderr


def test_socket_activation_with_listen_fds(pam_env: PamEnv) -> None:
    pam_env.add_user("alice")
    sockdir = Path(tempfile.mkdtemp(prefix="twofa-sa-"))
    path = sockdir / "enroll.sock"
    env = pam_env.wrapper_env(pam=False)
    env["PATH"] = os.environ.get("PATH", env["PATH"])
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", str(path),
         *(f"--setenv={name}" for name in env),  # it passes on only what it is told to
         sys.executable, "-m",
         "pam_twofa.cli.enroll_service", "--state-dir", str(pam_env.state_dir), "--policy",
         str(pam_env.policy), "--log-socket", str(pam_env.log_socket), "--socket",
         str(sockdir / "unused.sock"), "--idle-exit", "1"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.chmod(path, 0o666)
        os.chmod(sockdir, 0o755)
        ask = ("import json,sys\nfrom pam_twofa.service import protocol\n"
               "print(json.dumps(protocol.call(sys.argv[1], 'status')))\n")
        done = subprocess.run(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups",
                               "/usr/bin/python3", "-c", ask, str(path)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["ok"] is True and answer["user"] == "alice", answer
        # the service used the passed socket, never bound its own
        assert not (sockdir / "unused.sock").exists()
        # --idle-exit: with nothing to do it exits by itself (systemd starts it again)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(sockdir, ignore_errors=True)


def _fake_enroll(tmp_path: Path) -> tuple[Path, Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "calls"
    fake = bindir / "twofa-enroll"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {record}\n')
    fake.chmod(0o755)
    return bindir, record


def test_profile_script_runs_once_in_interactive_shells(tmp_path: Path) -> None:
    bindir, record = _fake_enroll(tmp_path)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "dumb"}
    for shell in ("sh", "bash"):
        record.unlink(missing_ok=True)
        # a pty (script) makes stdin/stdout terminals; -i makes the shell interactive
        inner = f"{shell} -i -c '. {PROFILE}; . {PROFILE}; {shell} -i -c \". {PROFILE}\"'"
        done = subprocess.run(["script", "-q", "-e", "-c", inner, "/dev/null"], env=env,
                              capture_output=True, text=True, timeout=30, check=False,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
        assert record.read_text() == "--if-needed\n", shell  # once, nested shells too
    # not interactive, or not on a terminal: nothing runs
    record.unlink(missing_ok=True)
    subprocess.run(["sh", "-c", f". {PROFILE}"], env=env, check=True, timeout=30)
    subprocess.run(["sh", "-i", "-c", f". {PROFILE}"], env=env, check=True, timeout=30,
                   stdin=subprocess.DEVNULL, capture_output=True)
    assert not record.exists()
    done = subprocess.run(["sh", "-n", str(PROFILE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_if_needed_enrolls_only_users_who_must(pam_env: PamEnv) -> None:
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.add_user("bob")
    pam_env.allow_uid(4242)
    pam_env.write_policy("mandatory:\n  scope: admins\n")
    with running_service(pam_env) as service:
        # bob is not required: silent, nothing asked
        proc = interactive_client(pam_env, service, ["--if-needed"], pam_env.users["bob"].uid)
        rc, out = proc.finish()
        assert (rc, out) == (0, "")
        # alice is: asked, then enrolled
        wait_fresh_step()
        proc = interactive_client(pam_env, service, ["--if-needed", "--qr", "ascii"],
                                  pam_env.users["alice"].uid)
        proc.expect("Set it up now?")
        proc.send("y")
        text = proc.expect("finish enrollment")
        assert "##" in text and "█" not in text  # the ASCII fallback was asked for
        proc.send(oathtool(shown_secret(text)))
        rc, out = proc.finish()
        assert rc == 0 and "Two-factor authentication is on." in out, out
        # enrolled now: silent again
        proc = interactive_client(pam_env, service, ["--if-needed"], pam_env.users["alice"].uid)
        rc, out = proc.finish()
        assert (rc, out) == (0, "")
    # no service at all: silent for the profile script, an error otherwise
    assert not service.socket.exists()
    proc = interactive_client(pam_env, service, ["--if-needed"], pam_env.users["alice"].uid)
    assert proc.finish() == (0, "")
    proc = interactive_client(pam_env, service, ["status"], pam_env.users["alice"].uid)
    rc, out = proc.finish()
    assert rc == 1 and "the enrollment service is not running" in out
