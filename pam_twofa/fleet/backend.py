"""The daemon's side of the database: calls with a deadline, health, enrolled names.

Every call runs on the caller's thread, on the one connection, and ends by its
deadline: a watchdog shuts the socket of a call that outlives it down (so the stuck
call returns) and the next call gets a fresh connection, opened on a thread of its
own so that connecting too waits no longer than the deadline. A broken connection
gets one fresh try. psycopg2 (python3-psycopg2) loads here only, in the daemon.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import sys
import threading
import time

from pam_twofa import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

HEALTH_SECONDS = 5.0  # between checks while healthy (1 s while not)
WATCH_SECONDS = 0.02  # how late the watchdog may notice a call past its deadline
CACHE_SECONDS = 60.0  # between refreshes of the enrolled list
OVERLAP_SECONDS = 30.0  # what each partial refresh reads again


class Offline(Exception):
    """The database did not answer in time (or refused the connection)."""


def say(message: str) -> None:
    """One line to stderr (the journal under systemd); never a code or a secret."""
    print(f"twofa-fleetd: {message}", file=sys.stderr, flush=True)


class Connector:
    """Opens the connection on a thread of its own, so a caller waits only until its
    deadline (libpq waits at least 2 s for a silent server). At most one attempt runs:
    a caller that comes while one is under way waits for it, and a connection that
    arrives after its caller gave up serves the next call."""

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.thread: threading.Thread | None = None
        self.box: list[Any] = []

    def _run(self, box: list[Any]) -> None:
        import psycopg2

        try:
            conn = psycopg2.connect(
                self.dsn, connect_timeout=max(2, int(self.connect_timeout)),
                application_name="twofa-fleetd", keepalives=1, keepalives_idle=10,
                keepalives_interval=5, keepalives_count=3)
            conn.autocommit = True
            box.append(conn)
        except Exception as exc:  # psycopg2.Error, or a bug: no connection
            box.append(exc)

    def connect(self, deadline: float) -> Any:
        """A new connection by ``deadline``, else ``Offline`` (callers take turns:
        only the holder of ``Backend.use`` calls this)."""
        if self.thread is None:
            self.box = []
            self.thread = threading.Thread(target=self._run, args=(self.box,),
                                           daemon=True, name="fleet-connect")
            self.thread.start()
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if self.thread.is_alive():
            raise Offline("no connection within the timeout")
        self.thread = None
        got = self.box[0]
        if isinstance(got, Exception):
            raise Offline(str(got).strip().split("\n")[0])
        return got


class FairLock:
    """A lock handed over in arrival order (a ``threading.Lock`` lets a newcomer barge
    in: in a burst one login could wait past its deadline while later ones pass)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        if gate.acquire(timeout=max(0.0, timeout)):
            return True  # handed over by release
        with self._mutex:
            if gate in self._waiters:
                self._waiters.remove(gate)
                return False
        return True  # handed over just as the wait ended

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()  # still held: by the next in line
            else:
                self._held = False


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def _shutdown(conn: Any) -> None:
    """Shut the connection's socket down: a call hanging on it returns at once."""
    with contextlib.suppress(Exception):
        dup = socket.socket(fileno=os.dup(conn.fileno()))
        dup.shutdown(socket.SHUT_RDWR)
        dup.close()


