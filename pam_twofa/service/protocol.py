"""The enrollment service's wire format, shared by the server and its client.

SOCK_STREAM, one request per connection::

    client -> service   one JSON object, one line, UTF-8, "\\n"-terminated,
                        at most 64 KiB: {"op": NAME, ...arguments}
    service -> client   one JSON line, then close:
                        {"ok": true, ...result}
                        {"ok": false, "error": REASON, "message": TEXT}

The request must arrive within 5 s. REASON is a stable token (``bad-request``,
``too-large``, ``timeout``, ``unknown-op``, ``unknown-user``, ``busy``,
``bad-code``, ``replay``, ``locked``, ``no-pending``, ``code-needed``,
``not-enrolled``, ``not-allowed``, ``internal-error``, ...): the client maps it
to an exit code through ``errors.ServiceRefused``.
"""

from __future__ import annotations

import contextlib
import json
import socket

from pam_twofa.errors import RequestError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.clock import Clock

MAX_REQUEST = 64 * 1024
MAX_RESPONSE = 1024 * 1024
REQUEST_TIMEOUT = 5.0


def refusal(reason: str, message: str) -> dict[str, Any]:
    """The answer shape of a refused request."""
    return {"ok": False, "error": reason, "message": message}


def encode(answer: dict[str, Any]) -> bytes:
    """One answer, as it goes on the wire."""
    return json.dumps(answer, sort_keys=True).encode() + b"\n"


def decode_request(raw: bytes) -> tuple[str, dict[str, Any]]:
    """(op, arguments) of a request line, or ``RequestError(bad-request)``."""
    try:
        request = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RequestError("bad-request", "the request is not one line of JSON") from None
    if type(request) is not dict or type(request.get("op")) is not str:
        raise RequestError("bad-request", "the request must be an object with an \"op\"")
    op = request.pop("op")
    return op, request


def arg(args: dict[str, Any], name: str, *, required: bool = True,
        max_len: int = 256) -> str | None:
    """A string argument, checked: one line, at most ``max_len`` characters."""
    value = args.get(name)
    if value is None:
        if required:
            raise RequestError("bad-request", f"{name!r} is needed")
        return None
    if type(value) is not str or len(value) > max_len or any(ord(c) < 32 for c in value):
        raise RequestError("bad-request", f"{name!r} must be a one-line string")
    return value


def read_request(conn: socket.socket, clock: Clock, timeout: float = REQUEST_TIMEOUT) -> bytes:
    """The request line; too large, too slow or cut short is a ``RequestError``."""
    deadline = clock.now() + timeout
    buf = bytearray()
    while True:
        left = deadline - clock.now()
        if left <= 0:
            raise RequestError("timeout", f"no complete request within {timeout:g} s")
        conn.settimeout(left)
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            raise RequestError("timeout", f"no complete request within {timeout:g} s") from None
        end = chunk.find(b"\n")
        if end >= 0:
            chunk = chunk[:end]
        if len(buf) + len(chunk) > MAX_REQUEST:
            raise RequestError("too-large", f"the request is over {MAX_REQUEST} bytes")
        buf += chunk
        if end >= 0 or not chunk:
            if not buf:
                raise RequestError("bad-request", "empty request")
            return bytes(buf)


def call(path: str, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
    """The client side: send one request, return the decoded response (``ok`` or not)."""
    request = {"op": op, **{k: v for k, v in args.items() if v is not None}}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # refused at accept (busy, unknown uid): the answer is already queued for us
            sock.sendall(json.dumps(request).encode() + b"\n")
        buf = bytearray()
        while b"\n" not in buf and len(buf) <= MAX_RESPONSE:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
    try:
        response = json.loads(bytes(buf).split(b"\n", 1)[0])
    except ValueError:
        response = None
    if type(response) is not dict or type(response.get("ok")) is not bool:
        return refusal("bad-response", "no valid answer from the service")
    return response
