"""The daemon's side of the database: calls with a deadline, health, enrolled names.

Every call runs on a worker thread that owns the connection; the caller waits at
most until its deadline. A call that does not finish in time abandons the worker:
its socket is shut down (so the stuck call returns), its thread ends, and the next
call gets a fresh worker and connection. A broken connection gets one fresh try.
psycopg2 (python3-psycopg2) loads here only, in the daemon.
"""

from __future__ import annotations

import contextlib
import os
import queue
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
CACHE_SECONDS = 60.0  # between refreshes of the enrolled list


class Offline(Exception):
    """The database did not answer in time (or refused the connection)."""


def say(message: str) -> None:
    """One line to stderr (the journal under systemd); never a code or a secret."""
    print(f"twofa-fleetd: {message}", file=sys.stderr, flush=True)


class Worker:
    """One thread, one connection, one call at a time; abandoned when a call hangs."""

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.jobs: queue.Queue[Any] = queue.Queue()  # (sql, args, deadline, out, done)
        self.conn: Any = None
        self.abandoned = False  # set when a call hung: run nothing more on it
        self.thread = threading.Thread(target=self._run, daemon=True, name="fleet-db")
        self.thread.start()

    def _connect(self) -> Any:
        import psycopg2

        conn = psycopg2.connect(self.dsn, connect_timeout=max(2, int(self.connect_timeout)),
                                application_name="twofa-fleetd", keepalives=1,
                                keepalives_idle=10, keepalives_interval=5,
                                keepalives_count=3)
        conn.autocommit = True
        return conn

    def _run(self) -> None:
        import psycopg2

        while True:
            job = self.jobs.get()
            if job is None or self.abandoned:
                self._finish(job)
                return
            sql, args, deadline, out, done = job
            if time.monotonic() > deadline:
                out.append(("offline", "given up"))  # nobody waits: never run it late
                done.set()
                continue
            for attempt in (1, 2):
                fresh = self.conn is None or self.conn.closed
                try:
                    if fresh:
                        self.conn = self._connect()
                    with self.conn.cursor() as cur:
                        cur.execute(sql, args)
                        out.append(("ok", cur.fetchall()))
                    break
                except psycopg2.OperationalError as exc:
                    self._close()
                    # A connection that broke since its last use (a restart, a failover)
                    # gets one fresh try. If the lost call had run, the retry can only
                    # be refused (a replay) or count one failure more: never let in.
                    if fresh or attempt == 2 or time.monotonic() > deadline:
                        out.append(("offline", str(exc).strip().split("\n")[0]))
                        break
                except psycopg2.Error as exc:
                    out.append(("error", f"{exc.pgcode or ''} {str(exc).strip()}".strip()))
                    break
                except Exception as exc:  # a bug: this call fails, the worker lives on
                    out.append(("error", f"{type(exc).__name__}: {exc}"))
                    break
            done.set()

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None

    def _finish(self, job: Any) -> None:
        """Abandoned: answer what is queued as offline, close, let the thread end."""
        self._close()
        while job is not None:
            job[3].append(("offline", "abandoned"))
            job[4].set()
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                job = None

    def abandon(self) -> None:
        """Stop using this worker: shut its socket down so a hung call returns, and
        wake the thread so it ends (no thread or connection is left behind)."""
        self.abandoned = True
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(Exception):
                dup = socket.socket(fileno=os.dup(conn.fileno()))
                dup.shutdown(socket.SHUT_RDWR)
                dup.close()
        self.jobs.put(None)

    def call(self, sql: str, args: tuple[Any, ...], timeout: float) -> list[Any]:
        out: list[Any] = []
        done = threading.Event()
        self.jobs.put((sql, args, time.monotonic() + timeout, out, done))
        if not done.wait(timeout):
            raise TimeoutError
        kind, value = out[0]
        if kind == "offline":
            raise Offline(value)
        if kind == "error":
            raise RuntimeError(value)
        rows: list[Any] = value
        return rows


class Backend:
    """The database as the daemon sees it: calls with a deadline, health, enrolled list."""

    def __init__(self, dsn: str, timeout: float, cache: str | None = None) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.cache = cache
        self.lock = threading.Lock()
        self.cache_lock = threading.Lock()  # the enrolled list and its file
        self.worker = Worker(dsn, timeout)
        self.healthy: bool | None = None  # None: not known yet (the first check says)
        self.enrolled: frozenset[str] | None = self._read_cache()
        self.cache_at = 0.0
        self.stopping = threading.Event()
        # Offline break-glass (fleet.offline): what this host did offline is reported
        # before the database is marked reachable; local checks hold ``transition``.
        self.transition = threading.Lock()
        self.report: Callable[[], None] | None = None

    def call(self, sql: str, args: tuple[Any, ...], deadline: float) -> list[Any]:
        """Rows of ``sql``; ``Offline`` when the database cannot answer by ``deadline``."""
        with self.lock:
            worker = self.worker
        left = deadline - time.monotonic()
        if left <= 0:
            raise Offline("no time left")
        try:
            return worker.call(sql, args, left)
        except TimeoutError:
            with self.lock:
                if self.worker is worker:  # a hung server never answers: start afresh
                    self.worker = Worker(self.dsn, self.timeout)
                    worker.abandon()
            self.mark(False, "no answer within the timeout")
            raise Offline("timeout") from None
        except Offline as exc:
            self.mark(False, str(exc))
            raise

    def mark(self, healthy: bool, why: str = "") -> None:
        """Remember the database's state; log each change (and the first state)."""
        if healthy != self.healthy:
            say("database reachable" if healthy else f"database offline: {why}")
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
            if time.monotonic() - self.cache_at >= CACHE_SECONDS or self.enrolled is None:
                rows = self.call("SELECT twofa_api.enrolled_users()", (),
                                 time.monotonic() + self.timeout)
                with self.cache_lock:
                    self.enrolled = frozenset(r[0] for r in rows)
                    self.cache_at = time.monotonic()
                    self._write_cache()
            return True
        except (Offline, RuntimeError):
            return False

    def health_loop(self) -> None:
        while not self.stopping.is_set():
            healthy = self.check()
            self.stopping.wait(HEALTH_SECONDS if healthy else 1.0)

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