class Backend:
    """The database as the daemon sees it: calls with a deadline, health, enrolled list.

    A call runs on the caller's own thread (no hand-off: that cost a login ~0.3 ms
    per request) on the one connection, which it holds exclusively; callers queue for
    it until their deadline. The watchdog thread shuts the connection's socket down
    when a call outlives its deadline (a hung server never answers), so the call
    returns, the connection is dropped, and the next call opens a fresh one.
    """

    def __init__(self, dsn: str, timeout: float, cache: str | None = None) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.cache = cache
        self.cache_lock = threading.Lock()  # the enrolled list and its file
        self.use = FairLock()  # the connection, one call at a time, in turn
        self.conn: Any = None
        self.connector = Connector(dsn, timeout)
        self.busy_lock = threading.Lock()  # guards busy, shared with the watchdog
        self.busy: tuple[float, Any] | None = None  # (deadline, connection) of a call
        self.calling = threading.Event()  # a call runs: the watchdog watches
        self.healthy: bool | None = None  # None: not known yet (the first check says)
        self.enrolled: frozenset[str] | None = self._read_cache()
        self.cache_at = 0.0
        self.since: float | None = None  # the database's clock at the last refresh
        self.stopping = threading.Event()
        # Offline break-glass (fleet.offline): what this host did offline is reported
        # before the database is marked reachable; local checks hold ``transition``.
        self.transition = threading.Lock()
        self.report: Callable[[], None] | None = None
        self.recheck = threading.Event()  # wakes the health loop early
        threading.Thread(target=self._watch, daemon=True, name="fleet-watchdog").start()

    def call(self, sql: str, args: tuple[Any, ...], deadline: float) -> list[Any]:
        """Rows of ``sql``; ``Offline`` when the database cannot answer by ``deadline``
        (``RuntimeError``: the database refused the call)."""
        left = deadline - time.monotonic()
        if left <= 0 or not self.use.acquire(left):
            # busy past our deadline: offline for this call; whether the database
            # is down is for the call that holds the connection (or the health check)
            raise Offline("timeout")
        if time.monotonic() > deadline:  # our turn came too late
            self.use.release()
            raise Offline("timeout")
        try:
            return self._call(sql, args, deadline)
        except Offline as exc:
            self.mark(False, str(exc))
            raise
        finally:
            self.use.release()

    def _call(self, sql: str, args: tuple[Any, ...], deadline: float) -> list[Any]:
        import psycopg2

        for attempt in (1, 2):
            fresh = self.conn is None or self.conn.closed
            if fresh:
                self.conn = self.connector.connect(deadline)
            conn = self.conn
            with self.busy_lock:
                self.busy = (deadline, conn)
                self.calling.set()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, args)
                    rows: list[Any] = cur.fetchall()
                return rows
            except psycopg2.OperationalError as exc:
                _close(conn)
                self.conn = None
                # A connection that broke since its last use (a restart, a failover)
                # gets one fresh try. If the lost call had run, the retry can only be
                # refused (a replay) or count one failure more: never let in.
                if time.monotonic() > deadline:
                    raise Offline("no answer within the timeout") from None
                if fresh or attempt == 2:
                    raise Offline(str(exc).strip().split("\n")[0]) from None
            except psycopg2.Error as exc:
                raise RuntimeError(f"{exc.pgcode or ''} {str(exc).strip()}".strip()) from None
            finally:
                with self.busy_lock:
                    self.busy = None
        raise AssertionError("unreachable")

    def _watch(self) -> None:
        """While a call runs, look every WATCH_SECONDS whether it outlived its deadline."""
        while not self.stopping.is_set():
            self.calling.wait()
            time.sleep(WATCH_SECONDS)
            with self.busy_lock:
                if self.busy is None:
                    self.calling.clear()  # idle: sleep until the next call
                elif time.monotonic() > self.busy[0]:
                    _shutdown(self.busy[1])
                    self.busy = None

    def mark(self, healthy: bool, why: str = "") -> None:
        """Remember the database's state; log each change (and the first state)."""
        if healthy != self.healthy:
            say("database reachable" if healthy else f"database offline: {why}")
            if self.healthy and not healthy:
                self.recheck.set()  # a call that was only slow: online again at once
        self.healthy = healthy

    def check(self) -> bool:
        """One health check (and the enrolled list when due)."""
        deadline = time.monotonic() + self.timeout
        try:
            self.call("SELECT twofa_api.hello()", (), deadline)
            if self.healthy is not True and self.report is not None:
                with self.transition:  # no local check between the report and online
                    self.report()
                    self.mark(True)
            else:
                self.mark(True)
            self._refresh()
            return True
        except (Offline, RuntimeError):
            return False

    def _refresh(self) -> None:
        """The enrolled list: whole every ``CACHE_SECONDS`` (names that left go),
        else the enrollments since the last call (``OVERLAP_SECONDS`` back, for
        transactions that committed after an earlier call read the clock)."""
        full = self.enrolled is None or self.since is None or (
            time.monotonic() - self.cache_at >= CACHE_SECONDS)
        since = None if full or self.since is None else self.since - OVERLAP_SECONDS
        rows = self.call("SELECT twofa_api.enrolled_since(%s)", (since,),
                         time.monotonic() + self.timeout)
        got = rows[0][0]
        names = frozenset(n for n in got.get("names", []) if type(n) is str)
        with self.cache_lock:
            known = self.enrolled
            if full or known is None:
                self.enrolled = names
                self.cache_at = time.monotonic()
            elif names - known:
                self.enrolled = known | names
            if self.enrolled != known:
                self._write_cache()
            now = got.get("now")
            self.since = float(now) if isinstance(now, (int, float)) else None

    def health_loop(self) -> None:
        while not self.stopping.is_set():
            healthy = self.check()
            self.recheck.wait(HEALTH_SECONDS if healthy else 1.0)
            self.recheck.clear()

    def note_enrolled(self, user: str) -> None:
        """``user`` is enrolled (an answer said so): offline answers say so from now
        on, not only after the next refresh of the list."""
        with self.cache_lock:
            known = self.enrolled
            if known is not None and user not in known:
                self.enrolled = known | {user}
                self._write_cache()

    def _read_cache(self) -> frozenset[str] | None:
        if not self.cache:
            return None
        try:
            with open(self.cache, "rb") as f:
                names = fastjson.loads(f.read())
            return frozenset(n for n in names if type(n) is str)
        except (OSError, ValueError, TypeError):
            return None

    def _write_cache(self) -> None:
        if not self.cache or self.enrolled is None:
            return
        from pam_twofa import fsutil

        try:
            fsutil.atomic_write(self.cache, fastjson.dumps(sorted(self.enrolled)).encode())
        except OSError as exc:
            say(f"cannot write {self.cache}: {exc}")
