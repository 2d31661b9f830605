"""Processes an sshd leaves behind, found through /proc (for :mod:`tests.harness.sshd`).

A connection child outliving its listener is reparented to pid 1, which in containers
may never reap it, and a zombie would keep its /tmp/pam.* "in use": ``SshServer.stop``
collects the listener's ``descendants`` and ``kill_wait``s them, ``SshServer.reap``
kills the ``leftover_pids`` of its $T.  Also ``free_port`` (the kernel's pick, released:
servers started on it retry on a new one when it was taken meanwhile) and ``holds_port``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A TCP (or ``kind``) port free right now on ``host`` (the kernel's pick)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def holds_port(pid: int, port: int, proto: str = "tcp", host: str = "127.0.0.1") -> bool:
    """Whether process ``pid`` has a socket bound to ``host:port`` (IPv4, from /proc):
    a server started on a port picked earlier may have lost it to another process (of
    another test run) and a probe of the port would then reach that one."""
    want = "{:08X}:{:04X}".format(int.from_bytes(socket.inet_aton(host), "little"), port)
    inodes = set()
    try:
        lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[1] == want:
            inodes.add(f"socket:[{fields[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
    return False


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (by parent pid, from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[-1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def leftover_pids(root_dir: Path, pam_dir: Path) -> list[int]:
    """Pids of processes still running from ``root_dir``: argv[0] or cwd under it, or an
    environment naming ``pam_dir`` as PAM_WRAPPER_SERVICE_DIR (this process excepted)."""
    root = os.fspath(root_dir) + "/"
    marker = f"PAM_WRAPPER_SERVICE_DIR={pam_dir}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd") + "/"
            environ = Path(f"/proc/{entry}/environ").read_bytes() + b"\0"
        except OSError:
            continue
        if cmdline.startswith(root) or cwd.startswith(root) or marker in environ:
            found.append(int(entry))
    return found


def kill_wait(pids: set[int], timeout: float = 5.0) -> None:
    """SIGKILL the ``pids`` still running; wait (bounded) until they are gone."""
    live = [p for p in pids if running(p)]
    for pid in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [p for p in live if running(p)]
        time.sleep(0.01)
