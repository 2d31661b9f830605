"""``twofa-enroll-service``: run the enrollment service (root).

Started by systemd through ``pam-twofa-enroll.socket`` (the listening socket
arrives as fd 3, per systemd's LISTEN_FDS/LISTEN_PID protocol), or by hand:
``twofa-enroll-service --socket PATH --state-dir DIR --policy FILE``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket

import click

from pam_twofa.cli.common import run
from pam_twofa.clock import Clock
from pam_twofa.paths import (
    DEFAULT_LOG_SOCKET,
    DEFAULT_POLICY,
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    Paths,
)
from pam_twofa.service import server as service
from pam_twofa.service.context import Context

PROG = "twofa-enroll-service"
SD_LISTEN_FDS_START = 3


def systemd_socket() -> socket.socket | None:
    """The socket systemd passed us, if it passed one (and only to this process)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = os.environ.get("LISTEN_FDS", "0")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for children
    if count != "1":
        raise click.UsageError(f"expected one socket from systemd, got LISTEN_FDS={count}")
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise click.UsageError("the socket from systemd is not a Unix stream socket")
    os.set_inheritable(sock.fileno(), False)
    return sock


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True,
              type=click.Path(dir_okay=False), help="Socket to listen on (without systemd).")
@click.option("--policy", default=DEFAULT_POLICY, show_default=True,
              type=click.Path(dir_okay=False), help="Policy file.")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True,
              type=click.Path(file_okay=False), help="State directory.")
@click.option("--log-socket", default=DEFAULT_LOG_SOCKET, show_default=True,
              type=click.Path(dir_okay=False), help="Syslog socket.")
@click.option("--idle-exit", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Exit after this many idle seconds (0: never); for socket activation.")
@click.version_option(package_name="pam-twofa", prog_name=PROG)
def main(socket_path: str, policy: str, state_dir: str, log_socket: str,
         idle_exit: float) -> None:
    """Serve twofa-enroll requests: each user may change only their own 2FA."""

    def body() -> None:
        from pam_twofa import fsutil

        paths = Paths(policy=policy, policy_explicit=policy != DEFAULT_POLICY,
                      state_dir=state_dir.rstrip("/") or "/", socket=socket_path,
                      log_socket=log_socket)
        fsutil.ensure_dir(paths.state_dir)  # refuse a bad state dir before serving
        listener = systemd_socket()
        bound = listener is None
        if listener is None:
            listener = service.listen(socket_path)
        server = service.Server(Context(paths, Clock()), listener)
        signal.signal(signal.SIGTERM, lambda *_: server.stop.set())
        signal.signal(signal.SIGINT, lambda *_: server.stop.set())
        try:
            server.serve(idle_exit)
        finally:
            listener.close()
            if bound:
                with contextlib.suppress(OSError):
                    os.unlink(socket_path)

    run(PROG, body)


if __name__ == "__main__":
    main(prog_name=PROG)
