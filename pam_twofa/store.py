"""Where user state lives: one small interface, one file-per-user backend.

``Store`` is what the core and the CLIs use; ``FileStore`` keeps one JSON file
per user under ``state_dir/users`` (0600 in 0700 directories, root-owned). A
shared SQL backend for fleets can implement the same four methods.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, contextmanager

from pam_twofa import fastjson, fsutil
from pam_twofa.errors import CorruptState, InvalidUserName
from pam_twofa.state import UserState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from pam_twofa.clock import Clock
    from pam_twofa.paths import Paths

# Every file made from a name (the longest is the temp file ".NAME.json.tmp") must
# fit NAME_MAX (255 bytes), with room to spare; a name whose file cannot exist would
# fail as an internal error (which failmode safe turns into PAM_IGNORE).
MAX_NAME_BYTES = 228


def validate_user_name(name: str) -> str:
    """Return ``name`` if it can safely become a file name, else raise.

    Refused: empty, over ``MAX_NAME_BYTES`` (228) bytes, ``/``, NUL or any control
    character, and a leading dot (``.``/``..`` and our own temp files).
    """
    if not isinstance(name, str) or not name:
        raise InvalidUserName("empty user name")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidUserName("user name is not valid UTF-8") from None
    if len(raw) > MAX_NAME_BYTES:
        raise InvalidUserName(f"user name longer than {MAX_NAME_BYTES} bytes")
    if "/" in name or name.startswith("."):
        raise InvalidUserName("user name with '/' or a leading '.'")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InvalidUserName("user name with a control character")
    return name


class Store:
    """Per-user state: read without a lock, change under a per-user lock.

    A plain base rather than an ABC: ABCMeta costs ~0.1 ms on every login.
    """

    def load(self, user: str) -> UserState | None:
        """The committed state of ``user``, or None when there is none."""
        raise NotImplementedError

    def update(self, user: str) -> AbstractContextManager[UserState]:
        """Lock ``user``, yield its state (new if none), commit it if changed."""
        raise NotImplementedError

    def delete(self, user: str) -> bool:
        """Remove ``user``'s state; True when there was some."""
        raise NotImplementedError

    def users(self) -> list[str]:
        """Every user with state, sorted."""
        raise NotImplementedError


class FileStore(Store):
    """One JSON file per user, written atomically under an flock."""

    def __init__(self, paths: Paths, clock: Clock, lock_timeout: float = 10.0) -> None:
        self.paths = paths
        self.clock = clock
        self.lock_timeout = lock_timeout
        self._checked = False

    def _dirs(self) -> None:
        if not self._checked:
            fsutil.ensure_dir(self.paths.state_dir)
            fsutil.ensure_dir(self.paths.users_dir, "users directory")
            fsutil.ensure_dir(self.paths.locks_dir, "locks directory")
            self._checked = True

    def _file(self, user: str) -> str:
        return f"{self.paths.users_dir}/{validate_user_name(user)}.json"

    def load(self, user: str) -> UserState | None:
        path = self._file(user)
        self._dirs()
        data = fsutil.read_file(path)
        if data is None:
            return None
        try:
            plain = fastjson.loads(data)
        except ValueError:
            raise CorruptState(f"state file {path} is not valid JSON") from None
        return UserState.from_plain(user, plain)

    @contextmanager
    def update(self, user: str) -> Iterator[UserState]:
        path = self._file(user)
        self._dirs()
        with fsutil.FileLock(f"{self.paths.locks_dir}/{user}.lock", self.clock, self.lock_timeout):
            state = self.load(user)
            # Text, not the plain dict: that shares nested lists/dicts (devices,
            # pending) with the state, so changing one in place would go unseen.
            before = fastjson.dumps(state.to_plain()) if state is not None else None
            if state is None:
                state = UserState(user)
            yield state
            after = state.to_plain()
            text = fastjson.dumps(after)
            if text != before and (before is not None or after != UserState(user).to_plain()):
                fsutil.atomic_write(path, locked=True, data=text.encode() + b"\n")

    def delete(self, user: str) -> bool:
        path = self._file(user)
        self._dirs()
        with fsutil.FileLock(f"{self.paths.locks_dir}/{user}.lock", self.clock, self.lock_timeout):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            fsutil.fsync_dir(self.paths.users_dir)
            return True

    def users(self) -> list[str]:
        self._dirs()
        names = []
        for entry in os.listdir(self.paths.users_dir):
            if entry.endswith(".json") and not entry.startswith("."):
                names.append(entry[: -len(".json")])
        return sorted(names)
