"""Offline break-glass in ``twofa-fleetd``: recovery codes checked on this host while
the fleet database is unreachable (``store.postgresql.offline: recovery-codes``).

The database keeps each recovery code as a MAC under a pepper only it knows, and,
while break-glass is on fleet-wide, a bcrypt hash (cost 10) beside it. After a
user's successful code check on this host the daemon fetches that user's unused
hashes (``twofa_api.offline_codes``: only for users who logged in on this host)
and keeps them here, one root-only 0600 file per user in a 0700 directory:
``{"codes": [...], "used": [...], "failures": N, "locked_until": T}``. No code is
ever written.

While the database is unreachable an ``offline_check`` is decided here: a code
matching a hash is consumed (moved to ``used``), a wrong answer is counted, and
``max_failures`` wrong answers end the user's tries on this host until the database
answers again. When it does, ``report`` sends the used hashes (deleted fleet-wide)
and the failures (counted there) before any other request reaches it.

Limits: a host holding the hashes can guess offline (bcrypt cost 10, ~50 ms a
guess on one core); two hosts offline at once may each accept the same code once.
"""

from __future__ import annotations

import ctypes
import hmac
import os
import queue
import re
import threading
import time

from pam_twofa import fastjson, fsutil
from pam_twofa.errors import TwofaError
from pam_twofa.fleet.backend import say
from pam_twofa.login import validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Call = Callable[[str, tuple[Any, ...], float], list[Any]]

BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
RECOVERY_CODE = re.compile(r"[0-9]{8,10}")  # as check_code in the database takes them
MAX_CODES = 64
SYNC_SECONDS = 60.0  # between re-fetches of the cached users' hashes
CRYPT_DATA = 32768  # sizeof(struct crypt_data) in libxcrypt


