"""A throwaway PostgreSQL 15 for the fleet tests: initdb once, copy per server.

``initdb`` refuses root, so a root test run makes the cluster as ``nobody``
(uid 65534) in a short temp dir of its own (socket paths must fit 107 bytes).
Unix socket only, ``fsync=off``; with ``tls`` also 127.0.0.1 on a free port with
``hostssl ... cert`` (the client certificate's CN is the role).
Recipe and timings: /work/shared/design/fleet-store.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
NOBODY = 65534


def _as_server_user() -> dict[str, int]:
    return {"user": NOBODY, "group": NOBODY} if os.getuid() == 0 else {}


def _chown_tree(path: Path) -> None:
    if os.getuid() != 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, NOBODY, NOBODY)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), NOBODY, NOBODY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_template() -> Path:
    """An initdb'd data dir to copy (the caller removes its parent)."""
    top = Path(tempfile.mkdtemp(prefix="pgt", dir="/tmp"))
    top.chmod(0o755)
    _chown_tree(top)
    subprocess.run([str(BIN / "initdb"), "-D", str(top / "data"), "-U", "postgres", "-A",
                    "trust", "--no-sync", "--no-instructions", "-E", "UTF8",
                    "--locale=C.UTF-8"], check=True, capture_output=True, cwd="/",
                   **_as_server_user())  # type: ignore[call-overload]
    return top / "data"


class PgServer:
    """One running server on a copy of ``template``; ``stop()`` removes everything."""

    def __init__(self, template: Path, *, tls: tuple[str, str, str] | None = None) -> None:
        """``tls``: (server cert, server key, client CA) PEM paths: listen on TCP too."""
        self.dir = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        shutil.copytree(template, self.data)
        self.port = free_port() if tls else 5432
        opts = [f"unix_socket_directories='{self.dir}'", "fsync=off",
                "synchronous_commit=off", "full_page_writes=off", "max_connections=200",
                f"port={self.port}"]
        if tls:
            for name, src in zip(("server.crt", "server.key", "ca.crt"), tls, strict=True):
                shutil.copy(src, self.data / name)
                (self.data / name).chmod(0o600)
            opts += ["listen_addresses='127.0.0.1'", "ssl=on", "ssl_cert_file='server.crt'",
                     "ssl_key_file='server.key'", "ssl_ca_file='ca.crt'"]
            hba = ("local all all trust\n"
                   "hostssl all all 127.0.0.1/32 cert\n")
            (self.data / "pg_hba.conf").write_text(hba)
        else:
            opts.append("listen_addresses=''")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n".join(opts) + "\n")
        _chown_tree(self.dir)
        self.start()

    def _ctl(self, *args: str) -> None:
        subprocess.run([str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-s", *args],
                       check=True, capture_output=True, cwd="/",
                       **_as_server_user())  # type: ignore[call-overload]

    def start(self) -> None:
        self._ctl("-l", str(self.dir / "log"), "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` may lose commits not yet flushed (synchronous_commit=off):
        ``fast`` when the data dir is kept."""
        self._ctl("-m", mode, "stop")

    def dsn(self, user: str = "postgres", dbname: str = "postgres") -> str:
        return f"host={self.dir} port={self.port} user={user} dbname={dbname}"

    def psql(self, sql: str, user: str = "postgres") -> str:
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", self.dsn(user), "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
