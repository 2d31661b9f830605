"""A hermetic OpenSSH sshd on 127.0.0.1 for end-to-end tests (and ``make demo``).

Built on :class:`tests.harness.pamenv.PamEnv` (nss_wrapper passwd/group, pam_wrapper
service dir, pam_matrix passwords); nothing on the host changes::

    env = PamEnv(tmp_path)
    server = SshServer(env)                    # run as uid 65534, service "sshd-twofa"
    server.add_user("alice", groups=["wheel"]) # mapped onto uid 65534, password "secret"
    server.write_policy("mandatory: {scope: all}\\n")
    secret = server.enroll("alice")            # twofa-admin enroll, as the server's uid
    server.start()                             # picks a free port, waits until it listens
    res = openssh_login(server, "alice", [("Password", "secret"), ("code", code)])
    server.stop(); env.close()

How (see shared/recipes/testing-pam-and-ssh.md):
- sshd is started through a symlink ``$T/sshd/bin/sshd-twofa``: PAM's service name is
  basename(argv[0]), so it reads ``$T/pam.d/sshd-twofa`` (OpenSSH 9.2 has no option).
- It runs unprivileged (``setpriv`` to ``uid``, 65534 by default) with pam_wrapper and
  nss_wrapper preloaded; a non-root sshd skips privsep and can only log in its own uid,
  so every test user is mapped onto that uid in $T/passwd (``add_user``). The module
  runs as that uid too: the state dir and policy belong to it.
- PATH is the system's: pam_python finds its prefix through PATH (a pyenv shim first
  would load the wrong stdlib).
- The module's syslog lines go to ``$T/sshd/log.sock`` (its own, so pamtester runs on
  the same PamEnv keep theirs); clients drain it after each login (``drain_log``).
- ``stop`` waits (bounded) for connection children, then kills by the pid in the
  PidFile; ``close`` also kills any process left from $T, so ``PamEnv.close`` can
  remove the /tmp/pam.* dirs (a zombie reparented to a non-reaping pid 1 would
  otherwise keep one "in use"); the /proc side of that is tests/harness/proctree.py.

State from the test side: ``with server.as_owner(): server.store().update(user)``
(the files belong to the server's uid); ``next_code(user, secret)`` is a code the
module accepts now (oathtool, honouring replay protection).

The PAM stack is ``stack`` (auth lines between pam_set_items and the account line);
by default pam_matrix (password) then the module. ``key_only_stack`` is the module
alone, for ``AuthenticationMethods publickey,keyboard-interactive``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from tests.harness.pamenv import ENTRY_MODULE, PAM_MATRIX, PAM_SET_ITEMS, PamEnv, User, oathtool
from tests.harness.procs import SYSTEM_PATH, LogSocket, setpriv_cmd
from tests.harness.proctree import (
    descendants,
    free_port,
    holds_port,
    kill_wait,
    leftover_pids,
    running,
)
from tests.harness.wait import wait_fresh_step

SSHD = "/usr/sbin/sshd"
NOBODY = 65534
KBD = "keyboard-interactive"
KEY_AND_KBD = "publickey,keyboard-interactive"
START_TIMEOUT = 10.0


def authtok_line(env: PamEnv) -> str:
    """``auth required pam_exec.so expose_authtok CHECKER``: checks the PAM_AUTHTOK set
    by an earlier module against $T/passdb (pam_exec prompts only when none is set)."""
    checker = env.root / "check-authtok"
    if not checker.exists():
        checker.write_text("#!/bin/sh\n# stdin: PAM_AUTHTOK (NUL-terminated)\n"
                           "IFS= read -r pw\n"
                           f'grep -qxF "$PAM_USER:$pw:$PAM_SERVICE" {env.passdb}\n')
        checker.chmod(0o755)
    return f"auth required pam_exec.so expose_authtok quiet {checker}"


class SshServer:
    """One sshd on 127.0.0.1 over a PamEnv; ``start``/``stop`` (or use as a context)."""

    def __init__(
        self,
        env: PamEnv,
        *,
        service: str = "sshd-twofa",
        uid: int = NOBODY,
        auth_methods: str = KBD,
        module_args: str = "",
    ) -> None:
        self.env = env
        self.service = service
        self.uid = uid
        self.auth_methods = auth_methods
        self.host = "127.0.0.1"
        self.port = 0
        self.dir = env.root / "sshd"
        self.keys_dir = self.dir / "keys"
        self.bin = self.dir / "bin" / service
        self.config = self.dir / "sshd_config"
        self.pidfile = self.dir / "sshd.pid"
        self.logfile = self.dir / "sshd.log"
        self.hostkey = self.dir / "hostkey"
        self.proc: subprocess.Popen[bytes] | None = None
        for d in (self.dir, self.keys_dir, self.bin.parent):
            d.mkdir(parents=True, exist_ok=True)
        if not self.bin.exists():
            self.bin.symlink_to(SSHD)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        os.fspath(self.hostkey)], check=True, capture_output=True)
        self.log = LogSocket(self.dir / "log.sock")
        env.allow_uid(uid)
        self._own(self.dir, self.keys_dir, self.hostkey, env.state_dir)
        self.stack(self.module_line(module_args))

    # ------------------------------------------------------------ configuration
    def _own(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            for p in paths:
                os.chown(p, self.uid, self.uid)

    def module_line(self, module_args: str = "", control: str = "required") -> str:
        """The module's auth line, logging to this server's socket."""
        env = self.env
        return (f"auth {control} pam_python.so {ENTRY_MODULE} policy={env.policy} "
                f"state_dir={env.state_dir} log_socket={self.log.path} {module_args}").rstrip()

    def password_line(self, args: str = "") -> str:
        return f"auth required {PAM_MATRIX} passdb={self.env.passdb} {args}".rstrip()

    def stack(self, *auth_lines: str, password: bool = True) -> Path:
        """Write the service file: pam_set_items, [pam_matrix], ``auth_lines``, permits."""
        lines = [f"auth required {PAM_SET_ITEMS}"]
        if password:
            lines.append(self.password_line())
        lines += [*auth_lines, "account required pam_permit.so",
                  "session required pam_permit.so", "password required pam_deny.so"]
        return self.env.service_raw(self.service, lines)

    def authtok_line(self) -> str:
        """A password module that only takes PAM_AUTHTOK from the module before it (like
        ``use_first_pass``; pam_matrix always prompts): pam_exec ``expose_authtok``
        running a checker of $T/passdb. For single-prompt stacks."""
        return authtok_line(self.env)

    def key_only_stack(self, module_args: str = "") -> Path:
        """No password module: for ``publickey,keyboard-interactive`` (key + code)."""
        return self.stack(self.module_line(module_args), password=False)

    def add_user(self, name: str, groups: Sequence[str] = (), password: str = "secret") -> User:
        """A test user mapped onto the server's uid (a non-root sshd serves only it)."""
        return self.env.add_user(name, uid=self.uid, groups=groups, password=password,
                                 share_uid=True)

    def authorize_key(self, user: str, public_key_line: str) -> None:
        path = self.keys_dir / user
        with path.open("a") as f:
            f.write(public_key_line.strip() + "\n")
        path.chmod(0o644)

    def write_policy(self, text: str) -> Path:
        """Write the policy (root-owned 0644: readable by the server's uid)."""
        path = self.env.write_policy(text)
        path.chmod(0o644)
        return path

    def admin(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``twofa-admin ARGS`` as the server's uid (state files belong to it)."""
        return self.env.admin(*args, as_uid=self.uid, input=input)

    def enroll(self, user: str, secret: str | None = None) -> str:
        """Enroll ``user`` through ``twofa-admin enroll --json``; the base32 secret."""
        import json

        extra = ["--secret", secret] if secret else []
        res = self.admin("enroll", user, "--json", *extra)
        if res.returncode != 0:
            raise RuntimeError(f"twofa-admin enroll failed: {res.stderr}")
        return str(json.loads(res.stdout)["secret"])

    @contextlib.contextmanager
    def as_owner(self) -> Iterator[None]:
        """Run a block with the state owner's euid, to use ``FileStore`` in-process."""
        if os.geteuid() != 0 or self.uid == 0:
            yield
            return
        os.setegid(self.uid)
        os.seteuid(self.uid)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    def store(self) -> FileStore:
        """The module's state store; use it inside ``with server.as_owner():``."""
        paths = Paths(policy=os.fspath(self.env.policy), policy_explicit=True,
                      state_dir=os.fspath(self.env.state_dir))
        return FileStore(paths, Clock())

    def next_code(self, user: str, secret: str, digits: int = 6, period: int = 30) -> str:
        """A code the module accepts now (window 1): the oldest step of the window that
        is newer than the user's last accepted one and valid for 5 s more; waits for the
        next step when all three are used (replay protection is real)."""
        with self.as_owner():
            state = self.store().load(user)
        last = state.last_step if state is not None else -1
        while True:
            now = time.time()
            now_step = int(now // period)
            left = (now_step + 1) * period - now  # seconds the current step still lasts
            for step in (now_step - 1, now_step, now_step + 1):
                if step > last and (step >= now_step or left > 5):
                    return oathtool(secret, at=step * period, digits=digits, period=period)
            wait_fresh_step(0, period, after=now_step)

    def write_config(self) -> Path:
        keys = self.keys_dir
        self.config.write_text(
            f"ListenAddress {self.host}\n"
            f"HostKey {self.hostkey}\n"
            f"PidFile {self.pidfile}\n"
            "UsePAM yes\n"
            "KbdInteractiveAuthentication yes\n"
            "PasswordAuthentication no\n"
            "PubkeyAuthentication yes\n"
            f"AuthenticationMethods {self.auth_methods}\n"
            f"AuthorizedKeysFile {keys}/%u\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "PrintLastLog no\n"
            "PermitRootLogin no\n"
            "MaxAuthTries 6\n"
            "MaxStartups 50\n"
            "LogLevel VERBOSE\n"
        )
        return self.config

    # ------------------------------------------------------------ running
    def _env(self) -> dict[str, str]:
        env = self.env.wrapper_env()
        env["PATH"] = SYSTEM_PATH
        return env

    def start(self, attempts: int = 3) -> None:
        """Start on a free port; wait (bounded) until it accepts connections."""
        self.write_config()
        last = ""
        for _ in range(attempts):
            self.port = free_port(self.host)
            with contextlib.suppress(FileNotFoundError):
                self.pidfile.unlink()
            cmd = [os.fspath(self.bin), "-D", "-f", os.fspath(self.config),
                   "-E", os.fspath(self.logfile), "-p", str(self.port)]
            env = self._env()
            if os.geteuid() == 0 and self.uid != 0:
                cmd, env = setpriv_cmd(cmd, env, self.uid)
            self.proc = subprocess.Popen(cmd, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)  # no terminal Ctrl-C
            if self._wait_listening():
                return
            last = self._stop_proc()
        raise RuntimeError(f"sshd did not start: {last}\n{self.sshd_log()}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            # our sshd bound the port (it writes its PidFile after binding; holds_port:
            # a listener there could be another run's that took the port first)
            if self.pidfile.exists() and holds_port(self.proc.pid, self.port):
                try:
                    with socket.create_connection((self.host, self.port), timeout=1):
                        return True
                except OSError:
                    pass
            time.sleep(0.01)
        return False

    def _stop_proc(self) -> str:
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        pid = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
        for target in {pid, proc.pid} - {None}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(target), signal.SIGTERM)  # type: ignore[arg-type]
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        return err.decode(errors="replace") if err else ""

    def stop(self, grace: float = 3.0) -> None:
        """Stop the listener once its connection children are done (bounded wait): a
        child outliving it is reparented to pid 1, which in containers may never reap
        it, and a zombie would keep its /tmp/pam.* "in use"."""
        children: set[int] = set()
        if self.proc is not None:
            deadline = time.monotonic() + grace
            while True:
                now = [p for p in descendants(self.proc.pid) if running(p)]
                children.update(now)
                if not now or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        self._stop_proc()
        self._kill_wait(children)

    def leftovers(self) -> list[int]:
        """Pids of processes still running from $T: argv[0] or cwd under $T, or an
        environment naming $T/pam.d. (Privsep children retitle themselves over argv
        and environ: ``stop`` finds those through the listener's process tree.)"""
        return leftover_pids(self.env.root, self.env.pam_dir)

    def reap(self, timeout: float = 5.0) -> None:
        """Kill what ``leftovers`` finds (connections outliving the listener) and wait
        (bounded) until they are gone, so PamEnv.close sees their /tmp/pam.* as dead."""
        self._kill_wait(set(self.leftovers()), timeout)

    @staticmethod
    def _kill_wait(pids: set[int], timeout: float = 5.0) -> None:
        kill_wait(pids, timeout)

    def close(self) -> None:
        """Stop sshd and every process it left; close the log socket."""
        self.stop()
        self.reap()
        self.log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ observing
    def drain_log(self) -> list[str]:
        """The module's syslog lines since the last drain."""
        return self.log.drain()

    def sshd_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""
