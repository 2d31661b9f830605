"""Files root touches in places others may control: read, create, trust a path.

Root reads a user's file (a google-authenticator import), writes a secret to a
path an admin typed (``twofa-admin enroll --png``), and reads credentials or
runs a program named in the policy (``smtp.password_file``, ``token_command``).
Each is a way to make root read, write or run something else:

- ``read_owned``: a symlink (to /etc/shadow), a FIFO (root blocks for ever), a
  device, or someone else's file are refused; the file is checked with
  ``O_PATH`` first, so nothing but a regular file is ever opened;
- ``create_new``: only a new file (``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600)
  under parents that are not symbolic links, so a file planted first stays
  unused and root never writes through a symlink;
- ``check_parents``: every directory from the file up to ``/`` is owned by
  root or the file's owner and not writable by group or others (a sticky,
  root-owned one such as /tmp excepted): otherwise someone else can swap it.
"""

from __future__ import annotations

import errno
import os
import stat

from pam_twofa.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    ErrorType = Callable[[str], Exception]


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link"
    return exc.strerror or str(exc)


def read_owned(path: str, owner: int, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of regular file ``path`` owned by ``owner`` and not writable by
    group or others; at most ``max_bytes``. Anything else is a ``UsageError``."""
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        probe = os.open(path, os.O_PATH | flags)  # opens nothing: no FIFO/device side effect
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {_describe(exc)}") from None
    try:
        first = os.fstat(probe)
        _check_owned_file(first, path, owner, max_bytes, what)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | flags)
        except OSError as exc:
            raise UsageError(f"cannot read {what} {path}: {_describe(exc)}") from None
    finally:
        os.close(probe)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (first.st_dev, first.st_ino):
            raise UsageError(f"{what} {path} was replaced while being read")
        _check_owned_file(st, path, owner, max_bytes, what)
        data = b""
        while len(data) <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {_describe(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UsageError(f"{what} {path} is over {max_bytes} bytes")
    return data


def _check_owned_file(st: os.stat_result, path: str, owner: int, max_bytes: int,
                      what: str) -> None:
    if stat.S_ISLNK(st.st_mode):  # O_PATH|O_NOFOLLOW opens the link itself
        raise UsageError(f"{what} {path} is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {path} is not a regular file")
    if st.st_uid != owner:
        raise UsageError(f"{what} {path} is owned by uid {st.st_uid}, not by uid {owner}")
    if st.st_mode & 0o022:
        raise UsageError(f"{what} {path} is writable by group or others "
                         f"(mode {st.st_mode & 0o777:o})")
    if st.st_size > max_bytes:
        raise UsageError(f"{what} {path} is over {max_bytes} bytes")


def create_new(path: str, mode: int = 0o600, what: str = "file") -> int:
    """A write fd for a new regular file at ``path``; never an existing file, never
    through a symlink (final component or parent). Raises ``UsageError``.

    The directories are walked from ``/`` with ``openat(O_NOFOLLOW)``, so one swapped
    for a link after a check cannot redirect the write.
    """
    full = os.path.abspath(path)
    parent = _open_dir_nofollow(os.path.dirname(full), what, path)
    try:
        fd = os.open(os.path.basename(full), os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY, mode,
                     dir_fd=parent)
    except FileExistsError:
        raise UsageError(f"cannot write {what} {path}: it exists already (it is never "
                         "overwritten: remove it or pick a new name)") from None
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {_describe(exc)}") from None
    finally:
        os.close(parent)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise UsageError(f"cannot write {what} {path}: not a new regular file")
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_dir_nofollow(directory: str, what: str, path: str) -> int:
    """An fd of ``directory`` (absolute), reached without following any symlink."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    current = "/"
    for part in directory.strip("/").split("/"):
        if not part:
            continue
        current = os.path.join(current, part)
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(current):
                raise UsageError(f"cannot write {what} {path}: {current} is a symbolic "
                                 "link (give the real directory)") from None
            raise UsageError(f"cannot write {what} {path}: {current}: "
                             f"{_describe(exc)}") from None
        os.close(fd)
        fd = child
    return fd


def check_parents(path: str, owner: int, what: str,
                  error: ErrorType = UsageError) -> None:
    """Refuse ``path`` unless every directory above it, up to ``/``, is owned by root or
    ``owner`` and not writable by group or others (root-owned sticky ones excepted).

    Symbolic links on the way are followed as the kernel would, and each directory
    they lead to is checked too (a link is only as safe as where it points).
    """
    seen: set[str] = set()
    pending = [os.path.abspath(path)]
    while pending:
        current = pending.pop()
        directory = os.path.dirname(current)
        while True:
            if directory in seen:
                break
            seen.add(directory)
            try:
                st = os.lstat(directory)
            except OSError as exc:
                raise error(f"{what} {path}: {directory}: {_describe(exc)}") from None
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(directory)
                pending.append(os.path.normpath(
                    os.path.join(os.path.dirname(directory), target, "x")))
            elif not stat.S_ISDIR(st.st_mode):
                raise error(f"{what} {path}: {directory} is not a directory")
            _check_dir(st, directory, owner, what, path, error)
            if directory == "/":
                break
            directory = os.path.dirname(directory)


def _check_dir(st: os.stat_result, directory: str, owner: int, what: str, path: str,
               error: ErrorType) -> None:
    if stat.S_ISLNK(st.st_mode):
        if st.st_uid not in (0, owner):
            raise error(f"{what} {path}: the link {directory} is owned by uid {st.st_uid}")
        return
    if st.st_uid not in (0, owner):
        raise error(f"{what} {path}: the directory {directory} is owned by uid {st.st_uid} "
                    "(it must be root's or the file owner's)")
    if st.st_mode & 0o022 and not (st.st_mode & stat.S_ISVTX and st.st_uid == 0):
        raise error(f"{what} {path}: the directory {directory} is writable by group or "
                    f"others (mode {st.st_mode & 0o7777:o})")
