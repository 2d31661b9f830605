"""One PAM service file, read the way Linux-PAM reads it, written back byte for byte.

Linux-PAM (``_pam_assemble_line`` and ``_pam_parse_conf_file``) joins a line that ends
in a backslash with the next, drops everything from ``#`` to the end of a line, reads
``TYPE CONTROL MODULE ARGS``, where TYPE may start with ``-`` (no log when the module
is missing) and CONTROL is a keyword or ``[value=action ...]``, and ``@include FILE``.
Arguments in ``[...]`` may hold blanks (``\\]`` escapes a bracket). We keep the
physical lines so an edit inserts or deletes whole lines and leaves every other byte.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from dataclasses import dataclass, field

from pam_twofa.errors import PamConfigError

TYPES = ("auth", "account", "password", "session")
KEYWORDS = ("required", "requisite", "sufficient", "optional", "include", "substack")
# pam.conf(5): each keyword is a shorthand for a set of actions.
SHORTHANDS: dict[str, dict[str, str]] = {
    "required": {"success": "ok", "new_authtok_reqd": "ok", "ignore": "ignore",
                 "default": "bad"},
    "requisite": {"success": "ok", "new_authtok_reqd": "ok", "ignore": "ignore",
                  "default": "die"},
    "sufficient": {"success": "done", "new_authtok_reqd": "done", "default": "ignore"},
    "optional": {"success": "ok", "new_authtok_reqd": "ok", "default": "ignore"},
}
RULE = re.compile(r"(\S+)[ \t]+(\[[^\]]*\]|[^ \t\[]+)[ \t]*(.*)", re.S)
ACTIONS = ("ignore", "bad", "die", "ok", "done", "reset")


@dataclass(frozen=True)
class Control:
    """A line's control: a keyword (``required``...) or ``[value=action ...]``."""

    text: str
    keyword: str = ""  # "" for a bracketed control
    actions: dict[str, str] = field(default_factory=dict)

    def action(self, value: str) -> str:
        acts = SHORTHANDS.get(self.keyword, self.actions)
        return acts.get(value, acts.get("default", "bad"))

    def jumps(self) -> list[int]:
        """Every forward jump this control can make (``value=N``)."""
        return [int(a) for a in self.actions.values() if a.isdigit()]

    def stops_on_failure(self) -> bool:
        """A failure here ends the stack (``requisite`` or ``default=die``)."""
        return self.action("auth_err") == "die" or self.keyword == "requisite"


@dataclass(frozen=True)
class Line:
    """One logical line: a rule, an ``@include``, or nothing (blank or comment)."""

    path: str
    first: int  # 1-based physical line numbers, continuations included
    last: int
    type: str = ""  # auth, account, ...; "" for @include and blank lines
    quiet: bool = False  # the type had a leading "-"
    control: Control | None = None
    module: str = ""  # the module, or the file of an include/substack/@include
    args: tuple[str, ...] = ()
    at_include: bool = False

    @property
    def where(self) -> str:
        return f"{self.path}:{self.first}"

    @property
    def is_rule(self) -> bool:
        return bool(self.type) and self.control is not None

    @property
    def includes(self) -> bool:
        """An ``@include``, ``include`` or ``substack``: its module is a file."""
        return self.at_include or (self.control is not None
                                   and self.control.keyword in ("include", "substack"))


def parse_control(token: str, where: str) -> Control:
    if not token.startswith("["):
        word = token.lower()
        if word not in KEYWORDS:
            raise PamConfigError(f"unknown control {token!r}", where)
        return Control(token, keyword=word)
    actions: dict[str, str] = {}
    for pair in token[1:-1].split():
        value, eq, action = pair.partition("=")
        action = action.lower()
        if not eq or not value or not (action in ACTIONS or action.isdigit()):
            raise PamConfigError(f"malformed control {token!r}", where)
        actions[value.lower()] = action
    return Control(token, actions=actions)


