"""The enrollment service: root's side of ``twofa-enroll``, on a Unix socket.

Secrets are root-owned and unreadable by users, so the user's command asks this
service (the way fprintd and systemd-homed work). The wire format is in
``protocol``, who asks in ``context``, what can be asked in ``operations``.
A refused request changes nothing, except that a wrong code counts in the
lockout as at a login.

The caller is identified when the connection is accepted, before it takes one
of the ``MAX_CONNECTIONS`` slots: a uid without a passwd entry (a subordinate
uid range, say) is answered ``unknown-user`` at once and holds nothing, and
each known uid gets one request at a time (a second concurrent one is
``busy``), so no single caller can fill the slots.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from pam_twofa import log, unixsock
from pam_twofa.errors import RequestError, TwofaError
from pam_twofa.service.context import Caller, Context, identify
from pam_twofa.service.operations import OPERATIONS
from pam_twofa.service.protocol import (
    REQUEST_TIMEOUT,
    decode_request,
    encode,
    read_request,
    refusal,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_CONNECTIONS = 64


def dispatch(ctx: Context, caller: Caller, raw: bytes) -> dict[str, Any]:
    """One request of an identified caller to one response (never raises)."""
    op = "-"
    try:
        op, request = decode_request(raw)
        entry = OPERATIONS.get(op)
        if entry is None:
            raise RequestError("unknown-op", f"unknown operation {op[:40]!r}")
        extra = set(request) - entry.args
        if extra:
            raise RequestError("bad-request", f"{op}: unexpected argument(s) "
                                              f"{', '.join(sorted(extra))[:200]}")
        result = entry.handler(ctx, caller, request)
        return {"ok": True, **result}
    except TwofaError as exc:
        ctx.audit(caller, op, "refused", reason=exc.reason)
        return refusal(exc.reason, exc.message)
    except Exception as exc:  # a bug: logged, and the service keeps serving
        sink = log.SyslogSink("pam_twofa(enroll)", ctx.paths.log_socket,
                              tag=log.TAG_ENROLL_SERVICE)
        sink.log(log.ERR, f"error={log.escape(type(exc).__name__ + ': ' + str(exc))}",
                 uid=caller.uid, op=op, result="refused", reason="internal-error")
        sink.close()
        return refusal("internal-error", "internal error (logged)")


class Server:
    """Accepts connections; one thread each, one at a time per known uid."""

    def __init__(self, ctx: Context, listener: socket.socket) -> None:
        self.ctx = ctx
        self.listener = listener
        self._lock = threading.Lock()
        self._busy: set[int] = set()  # uids with a request in progress
        self._active = 0
        self._last_activity = ctx.clock.now()
        self.stop = threading.Event()

    def serve(self, idle_exit: float = 0) -> None:
        """Serve until ``stop`` is set (or ``idle_exit`` seconds pass with nothing to do)."""
        self.listener.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                with self._lock:
                    idle = self._active == 0 and (
                        self.ctx.clock.now() - self._last_activity >= idle_exit)
                if idle_exit and idle:
                    return
                continue
            except OSError:
                if self.stop.is_set():
                    return
                raise
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        try:
            pid, uid, _gid = unixsock.peer_credentials(conn)
        except OSError:
            conn.close()
            return
        try:
            caller = identify(uid, pid)  # before a slot: unknown uids hold nothing
        except TwofaError as exc:
            self._reply(conn, refusal(exc.reason, exc.message), wait=False)
            return
        except Exception:  # NSS trouble must not stop the accept loop
            self._reply(conn, refusal("internal-error", "cannot look up the caller"), wait=False)
            return
        with self._lock:
            self._last_activity = self.ctx.clock.now()
            busy = None
            if uid in self._busy:
                busy = "another request of yours is in progress"
            elif self._active >= MAX_CONNECTIONS:
                busy = "the service is busy; try again"
            else:
                self._busy.add(uid)
                self._active += 1
        if busy is not None:
            self._reply(conn, refusal("busy", busy), wait=False)
            return
        threading.Thread(target=self._handle, args=(conn, caller), daemon=True).start()

    def _handle(self, conn: socket.socket, caller: Caller) -> None:
        uid = caller.uid
        try:
            try:
                raw = read_request(conn, self.ctx.clock)
            except RequestError as exc:
                response = refusal(exc.reason, exc.message)
            except OSError:
                response = None
            else:
                response = dispatch(self.ctx, caller, raw)
        except BaseException:
            self._done(uid)
            conn.close()
            raise
        self._done(uid)  # before the reply: the client may send its next request at once
        if response is not None:
            self._reply(conn, response)
        else:
            conn.close()

    def _done(self, uid: int) -> None:
        with self._lock:
            self._busy.discard(uid)
            self._active -= 1
            self._last_activity = self.ctx.clock.now()

    @staticmethod
    def _reply(conn: socket.socket, response: dict[str, Any], wait: bool = True) -> None:
        """Send and close; from the accept loop (``wait=False``) never block on a peer."""
        with contextlib.suppress(OSError):
            conn.settimeout(REQUEST_TIMEOUT if wait else 0.0)
            conn.sendall(encode(response))
        conn.close()


def listen(path: str) -> socket.socket:
    """The service's socket at ``path``, mode 0666: who may ask is decided per
    request, from the kernel's word on the peer (``unixsock``)."""
    return unixsock.listen(path, 0o666, 64)
