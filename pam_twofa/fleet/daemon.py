"""``twofa-fleetd``: one verified connection to the fleet database, served to PAM.

Why a daemon: psycopg2's import and a TLS connect cost ~60 ms, a login's budget
is a few ms. The daemon keeps one connection (libpq DSN from the policy, a client
certificate per host) and answers the module (``pam_twofa.fleetclient``) over a
Unix socket that only uid 0 (and its own uid) may use (SO_PEERCRED), one JSON
line each way.

The database never makes a login hang: every call ends by ``timeout_seconds``
(``backend``: a call that does not finish in time loses its connection, since a
hung server never answers, and the next call gets a fresh one). A health check
runs every few seconds: while the database is unreachable, requests are answered
``offline`` at once, and the check reconnects as soon as it answers again. The
names of enrolled users (never a secret) are kept in memory and in ``cache`` so
offline answers can say whether a user is enrolled.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time

from pam_twofa import fastjson, totp, unixsock
from pam_twofa.fleet.backend import Backend, Offline, say
from pam_twofa.fleet.offline import BreakGlass
from pam_twofa.store import validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MAX_REQUEST = 8192
MAX_CONNECTIONS = 128
SPARE = 2  # idle accepting threads kept after a burst
REQUEST_SECONDS = 5.0  # to send the request line

# op -> (SQL, argument names and their kinds); kinds: u = user name, s = string (max
# len), n = string or null, i = int, a = an answer typed by someone (max len; what is
# not UTF-8 becomes U+FFFD: hostile input is a wrong answer, counted, not a refused
# request). Every value reaches SQL as a bound parameter.
OPS: dict[str, tuple[str, tuple[tuple[str, str, int], ...]]] = {
    "check_code": ("SELECT twofa_api.check_code(%s, %s)",
                   (("user", "u", 0), ("answer", "a", 1024))),
    # break-glass (fleet.offline): the database's check while it answers, else this host's
    "offline_check": ("SELECT twofa_api.check_code(%s, %s) AS offline_check",
                      (("user", "u", 0), ("answer", "a", 1024))),
    "skip_device": ("SELECT twofa_api.skip_device(%s, %s, %s, %s)",
                    (("user", "u", 0), ("service", "s", 64), ("ip", "s", 64),
                     ("key", "n", 128))),
    "add_device": ("SELECT twofa_api.add_device(%s, %s, %s, %s, %s)",
                   (("user", "u", 0), ("grant", "s", 64), ("service", "s", 64),
                    ("ip", "s", 64), ("key", "n", 128))),
    "first_seen": ("SELECT jsonb_build_object('first_seen', twofa_api.first_seen(%s))",
                   (("user", "u", 0),)),
    "status": ("SELECT twofa_api.status(%s)", (("user", "u", 0),)),
    "enroll_begin": ("SELECT twofa_api.enroll_begin(%s, %s, %s, %s, %s)",
                     (("user", "u", 0), ("grant", "n", 64), ("digits", "i", 0),
                      ("period", "i", 0), ("algorithm", "s", 8))),
    "enroll_confirm": ("SELECT twofa_api.enroll_confirm(%s, %s)",
                       (("user", "u", 0), ("code", "a", 1024))),
    "new_recovery_codes": ("SELECT twofa_api.new_recovery_codes(%s, %s)",
                           (("user", "u", 0), ("grant", "s", 64))),
    "emergency_begin": ("SELECT twofa_api.emergency_begin(%s)", (("user", "u", 0),)),
    "emergency_check": ("SELECT twofa_api.emergency_check(%s, %s)",
                        (("user", "u", 0), ("answer", "a", 1024))),
    "devices": ("SELECT jsonb_build_object('devices', twofa_api.devices(%s))",
                (("user", "u", 0),)),
    "revoke_device": ("SELECT jsonb_build_object('revoked', twofa_api.revoke_device(%s, %s))",
                      (("user", "u", 0), ("id", "n", 64))),
    # the enrollment service (fleet/hoststore.py)
    "prove": ("SELECT twofa_api.prove(%s, %s)", (("user", "u", 0), ("answer", "a", 1024))),
    "account": ("SELECT twofa_api.account(%s)", (("user", "u", 0),)),
    "enroll_finish": ("SELECT twofa_api.enroll_finish(%s, %s)",
                      (("user", "u", 0), ("code", "a", 1024))),
    "disable": ("SELECT twofa_api.disable(%s, %s)", (("user", "u", 0), ("grant", "s", 64))),
    "email_begin": ("SELECT twofa_api.email_begin(%s, %s, %s, %s)",
                    (("user", "u", 0), ("grant", "n", 64), ("address", "s", 254),
                     ("seconds", "i", 0))),
    "email_set": ("SELECT twofa_api.email_set(%s, %s)",
                  (("user", "u", 0), ("address", "s", 254))),
}


# Answers that prove the user is enrolled: a login's status or code check (a
# refusal of these only comes for an enrolled user), a confirmed enrollment.
PROVES_ENROLLED = tuple(f"SELECT twofa_api.{op}(" for op in (
    "check_code", "emergency_check", "status", "enroll_confirm", "prove", "enroll_finish"))
KNOWN_ENROLLED = frozenset(("ok", "recovery-code", "replay", "bad-code", "locked",
                            "suspended", "emergency-code", "bad-emergency-code"))
OFFLINE_CHECK = OPS["offline_check"][0]
# Answers after which the break-glass cache fetches (or drops) the user's hashes.
LOGGED_IN = (OPS["check_code"][0], OFFLINE_CHECK)


class BadRequest(Exception):
    """A request the daemon will not pass on; its text is the error token."""


def parse(line: bytes) -> tuple[str, tuple[Any, ...], str]:
    """(SQL, bound arguments, user) of one request line; ``BadRequest`` otherwise."""
    try:
        request = fastjson.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("bad-request") from None
    if type(request) is not dict or type(request.get("op")) is not str:
        raise BadRequest("bad-request")
    spec = OPS.get(request["op"])
    if spec is None:
        raise BadRequest("unknown-op")
    sql, params = spec
    if set(request) - {"op"} != {name for name, _k, _n in params}:
        raise BadRequest("bad-arguments")
    args: list[Any] = []
    for name, kind, limit in params:
        value = request[name]
        if kind == "u":
            try:
                value = validate_user_name(value)
            except Exception:
                raise BadRequest("bad-user-name") from None
        elif kind == "i":
            if type(value) is not int or not 0 < value <= 3600:
                raise BadRequest("bad-arguments")
        elif value is None and kind == "n":
            pass
        elif type(value) is not str or len(value) > limit or "\x00" in value:
            raise BadRequest("bad-arguments")
        elif kind == "a":
            value = value.encode("utf-8", "replace").decode("utf-8")
        else:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("bad-arguments") from None
        args.append(value)
    return sql, tuple(args), request["user"]


def read_line(conn: socket.socket, deadline: float) -> bytes:
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BadRequest("timeout")
        conn.settimeout(left)
        try:
            chunk = conn.recv(MAX_REQUEST + 1)
        except TimeoutError:
            raise BadRequest("timeout") from None
        if not chunk:
            raise BadRequest("bad-request")
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise BadRequest("too-large")
    return buf.split(b"\n", 1)[0]


class Server:
    """The Unix socket side: threads that each accept a connection and answer it
    themselves (no thread started, no hand-off per request: a login asks twice), one
    more whenever all are busy, at most ``MAX_CONNECTIONS``; past that, connections
    wait in the listen queue (the client's deadline bounds the wait).

    Who may ask: uid 0 and ``allowed_uid`` (the daemon's own uid: root under systemd;
    a daemon run as another user trusts only what runs as that user, which holds its
    database credentials anyway).
    """

    def __init__(self, backend: Backend, socket_path: str, allowed_uid: int = 0,
                 glass: BreakGlass | None = None) -> None:
        self.backend = backend
        self.glass = glass
        self.socket_path = socket_path
        self.allowed_uid = allowed_uid
        self.count = threading.Lock()  # guards threads and idle
        self.threads = 0
        self.idle = 0
        self.sock = listen(socket_path)

    def answer(self, line: bytes) -> dict[str, Any]:
        sql, args, user = parse(line)
        started = time.monotonic()
        if not self.backend.healthy:
            return self.offline(user, sql, args)
        try:
            rows = self.backend.call(sql, args, started + self.backend.timeout)
        except Offline:
            return self.offline(user, sql, args)
        except RuntimeError as exc:
            say(f"database error: {exc}")
            raise BadRequest("database-error") from None
        value: dict[str, Any] = rows[0][0]
        if sql.startswith(PROVES_ENROLLED) and (value.get("enrolled") is True
                                                or value.get("result") in KNOWN_ENROLLED):
            self.backend.note_enrolled(user)  # offline answers know at once, not in 60 s
        if args and sql.startswith("SELECT twofa_api.enroll_begin") and "secret" in value:
            value["secret"] = totp.b32encode(bytes.fromhex(value["secret"]))
        if self.glass is not None and (
                (sql in LOGGED_IN and value.get("result") in ("ok", "recovery-code"))
                or ((value.get("result") == "not-enrolled" or value.get("enrolled") is False)
                    and self.glass.cached(user))):
            self.glass.want(user)  # fetched (or dropped) after this answer, off the login
        return value

    def offline(self, user: str, sql: str = "", args: tuple[Any, ...] = ()) -> dict[str, Any]:
        """The database cannot answer: say what the list knows; with break-glass, say
        the user has cached codes, and decide an ``offline_check`` here."""
        known = self.backend.enrolled
        reply = {"result": "offline", "enrolled": None if known is None else user in known}
        glass = self.glass
        if glass is None or not glass.has(user):
            return reply
        if sql != OFFLINE_CHECK:
            reply["recovery_codes"] = True
            return reply
        with self.backend.transition:
            if not self.backend.healthy:
                return glass.check(user, args[1])
        # back meanwhile (and told what happened offline): the database decides
        return self.answer(fastjson.dumps(
            {"op": "offline_check", "user": user, "answer": args[1]}).encode())

    def handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                if unixsock.peer_credentials(conn)[1] not in (0, self.allowed_uid):
                    # its line is read (and dropped) first: it gets the refusal, not
                    # a broken pipe when its write meets a closed socket
                    with contextlib.suppress(BadRequest):
                        read_line(conn, time.monotonic() + 1.0)
                    reply: dict[str, Any] = {"error": "not-allowed"}
                else:
                    try:
                        line = read_line(conn, time.monotonic() + REQUEST_SECONDS)
                        reply = self.answer(line)
                    except BadRequest as exc:
                        reply = {"error": str(exc)}
                conn.settimeout(1.0)
                conn.sendall((fastjson.dumps(reply) + "\n").encode("ascii"))
        except OSError:
            pass  # the client went away

    def _spawn(self) -> None:
        """One more accepting thread (``count`` held)."""
        self.threads += 1
        self.idle += 1
        threading.Thread(target=self._accepting, daemon=True, name="fleet-conn").start()

    def _accepting(self, stays: bool = False) -> None:
        """Accept and answer; a thread past ``SPARE`` idle ones ends (``stays``: never)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError as exc:  # out of file descriptors, say: try again soon
                say(f"accept: {exc}")
                time.sleep(0.1)
                continue
            with self.count:
                self.idle -= 1
                if self.idle == 0 and self.threads < MAX_CONNECTIONS:
                    self._spawn()  # the next connection finds a thread waiting
            try:
                self.handle(conn)
            except Exception as exc:  # a bug: this request fails, the thread serves on
                say(f"internal error answering a request: {type(exc).__name__}")
            with self.count:
                if not stays and self.idle >= SPARE:
                    self.threads -= 1
                    return
                self.idle += 1

    def serve_forever(self) -> None:
        with self.count:
            self.threads += 1  # this thread accepts too
            self.idle += 1
            self._spawn()
        self._accepting(stays=True)


def listen(path: str) -> socket.socket:
    """The daemon's socket at ``path``, mode 0600: root only (``unixsock``)."""
    return unixsock.listen(path, 0o600, MAX_CONNECTIONS)


def run(dsn: str, timeout: float, socket_path: str, cache: str | None = None,
        ready: Callable[[], None] | None = None, glass: BreakGlass | None = None) -> None:
    """Serve until killed."""
    try:
        import psycopg2  # noqa: F401 (fail here, clearly, not in a worker thread)
    except ImportError:
        from pam_twofa.errors import FleetError

        raise FleetError("python3-psycopg2 is not installed") from None
    backend = Backend(dsn, timeout, cache)
    # offline: deny: nothing is looked up at login; only what was used offline is reported
    server = Server(backend, socket_path, os.geteuid(),
                    glass=glass if glass and glass.enabled else None)
    if glass is not None:
        backend.report = lambda: glass.report(backend.call, timeout)
    backend.check()  # first connection before the first login, if the database is up
    threading.Thread(target=backend.health_loop, daemon=True, name="fleet-health").start()
    if glass is not None and glass.enabled:
        threading.Thread(target=glass.sync, daemon=True, name="fleet-offline", args=(
            backend.call, timeout, lambda: backend.healthy,
            lambda: backend.enrolled)).start()
    say(f"serving {socket_path} ({'online' if backend.healthy else 'offline'})")
    if ready is not None:
        ready()
    server.serve_forever()
