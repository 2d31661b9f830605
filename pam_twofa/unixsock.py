"""The Unix sockets of the root services (the enrollment service, twofa-fleetd).

One way to take a socket path and one way to ask the kernel who is on the other
end (SO_PEERCRED), for both services. Never loaded by a login.
"""

from __future__ import annotations

import os
import socket
import stat
import struct

from pam_twofa.errors import ServiceSocketError

__all__ = ["listen", "peer_credentials"]


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer, from the kernel (never from the request)."""
    size = struct.calcsize("3i")
    pid, uid, gid = struct.unpack(
        "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size))
    return int(pid), int(uid), int(gid)


def listen(path: str, mode: int, backlog: int) -> socket.socket:
    """A socket bound at ``path`` with ``mode`` from the start (bound under a umask,
    so no wider mode is ever visible). A stale socket there is replaced; anything
    else, or a socket another process listens on, is refused: a second instance
    started by mistake must not take the first one's clients."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ServiceSocketError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody listens
        else:
            raise ServiceSocketError(f"another process already listens on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(backlog)
    return sock