def split_args(text: str, where: str) -> list[str]:
    """Blank-separated words; ``[a b]`` is one word ``a b`` (``\\]`` inside it)."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t\n":
            i += 1
            continue
        if text[i] == "[":
            j, word = i + 1, ""
            while j < n and text[j] != "]":
                if text[j] == "\\" and j + 1 < n and text[j + 1] == "]":
                    j += 1
                word += text[j]
                j += 1
            if j >= n:
                raise PamConfigError("unterminated '['", where)
            words.append(word)
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in " \t\n":
                j += 1
            words.append(text[i:j])
            i = j
    return words


def parse_rule(text: str, path: str, first: int, last: int) -> Line:
    where = f"{path}:{first}"
    text = text.strip(" \t\n")
    if text.startswith("@include"):
        names = text[len("@include"):].split()
        if len(names) != 1 or text[8:9] not in (" ", "\t"):
            raise PamConfigError("malformed @include", where)
        return Line(path, first, last, module=names[0], at_include=True)
    match = RULE.match(text)
    if match is None:
        raise PamConfigError("a rule needs a type, a control and a module", where)
    type_, control_text, rest = match.groups()
    quiet = type_.startswith("-")
    type_ = type_.removeprefix("-").lower()
    if type_ not in TYPES:
        raise PamConfigError(f"unknown type {type_!r}", where)
    words = split_args(rest, where)
    if not words:
        raise PamConfigError("a rule needs a module", where)
    return Line(path, first, last, type=type_, quiet=quiet,
                control=parse_control(control_text, where), module=words[0],
                args=tuple(words[1:]))


def parse_text(text: str, path: str) -> list[Line]:
    """Every logical line of ``text``, rules and blanks alike, with physical numbers."""
    lines: list[Line] = []
    pending, start = "", 0
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    for number, raw in enumerate(physical, 1):
        body, hashed, _ = raw.partition("#")
        if not pending:
            start = number
        if not body.strip(" \t") and not pending:
            lines.append(Line(path, number, number))
            continue
        stripped = body.rstrip(" \t\r")
        if not hashed and stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined = pending + body
        pending = ""
        if joined.strip(" \t\r"):
            lines.append(parse_rule(joined.replace("\r", " "), path, start, number))
        else:
            lines.append(Line(path, start, number))
    if pending.strip():
        lines.append(parse_rule(pending, path, start, len(physical)))
    return lines


class PamFile:
    """A service file as bytes, physical lines and logical lines."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data
        self.text = data.decode("utf-8", "surrogateescape")
        # "\n" only, as libpam (fgets) and parse_text split: splitlines() would also
        # split at \r, \f and others, and shift every line number after one.
        parts = self.text.split("\n")
        self.physical = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        self.lines = parse_text(self.text, path)

    @classmethod
    def read(cls, path: str, *, follow: bool = True) -> PamFile:
        flags = os.O_RDONLY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symlink, which an edit would replace
                raise PamConfigError("is a symbolic link; edit its target instead",
                                     path) from None
            raise
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise PamConfigError("not a regular file", path)
            return cls(path, f.read())

    def with_lines(self, insert_after: int, new: list[str]) -> bytes:
        """The file with ``new`` lines after physical line ``insert_after`` (0: top)."""
        head = self.physical[:insert_after]
        if head and not head[-1].endswith("\n"):
            head[-1] += "\n"
        body = "".join(head + [line + "\n" for line in new] + self.physical[insert_after:])
        return body.encode("utf-8", "surrogateescape")

    def without_lines(self, first: int, last: int) -> bytes:
        """The file without physical lines ``first``..``last`` (1-based, inclusive)."""
        body = "".join(self.physical[: first - 1] + self.physical[last:])
        return body.encode("utf-8", "surrogateescape")


def replace_file(path: str, data: bytes, backup: str, expected: bytes) -> None:
    """Save the current file as ``backup``, then put ``data`` in its place.

    Both writes are atomic (temp file, fsync, rename, fsync of the directory) and keep
    the file's owner and mode. ``expected`` is what the caller read: a file changed
    since (by pam-auth-update, an editor) is left alone.
    """
    st = os.stat(path, follow_symlinks=False)
    if PamFile.read(path, follow=False).data != expected:
        raise PamConfigError("changed while being edited; try again", path)
    _write(backup, expected, st)
    _write(path, data, st)


def _write(path: str, data: bytes, st: os.stat_result) -> None:
    directory, _, name = path.rpartition("/")
    tmp = f"{directory}/.{name}.twofa-tmp.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
