"""Real NTP servers on loopback for the clock-check tests.

``Chronyd``: Debian's chronyd on a free high port, with ``-x`` (it never touches the
system clock), its own config, pid and drift files in a temp dir, in the foreground;
optionally under libfaketime to serve a shifted time. ``Responder``: a tiny NTP
server of our own for replies chronyd never sends (kiss-o'-death, a foreign
originate timestamp) and for a server that never answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from tests.harness.proctree import free_port, holds_port

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
NTP_EPOCH = 2208988800  # 1900-01-01 -> 1970-01-01


def free_udp_port() -> int:
    return free_port(kind=socket.SOCK_DGRAM)


def ntp_time(t: float) -> bytes:
    t += NTP_EPOCH
    return struct.pack("!II", int(t), int((t % 1) * 2**32))


def sntp_offset(port: int, timeout: float = 0.5) -> float | None:
    """A bare SNTP query (not ntplib: the code under test); None if no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        sent = time.time()
        s.sendto(b"\x23" + 39 * b"\0" + ntp_time(sent), ("127.0.0.1", port))
        try:
            data = s.recv(512)
        except OSError:
            return None
    secs, frac = struct.unpack("!II", data[40:48])
    return secs - NTP_EPOCH + frac / 2**32 - (sent + time.time()) / 2


class Chronyd:
    """chronyd -x serving ``local stratum 10`` on 127.0.0.1:PORT; ``shift`` via faketime."""

    def __init__(self, workdir: Path, shift: int = 0, *, at: str | None = None,
                 command_socket: bool = False, attempts: int = 3) -> None:
        """``at``: serve a clock started at this time (libfaketime's "@YYYY-MM-DD HH:MM:SS");
        ``command_socket``: let chronyc talk to it at ``self.command_socket``."""
        workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):  # the port may be taken after free_udp_port()
            if self._start(workdir, shift, at, command_socket):
                return
            self.stop()
        raise RuntimeError(f"chronyd did not serve within 10 s: {self.log.read_text()}")

    def _start(self, workdir: Path, shift: int, at: str | None, command_socket: bool) -> bool:
        self.port = free_udp_port()
        conf = workdir / "chrony.conf"
        self.command_socket = workdir / "cmd" / "chronyd.sock"
        if command_socket:
            self.command_socket.parent.mkdir(mode=0o700, exist_ok=True)
        conf.write_text(
            f"port {self.port}\n"
            "bindaddress 127.0.0.1\n"
            "local stratum 10\n"
            "allow 127.0.0.1\n"
            "cmdport 0\n"
            # no Unix command socket in /run/chrony either, unless asked for one here
            f"bindcmdaddress {self.command_socket if command_socket else '/'}\n"
            f"pidfile {workdir}/chronyd.pid\n"
            f"driftfile {workdir}/drift\n"
        )
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        if shift or at:
            env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME=at or f"{shift:+d}s")
        self.log = workdir / "chronyd.log"
        with open(self.log, "wb") as log:
            # -x: never touch the clock; -d: foreground; -4: IPv4; -u root: keep
            # access to the 0700 temp dir (it would drop to _chrony otherwise).
            self.proc = subprocess.Popen(
                ["chronyd", "-x", "-d", "-4", "-u", "root", "-f", str(conf)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        return self._wait_ready()

    def _wait_ready(self) -> bool:
        """True once this chronyd holds its port and answers there (an answer alone
        could come from another run's server that took the port first)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if (holds_port(self.proc.pid, self.port, "udp")
                    and sntp_offset(self.port, 0.2) is not None):
                return True
            time.sleep(0.02)
        return False

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Responder:
    """An NTP server of our own on loopback: ``mode`` decides each reply.

    ``"silent"``: never answers (a black hole, unlike a closed port); ``"kod"``: a
    kiss-o'-death (stratum 0, RATE); ``"foreign"``: a good-looking reply whose
    originate timestamp is not ours (a stale or spoofed packet); ``"good"``: a
    stratum 2 reply with the true time.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            self.requests += 1
            if self.mode == "silent" or len(data) < 48:
                continue
            now = ntp_time(time.time())
            origin = data[40:48] if self.mode != "foreign" else ntp_time(time.time() - 3600)
            stratum, refid = (0, b"RATE") if self.mode == "kod" else (2, b"\x7f\0\0\1")
            head = struct.pack("!BBbb", (0 << 6) | (4 << 3) | 4, stratum, 6, -20)
            reply = head + b"\0" * 8 + refid + now + origin + now + now
            with contextlib.suppress(OSError):
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def status_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
