"""The enrollment service: root's side of ``twofa-enroll``, on a Unix socket.

Secrets are root-owned and unreadable by users, so the user's command asks this
service (the way fprintd and systemd-homed work). The caller is identified only
by the kernel: SO_PEERCRED uid -> passwd name. Every operation acts on that
user's own record; no request names a user.

Protocol (SOCK_STREAM, one request per connection)::

    client -> service   one JSON object, one line, UTF-8, "\\n"-terminated,
                        at most 64 KiB: {"op": NAME, ...arguments}
    service -> client   one JSON line, then close:
                        {"ok": true, ...result}
                        {"ok": false, "error": REASON, "message": TEXT}

The request must arrive within 5 s. REASON is a stable token (``bad-request``,
``too-large``, ``timeout``, ``unknown-op``, ``unknown-user``, ``busy``,
``bad-code``, ``replay``, ``locked``, ``no-pending``, ``code-needed``,
``not-enrolled``, ``not-allowed``, ``internal-error``, ...). A refused request
changes nothing, except that a wrong code counts in the lockout as at a login.

The caller is identified when the connection is accepted, before it takes one
of the ``MAX_CONNECTIONS`` slots: a uid without a passwd entry (a subordinate
uid range, say) is answered ``unknown-user`` at once and holds nothing, and
each known uid gets one request at a time (a second concurrent one is
``busy``), so no single caller can fill the slots.

Operations are a dispatch table, op name -> handler in the module that owns the
feature. A module registers one with a decorator::

    from pam_twofa.enrollsvc import Caller, Context, operation

    @operation("devices", args=("action", "id"))
    def devices(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]: ...

and is listed once in ``OPERATION_MODULES`` so the service imports it. Arguments
not declared in ``args`` are refused; ``arg()`` reads one with type and length
checks. Handlers raise ``TwofaError`` for refusals (its ``reason`` goes out as
``error``) and must never return a secret except the caller's own new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading

from pam_twofa import log
from pam_twofa.errors import TwofaError, UnknownUser
from pam_twofa.record import Record
from pam_twofa.store import FileStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pam_twofa.accounts import Account
    from pam_twofa.clock import Clock
    from pam_twofa.paths import Paths
    from pam_twofa.policy import Policy

    Handler = Callable[["Context", "Caller", dict[str, Any]], dict[str, Any]]

MAX_REQUEST = 64 * 1024
MAX_RESPONSE = 1024 * 1024
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 64
OPERATION_MODULES = (
    "pam_twofa.enrollops",  # status, begin, confirm, recovery-codes, disable
    "pam_twofa.emailops",  # email, email-verify
    "pam_twofa.deviceops",  # devices (list, revoke, revoke-all)
)


class RequestError(TwofaError):
    """A request the service refuses before any handler runs."""

    exit_name = "FAILED"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Caller(Record):
    """Who is asking, as the kernel says (SO_PEERCRED) and NSS names it."""

    uid: int
    pid: int
    account: Account

    @property
    def name(self) -> str:
        return self.account.name


class Context:
    """What handlers work with: paths, clock, store, the current policy, the log."""

    def __init__(self, paths: Paths, clock: Clock) -> None:
        self.paths = paths
        self.clock = clock
        self.store = FileStore(paths, clock)

    @property
    def policy(self) -> Policy:
        """The policy as it is now (cached compiled; an edit is picked up at once)."""
        from pam_twofa import policyfile

        return policyfile.load(self.paths)

    def audit(self, caller: Caller, op: str, result: str, **fields: object) -> None:
        """One authpriv line per change or refusal; never a code or secret."""
        sink = log.SyslogSink("pam_twofa(enroll)", self.paths.log_socket,
                              tag=log.TAG_ENROLL_SERVICE)
        priority = log.INFO if result == "ok" else log.NOTICE
        sink.log(priority, "", user=caller.name, uid=caller.uid, op=op, result=result, **fields)
        sink.close()


class _Op(Record):
    handler: Callable[[Context, Caller, dict[str, Any]], dict[str, Any]]
    args: frozenset[str]


OPS: dict[str, _Op] = {}


def operation(name: str, args: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    """Register ``handler`` for requests ``{"op": name, ...}`` taking ``args``."""

    def register(handler: Handler) -> Handler:
        if name in OPS:
            raise ValueError(f"operation {name!r} registered twice")
        OPS[name] = _Op(handler=handler, args=frozenset(args))
        return handler

    return register


def load_operations() -> None:
    import importlib

    for module in OPERATION_MODULES:
        importlib.import_module(module)


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


def identify(uid: int, pid: int) -> Caller:
    """The caller for a peer uid; a uid without a (consistent) passwd entry is refused."""
    import pwd

    from pam_twofa import accounts

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        raise UnknownUser(f"uid {uid} has no passwd entry") from None
    account = accounts.lookup(name)
    if account is None or account.uid != uid:
        # two entries sharing a name: never act on another uid's record
        raise UnknownUser(f"uid {uid}: the name {name!r} resolves to another uid")
    return Caller(uid=uid, pid=pid, account=account)


def dispatch(ctx: Context, caller: Caller, raw: bytes) -> dict[str, Any]:
    """One request of an identified caller to one response (never raises)."""
    op = "-"
    try:
        try:
            request = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RequestError("bad-request", "the request is not one line of JSON") from None
        if type(request) is not dict or type(request.get("op")) is not str:
            raise RequestError("bad-request", "the request must be an object with an \"op\"")
        op = request.pop("op")
        entry = OPS.get(op)
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
        return {"ok": False, "error": exc.reason, "message": exc.message}
    except Exception as exc:  # a bug: logged, and the service keeps serving
        sink = log.SyslogSink("pam_twofa(enroll)", ctx.paths.log_socket,
                              tag=log.TAG_ENROLL_SERVICE)
        sink.log(log.ERR, f"error={log.escape(type(exc).__name__ + ': ' + str(exc))}",
                 uid=caller.uid, op=op, result="refused", reason="internal-error")
        sink.close()
        return {"ok": False, "error": "internal-error", "message": "internal error (logged)"}


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer, from the kernel."""
    size = struct.calcsize("3i")
    return struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size))


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
            pid, uid, _gid = peer_credentials(conn)
        except OSError:
            conn.close()
            return
        try:
            caller = identify(uid, pid)  # before a slot: unknown uids hold nothing
        except TwofaError as exc:
            self._reply(conn, {"ok": False, "error": exc.reason, "message": exc.message},
                        wait=False)
            return
        except Exception:  # NSS trouble must not stop the accept loop
            self._reply(conn, {"ok": False, "error": "internal-error",
                               "message": "cannot look up the caller"}, wait=False)
            return
        with self._lock:
            self._last_activity = self.ctx.clock.now()
            refusal = None
            if uid in self._busy:
                refusal = "another request of yours is in progress"
            elif self._active >= MAX_CONNECTIONS:
                refusal = "the service is busy; try again"
            else:
                self._busy.add(uid)
                self._active += 1
        if refusal is not None:
            self._reply(conn, {"ok": False, "error": "busy", "message": refusal}, wait=False)
            return
        threading.Thread(target=self._handle, args=(conn, caller), daemon=True).start()

    def _handle(self, conn: socket.socket, caller: Caller) -> None:
        uid = caller.uid
        try:
            try:
                raw = read_request(conn, self.ctx.clock)
            except RequestError as exc:
                response = {"ok": False, "error": exc.reason, "message": exc.message}
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
            conn.sendall(json.dumps(response, sort_keys=True).encode() + b"\n")
        conn.close()


def listen(path: str) -> socket.socket:
    """Bind the socket at ``path`` (mode 0666: who may ask is decided per request)."""
    import stat

    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise RequestError("bad-socket", f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody listens
        else:
            raise RequestError("in-use", f"another service already listens on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o111)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o666)
    sock.listen(64)
    return sock


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
        return {"ok": False, "error": "bad-response", "message": "no valid answer from the service"}
    return response
