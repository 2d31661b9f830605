"""Safe file primitives: owner/mode checks, no-follow opens, atomic writes, flock.

State must never be lost, corrupted, raced or planted:
- a directory or file not owned by the effective uid, or open to group/others,
  is refused (tests run the module as a non-root uid, so "owner" is the euid);
- files are opened with O_NOFOLLOW, so a planted symlink is never followed;
- writes go to a temp file that is fsynced, renamed over the target, and the
  directory fsynced: a crash leaves the old or the new file, never a torn one;
- writers hold an flock on a separate lock file from read to write (the data
  file is replaced by rename, so it cannot carry the lock itself).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat

from pam_twofa.errors import InsecureState, LockTimeout, StateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

    from pam_twofa.login import Clock


def check_owner_mode(st: os.stat_result, what: str, path: str, *, dir_: bool) -> None:
    """Refuse a file or directory of the wrong type, owner or mode."""
    if dir_ and not stat.S_ISDIR(st.st_mode):
        raise InsecureState(f"{what} {path} is not a directory")
    if not dir_ and not stat.S_ISREG(st.st_mode):
        raise InsecureState(f"{what} {path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise InsecureState(f"{what} {path} is owned by uid {st.st_uid}, not {os.geteuid()}")
    if st.st_mode & 0o077:
        raise InsecureState(f"{what} {path} has mode {st.st_mode & 0o777:o}: group/other access")


def ensure_dir(path: str, what: str = "state directory", create: bool = True) -> None:
    """Make sure ``path`` is our own 0700 directory, creating it when allowed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            raise StateError(f"{what} {path} does not exist") from None
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateError(f"cannot create {what} {path}: {exc.strerror}") from None
        st = os.lstat(path)
    except OSError as exc:
        raise StateError(f"cannot use {what} {path}: {exc.strerror}") from None
    check_owner_mode(st, what, path, dir_=True)


def read_file(path: str, what: str = "state file") -> bytes | None:
    """The contents of our own 0600 file, or None when it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: a symlink where a file should be
            raise InsecureState(f"{what} {path} is a symbolic link") from None
        raise StateError(f"cannot open {what} {path}: {exc.strerror}") from None
    try:
        check_owner_mode(os.fstat(fd), what, path, dir_=False)
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise StateError(f"cannot read {what} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, locked: bool = False) -> None:
    """Replace ``path`` with ``data`` (mode 0600) so a crash never leaves it torn.

    ``locked``: the caller holds the file's lock, so no other writer can be
    using the temp file: it gets one fixed name, and the leftover of a writer
    killed mid-write is simply overwritten, instead of piling up.
    """
    directory, _, name = path.rpartition("/")
    if locked:
        tmp = f"{directory}/.{name}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    else:
        tmp = f"{directory}/.{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(directory or ".")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateError(f"cannot write {path}: {exc.strerror}") from None


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class FileLock:
    """An exclusive flock on ``path``, waited for at most ``timeout`` seconds.

    The wait polls with LOCK_NB: a login must never hang behind a stuck process.
    """

    def __init__(self, path: str, clock: Clock, timeout: float = 10.0) -> None:
        self.path = path
        self.clock = clock
        self.timeout = timeout
        self._fd = -1

    def __enter__(self) -> FileLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open lock {self.path}: {exc.strerror}") from None
        deadline = self.clock.now() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self.clock.now() >= deadline:
                    os.close(fd)
                    message = f"lock {self.path} held for over {self.timeout:g} s"
                    raise LockTimeout(message) from None
                self.clock.sleep(delay)
                delay = min(delay * 2, 0.05)
            except OSError as exc:
                os.close(fd)
                raise StateError(f"cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1
