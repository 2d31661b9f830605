"""The login's side of the fleet store: one request to ``twofa-fleetd``, one deadline.

A login never loads a database driver (psycopg2 costs ~24 ms): it sends one JSON
line over the host's root-only Unix socket and reads one line back, all within
``timeout`` seconds (the daemon answers ``offline`` itself within its own
deadline, so the client's only adds the socket's own slack). Only ``_socket``,
``time`` and the state files' ``fastjson`` load here.

Every function returns the answer as a dict. ``result`` says what happened:
``ok``, ``replay``, ``bad-code``, ``locked``, ``suspended``, ``not-enrolled``,
``no-answer``, ``recovery-code``, ``no-grant``, ``no-pending``, ... as the
database said it, or ``offline`` when the database (or the daemon) could not
answer in time; an offline answer carries ``enrolled``: true/false from the
daemon's list, or None when nobody knows. A refused request (a protocol error)
raises ``FleetError``.
"""

from __future__ import annotations

import _socket
import time

from pam_twofa import fastjson
from pam_twofa.errors import FleetError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_ANSWER = 65536
DEFAULT_SOCKET = "/run/pam-twofa/fleetd.sock"


def request(socket_path: str, timeout: float, op: str, **args: Any) -> dict[str, Any]:
    """Send ``{"op": op, **args}``; the answer's fields, or ``{"result": "offline"}``."""
    deadline = time.monotonic() + timeout
    line = (fastjson.dumps({"op": op, **args}) + "\n").encode("ascii")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(line)
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(MAX_ANSWER)
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_ANSWER:
                raise FleetError("twofa-fleetd answered more than 64 KiB")
    except OSError:  # no daemon, refused, timed out, reset: nobody can say
        return {"result": "offline", "enrolled": None}
    finally:
        sock.close()
    try:
        answer = fastjson.loads(buf.split(b"\n", 1)[0])
    except (ValueError, UnicodeDecodeError):
        raise FleetError("twofa-fleetd sent something that is not JSON") from None
    if type(answer) is not dict:
        raise FleetError("twofa-fleetd sent something that is not an answer")
    if answer.get("error"):
        raise FleetError(f"twofa-fleetd refused {op}: {answer.get('error')}")
    return answer


def check_code(socket_path: str, timeout: float, user: str, answer: str) -> dict[str, Any]:
    """A login's answer, checked by the database (TOTP, else recovery code).

    ``ok``: ``step``, ``grant`` (one-time token for ``add_device``/``enroll_begin``/
    ``new_recovery_codes`` on this host); ``recovery-code``: ``left``; ``bad-code``:
    ``failures``, ``locked_until`` (epoch or None), ``suspended``, ``email`` (bool);
    ``locked``: ``locked_until``; ``replay``, ``suspended``, ``not-enrolled``,
    ``no-answer`` (empty, not counted).
    """
    return request(socket_path, timeout, "check_code", user=user, answer=answer)


def offline_check(socket_path: str, timeout: float, user: str,
                  answer: str) -> dict[str, Any]:
    """Break-glass: ``check_code`` while the database answers; while it does not, a
    recovery code checked against the daemon's cached hashes (answers with
    ``offline``: true: ``recovery-code``, ``bad-code`` (``offline_locked``),
    ``locked``, ``no-answer``), or ``offline`` for a user with none cached."""
    return request(socket_path, timeout, "offline_check", user=user, answer=answer)


def skip_device(socket_path: str, timeout: float, user: str, service: str, ip: str,
                key: str | None) -> dict[str, Any]:
    """``{"trusted": bool, "id": str|None}``: a trusted device of this host and service."""
    return request(socket_path, timeout, "skip_device", user=user, service=service, ip=ip,
                   key=key)


def add_device(socket_path: str, timeout: float, user: str, grant: str, service: str,
               ip: str, key: str | None) -> dict[str, Any]:
    """Trust this device (``ok``: ``id``, ``expires``), or ``no-grant``."""
    return request(socket_path, timeout, "add_device", user=user, grant=grant,
                   service=service, ip=ip, key=key)


def first_seen(socket_path: str, timeout: float, user: str) -> dict[str, Any]:
    """``{"first_seen": epoch}``: recorded at the first call, fleet-wide (grace period)."""
    return request(socket_path, timeout, "first_seen", user=user)


def status(socket_path: str, timeout: float, user: str) -> dict[str, Any]:
    """``enrolled``, ``email`` (bool: never the address), ``email_changed_at`` (epoch or
    None), ``failures``, ``suspended``, ``locked_until``, ``first_seen``,
    ``recovery_codes`` (count), ``devices`` (on this host); no secret."""
    return request(socket_path, timeout, "status", user=user)


def enroll_begin(socket_path: str, timeout: float, user: str, grant: str | None,
                 digits: int, period: int, algorithm: str) -> dict[str, Any]:
    """A new secret for ``user``, to this host only (``ok``: ``secret`` base32,
    ``expires``); an enrolled user needs a ``grant`` (else ``no-grant``)."""
    return request(socket_path, timeout, "enroll_begin", user=user, grant=grant,
                   digits=digits, period=period, algorithm=algorithm)


def enroll_confirm(socket_path: str, timeout: float, user: str, code: str) -> dict[str, Any]:
    """Activate the pending secret with a code from it: ``ok``, ``bad-code``, ``no-pending``."""
    return request(socket_path, timeout, "enroll_confirm", user=user, code=code)


def new_recovery_codes(socket_path: str, timeout: float, user: str,
                       grant: str) -> dict[str, Any]:
    """Ten new recovery codes (``ok``: ``codes``), old ones void; needs a ``grant``."""
    return request(socket_path, timeout, "new_recovery_codes", user=user, grant=grant)


def emergency_begin(socket_path: str, timeout: float, user: str) -> dict[str, Any]:
    """A new emergency code for this host to mail (voids the last one): ``ok``: ``code``,
    ``email``, ``expires``, ``ttl_seconds``; else ``no-email``, ``email-changed`` (``until``),
    ``send-limit``, ``locked``, ``suspended``, ``not-enrolled``."""
    return request(socket_path, timeout, "emergency_begin", user=user)


def emergency_check(socket_path: str, timeout: float, user: str,
                    answer: str) -> dict[str, Any]:
    """The emergency code typed: ``emergency-code`` (``email``: the address to notify)
    once, on the host that asked for it; ``no-answer`` (empty, not counted); else
    ``bad-emergency-code`` counted like ``check_code``'s ``bad-code``."""
    return request(socket_path, timeout, "emergency_check", user=user, answer=answer)


def devices(socket_path: str, timeout: float, user: str) -> dict[str, Any]:
    """``{"devices": [{id, service, ip, key, created, expires, last_used, expired}]}``:
    the user's trusted devices on this host."""
    return request(socket_path, timeout, "devices", user=user)


def revoke_device(socket_path: str, timeout: float, user: str,
                  device_id: str | None) -> dict[str, Any]:
    """``{"revoked": N}``: one of the user's devices on this host, or all with None."""
    return request(socket_path, timeout, "revoke_device", user=user, id=device_id)
