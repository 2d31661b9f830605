"""The user's side of the enrollment service: ask, and say clearly why not.

``twofa-enroll`` holds no privilege: every change goes through the root
enrollment service (``pam_twofa.service``), which knows the caller by the
kernel's account of the socket peer.
"""

from __future__ import annotations

import click

from pam_twofa.errors import ServiceRefused
from pam_twofa.service import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROG = "twofa-enroll"


class Client:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        """Call ``op``; the result, or ``ServiceRefused``."""
        try:
            response = protocol.call(self.socket_path, op, **args)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ServiceRefused("unavailable", not_running(self.socket_path)) from None
        except OSError as exc:
            raise ServiceRefused("unavailable", f"cannot reach the enrollment service at "
                                 f"{self.socket_path}: {exc.strerror or exc}") from None
        if not response.pop("ok"):
            raise ServiceRefused(str(response.get("error")), str(response.get("message")))
        return response


def not_running(socket_path: str) -> str:
    """What a user needs to hear when nobody listens on the socket: who can fix it, how."""
    return (f"the enrollment service is not running (nothing listens on {socket_path}).\n"
            "Ask your administrator to start it: 'systemctl start pam-twofa-enroll.socket',\n"
            "or, on a host without systemd, run 'twofa-enroll-service' as root.")


pass_client = click.make_pass_decorator(Client)
