"""``make demo``: a sandboxed sshd on 127.0.0.1 with a demo user already enrolled.

Everything lives in one temporary directory (nss_wrapper passwd, pam_wrapper service
file, policy, state, host key, sshd's log), sshd runs as uid 65534 through the test
harness (tests/harness/sshd.py), and all of it is removed on exit: nothing under /etc
changes, no account is created, nothing is left running.

    make demo                 # prints the ssh command, password, QR code; Ctrl-C stops
    make demo DEMO_CHECK=1    # logs in once with ssh + an oathtool code, then runs
                              # 'twofa-admin doctor' on the sandbox; exit 0 = both OK

The sandbox is set up the way the README says a host should be (guard line, a
``requisite`` password step, sshd's keyboard-interactive only, an enrollment service),
so ``twofa-admin doctor`` pointed at it (``doctor_args``) finds nothing wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness.pamenv import GUARD_LINE, GUARD_SO, REPO_ROOT, PamEnv, oathtool  # noqa: E402
from tests.harness.procs import setpriv_cmd  # noqa: E402
from tests.harness.sshclient import openssh_login  # noqa: E402
from tests.harness.sshd import SshServer  # noqa: E402

USER = "demo"
POLICY = """\
# the demo's policy: everyone must use 2FA; trusted devices on
mandatory: {scope: all}
trusted_devices: {enabled: true, days: 1}
lockout: {max_failures: 5, lock_seconds: 60}
"""


def stack(server: SshServer) -> None:
    """The service file as a host's should be: the password step ``requisite`` (a wrong
    password never reaches the code), then the guard line, then the module."""
    password = server.password_line().replace("auth required ", "auth requisite ", 1)
    server.stack(password, GUARD_LINE, server.module_line(), password=False)


def enroll_service(server: SshServer) -> tuple[subprocess.Popen[bytes], str]:
    """twofa-enroll-service on ``$T/run/enroll.sock``, as the uid that owns the state."""
    run = server.env.root / "run"
    run.mkdir(exist_ok=True)
    os.chown(run, server.uid, server.uid)
    sock = run / "enroll.sock"
    env = server.env.wrapper_env(pam=False)
    cmd = ["/usr/bin/python3", "-m", "pam_twofa.cli.enroll_service", "--socket", str(sock),
           "--state-dir", str(server.env.state_dir), "--policy", str(server.env.policy),
           "--log-socket", str(server.log.path)]
    cmd, env = setpriv_cmd(cmd, env, server.uid)
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            raise RuntimeError(f"twofa-enroll-service did not start: {err.decode()}")
        time.sleep(0.05)
    return proc, str(sock)


def doctor_args(server: SshServer, enroll_socket: str) -> list[str]:
    """``twofa-admin`` arguments that point ``doctor`` at this sandbox."""
    return ["--log-socket", str(server.log.path), "doctor",
            "--pam-dir", str(server.env.pam_dir), "--sshd-config", str(server.config),
            "--ssh-service", server.service, "--enroll-socket", enroll_socket]


def doctor(server: SshServer, enroll_socket: str) -> bool:
    res = server.admin(*doctor_args(server, enroll_socket))
    for line in res.stdout.splitlines():
        print(f"demo check: doctor: {line}")
    print(f"demo check: doctor exit {res.returncode}{': ' + res.stderr if res.stderr else ''}",
          flush=True)
    return res.returncode == 0


def show(server: SshServer, password: str, secret: str, uri: str) -> None:
    from pam_twofa.cli.show import show_secret

    ssh = (f"ssh -p {server.port} -o StrictHostKeyChecking=no "
           f"-o UserKnownHostsFile=/dev/null -o PubkeyAuthentication=no {USER}@{server.host}")
    print("\npam-twofa demo: a sandboxed sshd is listening on "
          f"{server.host}:{server.port} (runs as uid {server.uid}).\n")
    print("Add this account to an authenticator app (scan, or type the secret):\n")
    show_secret(USER, secret, uri, qr_mode="auto")
    print("\nLog in from another terminal on this machine:\n")
    print(f"    {ssh}")
    print(f"\n    Password:           {password}")
    print(f"    Verification code:  from the app, or: oathtool --totp -b {secret}")
    print("\nAnswer 'y' to \"Trust this device\" and the next login from it skips the code.")
    print("Press Ctrl-C to stop; everything is removed.\n", flush=True)


def check(server: SshServer, password: str, secret: str) -> bool:
    """One real login with the OpenSSH client and a code from oathtool."""
    code = oathtool(secret)
    res = openssh_login(server, USER, [("Trust this device", "n"), ("Password:", password),
                                       ("Verification code:", code)],
                        command="echo logged-in-as-$USER")
    ok = res.ok and res.output.strip() == f"logged-in-as-{USER}"
    prompts = [p.rsplit(") ", 1)[-1].strip() for p in res.prompts]
    print(f"demo check: ssh {USER}@{server.host} -p {server.port}: prompts {prompts}")
    print(f"demo check: output {res.output.strip()!r}, {res.seconds:.2f} s")
    print(f"demo check: {'OK' if ok else 'FAILED'}", flush=True)
    if not ok:
        print(res, file=sys.stderr)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="log in once and exit")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("make demo: run as root (sshd drops to uid 65534 itself)", file=sys.stderr)
        return 2
    if not GUARD_SO.exists():
        print(f"make demo: {GUARD_SO} is missing: run 'make guard'", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="pam-twofa-demo-"))
    print(f"demo: sandbox {root}", flush=True)
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop cleanly on TERM too
    signal.signal(signal.SIGINT, interrupt)  # even when started with SIGINT ignored
    env = PamEnv(root)
    server = None
    service = None
    try:
        server = SshServer(env)
        stack(server)
        password = "demo-" + secrets.token_hex(4)
        server.add_user(USER, password=password)
        server.write_policy(POLICY)
        res = server.admin("enroll", USER, "--json")
        if res.returncode != 0:
            print(f"demo: twofa-admin enroll failed: {res.stderr}", file=sys.stderr)
            return 1
        enrolled = json.loads(res.stdout)
        service, enroll_socket = enroll_service(server)
        server.start()
        if args.check:
            logged_in = check(server, password, enrolled["secret"])
            return 0 if doctor(server, enroll_socket) and logged_in else 1
        show(server, password, enrolled["secret"], enrolled["uri"])
        while server.running():
            time.sleep(0.5)
        print("demo: sshd stopped unexpectedly:\n" + server.sshd_log()[-2000:],
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
        return 0
    finally:
        if service is not None:
            service.terminate()
            try:
                service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        if server is not None:
            server.close()
        env.close()
        shutil.rmtree(root, ignore_errors=True)
        print(f"demo: removed {root}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