class Bcrypt:
    """libxcrypt's ``crypt_rn`` through ctypes: the stdlib ``crypt`` module is
    deprecated (gone in Python 3.13); ctypes releases the GIL while it hashes."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libcrypt.so.1")
        self.fn = lib.crypt_rn
        self.fn.restype = ctypes.c_char_p
        self.fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]

    def matches(self, stored: str, code: str) -> bool:
        """``code`` hashes to ``stored`` (a bcrypt string); constant-time compare."""
        if not BCRYPT.fullmatch(stored):
            return False  # crypt would take other settings (DES...): only bcrypt here
        data = ctypes.create_string_buffer(CRYPT_DATA)
        out = self.fn(code.encode("ascii"), stored.encode("ascii"), data, CRYPT_DATA)
        return out is not None and hmac.compare_digest(out, stored.encode("ascii"))


def normalize(answer: str) -> str:
    """What the database compares: spaces and dashes dropped."""
    return answer.strip().replace(" ", "").replace("-", "")


class BreakGlass:
    """The cache directory and the rules on it. ``enabled`` False (``offline: deny``):
    nothing is cached (codes left from before are dropped at start), only what is
    still to be reported is kept and sent. File changes hold ``lock``."""

    def __init__(self, directory: str, enabled: bool, max_failures: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = directory
        self.clock = clock
        self.enabled = enabled
        self.max_failures = max_failures
        self.lock = threading.RLock()
        self.wanted: queue.Queue[str] = queue.Queue()
        self.crypt = Bcrypt() if enabled else None
        if enabled:
            try:
                fsutil.ensure_dir(directory, "offline cache directory")
            except TwofaError as exc:  # no cache: break-glass off, as with offline: deny
                say(f"break-glass off: {exc}")
                self.enabled = False
        elif os.path.isdir(directory):
            for user in self.users():
                self.store(user, [])  # offline: deny: drop the hashes, report what is due

    # --- the files ---

    def path(self, user: str) -> str:
        return f"{self.dir}/{validate_user_name(user)}.json"

    def users(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        users = []
        for name in sorted(names):
            if name.endswith(".json") and not name.startswith("."):
                try:
                    users.append(validate_user_name(name[:-5]))
                except TwofaError:
                    continue  # not one of ours
        return users

    def read(self, user: str) -> dict[str, Any]:
        empty: dict[str, Any] = {"codes": [], "used": [], "failures": 0, "locked_until": None}
        try:
            raw = fsutil.read_file(self.path(user), "offline cache file")
            entry = fastjson.loads(raw) if raw is not None else empty
        except Exception as exc:  # unreadable or planted: nothing cached for this user
            say(f"offline cache of {user!r} ignored: {exc}")
            return empty
        if type(entry) is not dict:
            return empty
        codes, used, failures = entry.get("codes"), entry.get("used"), entry.get("failures")
        until = entry.get("locked_until")
        return {"codes": [c for c in codes if type(c) is str][:MAX_CODES]
                if type(codes) is list else [],
                "used": [c for c in used if type(c) is str] if type(used) is list else [],
                "failures": failures if type(failures) is int and failures > 0 else 0,
                "locked_until": until if type(until) in (int, float) else None}

    def write(self, user: str, entry: dict[str, Any]) -> None:
        path = self.path(user)
        try:
            if entry["codes"] or entry["used"] or entry["failures"]:
                fsutil.ensure_dir(self.dir, "offline cache directory")
                fsutil.atomic_write(path, fastjson.dumps(entry).encode("ascii"))
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except Exception as exc:
            say(f"cannot write the offline cache of {user!r}: {exc}")

    # --- online: what the database says ---

    def store(self, user: str, codes: list[str], locked_until: object = None) -> None:
        """The user's unused hashes as the database has them now (none: forgotten),
        and the user's lock there (honoured offline too)."""
        with self.lock:
            entry = self.read(user)
            entry["locked_until"] = locked_until if type(locked_until) in (int, float) else None
            keep = [c for c in codes if BCRYPT.fullmatch(c)] if self.enabled else []
            entry["codes"] = [c for c in keep if c not in entry["used"]][:MAX_CODES]
            self.write(user, entry)

    def want(self, user: str) -> None:
        """Fetch ``user``'s hashes soon, on the sync thread (after the login's answer)."""
        if self.enabled:
            self.wanted.put(user)

    def fetch(self, call: Call, timeout: float, user: str) -> None:
        rows = call("SELECT twofa_api.offline_codes(%s)", (user,), time.monotonic() + timeout)
        got: dict[str, Any] = rows[0][0]
        codes = got.get("codes") if got.get("result") == "ok" else None
        self.store(user, [c for c in codes if type(c) is str] if type(codes) is list else [],
                   got.get("locked_until"))

    def sync(self, call: Call, timeout: float, healthy: Callable[[], bool | None],
             enrolled: Callable[[], frozenset[str] | None]) -> None:
        """The sync thread: fetch wanted users; every ``SYNC_SECONDS`` re-fetch the
        cached ones (codes used elsewhere or replaced, users reset or suspended)."""
        last = time.monotonic()
        while True:
            try:
                users = [self.wanted.get(timeout=SYNC_SECONDS)]
            except queue.Empty:
                users = []
            if time.monotonic() - last >= SYNC_SECONDS:
                last = time.monotonic()
                known = enrolled()
                for user in self.users():
                    if known is not None and user not in known and healthy():
                        self.store(user, [])  # not enrolled (reset): forget at once
                    else:
                        users.append(user)
            for user in dict.fromkeys(users):
                if not healthy():
                    break  # offline: keep what we have
                try:
                    self.fetch(call, timeout, user)
                except Exception as exc:  # Offline, a database error: the thread lives on
                    say(f"offline codes of {user!r} not fetched: {exc}")

    # --- offline ---

    def cached(self, user: str) -> bool:
        return os.path.lexists(self.path(user))

    def has(self, user: str) -> bool:
        """Whether ``user`` can use a recovery code here while offline."""
        return self.enabled and bool(self.read(user)["codes"])

    def check(self, user: str, answer: str) -> dict[str, Any]:
        """The database's answer shapes, decided here, with ``offline``: true."""
        with self.lock:
            entry = self.read(user)
            until = entry["locked_until"]
            if until is not None and until > self.clock():  # locked in the database
                return {"result": "locked", "locked_until": until, "offline": True}
            if entry["failures"] >= self.max_failures:  # locked here until it answers
                return {"result": "locked", "locked_until": None, "offline": True}
            code = normalize(answer)
            if code == "":
                return {"result": "no-answer", "offline": True}
            if not RECOVERY_CODE.fullmatch(code) or self.crypt is None:
                # never a recovery code (a TOTP code out of habit?): no guess, not counted
                return {"result": "bad-code", "failures": entry["failures"], "offline": True}
            for stored in entry["codes"]:
                if self.crypt.matches(stored, code):
                    entry["codes"].remove(stored)
                    entry["used"].append(stored)
                    entry["failures"] = 0  # a success ends the count, as online
                    self.write(user, entry)
                    return {"result": "recovery-code", "left": len(entry["codes"]),
                            "offline": True}
            entry["failures"] += 1
            self.write(user, entry)
            return {"result": "bad-code", "failures": entry["failures"], "offline": True,
                    "offline_locked": entry["failures"] >= self.max_failures}

    def report(self, call: Call, timeout: float) -> None:
        """Tell the database what happened offline (each user's used hashes and
        failures); ``Offline``/``RuntimeError`` when it cannot hear it all."""
        for user in self.users():
            with self.lock:
                entry = self.read(user)
                used, failures = list(entry["used"]), entry["failures"]
                if not used and not failures:
                    continue
                rows = call("SELECT twofa_api.offline_report(%s, %s, %s)",
                            (user, used, failures), time.monotonic() + timeout)
                got = rows[0][0]
                say(f"reported offline use of {user!r}: {len(used)} recovery code(s), "
                    f"{failures} wrong answer(s): {got.get('result')}")
                entry["used"], entry["failures"] = [], 0
                until = got.get("locked_until")
                entry["locked_until"] = until if type(until) in (int, float) else None
                if got.get("result") != "ok" or got.get("suspended") is True:
                    entry["codes"] = []  # reset or suspended: nothing to use here
                self.write(user, entry)
