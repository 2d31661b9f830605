"""Process and log-socket helpers for the PAM harness (see pamenv.py)."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# pam_python's embedded interpreter finds its prefix through PATH: a pyenv shim first on
# PATH makes it load pyenv's stdlib without Debian's dist-packages.  Never inherit PATH.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SOCKADDR_MAX = 107  # sun_path is 108 bytes with the NUL


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str
    log_lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def __str__(self) -> str:  # shown by pytest when an assert on a Result fails
        logs = "\n".join(self.log_lines)
        return (
            f"rc={self.rc}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}\n--log--\n{logs}"
        )


def oathtool(
    secret_b32: str,
    at: int | None = None,
    digits: int = 6,
    period: int = 30,
    algorithm: str = "SHA1",
) -> str:
    """The code the real oathtool computes (an implementation independent of ours)."""
    cmd = [
        "oathtool",
        f"--totp={algorithm.upper()}",
        "--base32",
        f"--digits={digits}",
        f"--time-step-size={period}s",
    ]
    if at is not None:
        cmd.append(f"--now=@{int(at)}")  # oathtool takes GNU date syntax: @EPOCH
    cmd.append(secret_b32)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def merge_env(base: Mapping[str, str], extra: Mapping[str, str] | None) -> dict[str, str]:
    """``extra`` wins, except LD_PRELOAD, which is appended (e.g. libfaketime)."""
    env = dict(base)
    for key, value in (extra or {}).items():
        if key == "LD_PRELOAD" and env.get(key):
            env[key] = f"{env[key]} {value}"
        else:
            env[key] = value
    return env


REPO_ROOT = Path(__file__).resolve().parents[2]

_PRIVATE_TMP = """
set -e
mount --bind /tmp "$1"                  # the shared /tmp stays reachable in here
mount -t tmpfs -o size=4m,mode=1777 tmpfs /tmp
if [ -n "$2" ]; then                    # the checkout lives under /tmp: put it back
    mkdir -p "/tmp/$2"
    mount --bind "$1/$2" "/tmp/$2"
fi
shift 2
exec "$@"
"""


def private_tmp_cmd(cmd: list[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """``cmd`` in its own mount namespace with an empty /tmp of its own.

    pam_wrapper copies the stack into /tmp/pam.X, one of 62 names (1.1.4 has no other
    place for it), so more than 62 wrapped hosts cannot live at once in one /tmp, and
    hosts starting together collide on a name. The namespace's /tmp is a fresh tmpfs;
    a checkout that itself lives under /tmp (a CI clone may) is bound back in, so the
    module file stays where the service file says. The old /tmp is parked on /mnt,
    inside the namespace only. LD_PRELOAD is for ``cmd`` alone, not unshare/mount.
    """
    env = dict(env)
    preload = env.pop("LD_PRELOAD", "")
    rel = REPO_ROOT.relative_to("/tmp").as_posix() if REPO_ROOT.is_relative_to("/tmp") else ""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _PRIVATE_TMP, "sh",
            "/mnt", rel, "env", f"LD_PRELOAD={preload}", *cmd], env


def setpriv_cmd(
    cmd: list[str], env: Mapping[str, str], uid: int
) -> tuple[list[str], dict[str, str]]:
    """Run ``cmd`` as ``uid`` (gid = uid, no supplementary groups).

    LD_PRELOAD must not reach setpriv itself: a preloaded pam_wrapper creates its
    /tmp/pam.X in setpriv, and exec skips the destructor that would remove it, so each
    call would leak one of its 62 names.  So setpriv runs `env LD_PRELOAD=… cmd`.
    """
    env = dict(env)
    preload = env.pop("LD_PRELOAD", "")
    ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return ["setpriv", *ids, "env", f"LD_PRELOAD={preload}", *cmd], env


class LogSocket:
    """A bound unix datagram socket standing in for /dev/log (mode 0666)."""

    def __init__(self, path: Path) -> None:
        if len(os.fsencode(path)) > _SOCKADDR_MAX:
            raise ValueError(f"socket path too long for AF_UNIX: {path}")
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.sock.setblocking(False)
        path.chmod(0o666)

    def drain(self) -> list[str]:
        """Every datagram queued now, decoded, ``<PRI>`` prefix kept."""
        lines: list[str] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return lines
            lines.append(data.decode("utf-8", errors="replace"))

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def run_logged(
    cmd: list[str],
    env: Mapping[str, str],
    stdin: str | bytes,
    timeout: float,
    cwd: Path,
    log: LogSocket,
) -> Result:
    """Run ``cmd`` and collect what it sends to ``log`` meanwhile.

    ``stdin`` as bytes is sent as it is (e.g. invalid UTF-8); the output is then
    decoded with replacement characters.

    The socket is read *during* the run: its queue holds only net.unix.max_dgram_qlen
    (10 here) datagrams, so a module that logs more would block on send until read.
    On timeout the process is killed and subprocess.TimeoutExpired is raised.
    """
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
    )
    data = stdin if isinstance(stdin, bytes) else stdin.encode()
    out: dict[str, bytes] = {}
    failure: list[BaseException] = []

    def communicate() -> None:
        try:
            out["stdout"], out["stderr"] = proc.communicate(data, timeout=timeout)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=communicate, daemon=True)
    worker.start()
    logs: list[str] = []
    while worker.is_alive():
        ready, _, _ = select.select([log.sock], [], [], 0.02)
        if ready:
            logs.extend(log.drain())
    worker.join()
    logs.extend(log.drain())
    if failure:
        proc.kill()
        proc.wait()
        raise failure[0]
    return Result(proc.returncode, out["stdout"].decode(errors="replace"),
                  out["stderr"].decode(errors="replace"), logs)


def run_many(cmd: list[str], env: Mapping[str, str], stdin: str, n: int, sock: LogSocket,
             cwd: Path, timeout: float = 60) -> tuple[list[int], list[str], list[str]]:
    """``n`` copies of ``cmd`` started at once, each fed ``stdin``: exit codes, the log
    lines ``sock`` received (drained while they run: its queue holds ~10 datagrams),
    and each process's stderr."""
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=dict(env), cwd=cwd, text=True)
             for _ in range(n)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        lines.extend(sock.drain())
        time.sleep(0.01)
    codes = [p.wait(timeout=5) for p in procs]
    lines.extend(sock.drain())
    errors = [p.stderr.read() if p.stderr is not None else "" for p in procs]
    return codes, lines, errors
