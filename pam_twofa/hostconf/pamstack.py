"""A service's effective auth stack, and where pam-twofa goes in it.

``twofa-admin pam`` (cli/admin_pam.py) is a thin face over this. The stack is resolved
as libpam does: ``@include`` and ``auth include`` put the other file's lines in place
(jumps count them), ``auth substack`` is one entry whose inner jumps stay inside it.
Every entry keeps its file:line, so a refusal names the line to look at.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from pam_twofa.errors import PamConfigError
from pam_twofa.hostconf.pamfile import Line, PamFile, parse_text

# The lines every stack gets, in this order. The guard starts the interpreter safely
# (issue 11: a setuid caller's PATH and cwd must not choose Python's stdlib) and, with
# success=1, skips pam_python in setcred. ONE place: everything else derives from it.
BLOCK = (
    "auth [success=1 ignore=ignore default=die] {guard}",
    "auth required pam_python.so {module}{args}",
)
BEGIN = "# pam-twofa: begin (twofa-admin pam)"
END = "# pam-twofa: end"
DEFAULT_MODULE = "pam_twofa.py"
DEFAULT_GUARD = "pam_twofa_guard.so"
BACKUP_SUFFIX = ".twofa-bak"
MODULE_DIRS = ("/lib/security", "/lib/*/security", "/usr/lib/*/security", "/usr/lib/security")
PYTHON_MODULE_DIR = "/lib/security"  # pam_python resolves a bare module name here
# Modules that check a password; the step pam-twofa goes after.
PASSWORD_MODULES = frozenset({
    "pam_unix.so", "pam_sss.so", "pam_ldap.so", "pam_krb5.so", "pam_winbind.so",
    "pam_userdb.so", "pam_pwdfile.so", "pam_matrix.so",  # pam_matrix: pam_wrapper's
})
# Services whose program a local user starts with root rights and their own
# environment and working directory: an unguarded pam_python there is local root.
SETUID_SERVICES = {
    "su": "su is setuid root",
    "su-l": "su -l is setuid root",
    "sudo": "sudo is setuid root",
    "sudo-i": "sudo -i is setuid root",
    "chsh": "chsh is setuid root",
    "chfn": "chfn is setuid root",
    "passwd": "passwd is setuid root",
    "newgrp": "newgrp is setuid root",
    "polkit-1": "pkexec and polkit-agent-helper-1 are setuid root",
    "doas": "doas is setuid root",
    "other": "every program without a file of its own uses it, setuid ones too",
}
# Services of programs that run PAM as the user (screen lockers): the module cannot
# read its root-only state there, so pam-twofa does not belong in their stacks.
UNPRIVILEGED_SERVICES = frozenset({
    "i3lock", "swaylock", "xscreensaver", "kde", "kscreensaver", "vlock", "physlock",
    "xlock", "slock", "light-locker", "mate-screensaver", "xfce4-screensaver",
    "cinnamon-screensaver", "gnome-screensaver", "hyprlock", "waylock",
})
# pam-auth-update rewrites what lies between these in common-*.
MANAGED = ("# here are the per-package modules", "# end of pam-auth-update config")
SKIPPED_SUFFIXES = (BACKUP_SUFFIX, "~", ".dpkg-old", ".dpkg-new", ".dpkg-dist", ".dpkg-tmp",
                    ".ucf-old", ".ucf-new", ".ucf-dist", ".pam-old", ".pam-new")


@dataclass(frozen=True)
class Entry:
    """One line of the effective auth stack and how the service file reaches it."""

    line: Line
    top: Line  # the service file's own line it comes from (itself or an include)
    via: tuple[Line, ...]  # the include/substack lines on the way, outermost first
    depth: int  # 0: the service's own stack; n: inside n substacks

    def describe(self) -> str:
        chain = "".join(f" via {short(v.where)}" for v in reversed(self.via))
        return short(self.line.where) + chain


@dataclass
class Stack:
    service: str
    path: str
    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fallback: bool = False  # no auth lines of its own: libpam uses "other"'s

    def top_level(self) -> list[Entry]:
        return [e for e in self.entries if e.depth == 0]


def short(where: str) -> str:
    return os.path.basename(where)


def is_twofa(line: Line, module: str = DEFAULT_MODULE) -> bool:
    """A pam_python line that runs pam-twofa (package name, checkout path or --module)."""
    if not line.is_rule or line.includes or os.path.basename(line.module) != "pam_python.so":
        return False
    if not line.args:
        return False
    first = line.args[0]
    return (first == module or os.path.basename(first) == DEFAULT_MODULE
            or first.endswith("/pam_twofa/pam_entry.py"))


def is_guard(line: Line, guard: str = DEFAULT_GUARD) -> bool:
    return line.is_rule and (line.module == guard
                             or os.path.basename(line.module) == DEFAULT_GUARD)


def is_guard_line(line: Line, guard: str = DEFAULT_GUARD) -> bool:
    """The guard with BLOCK's control (actions compared, not their spelling)."""
    want = parse_text(BLOCK[0].format(guard=guard), "BLOCK")[0].control
    return (is_guard(line, guard) and line.type == "auth" and line.control is not None
            and want is not None and line.control.actions == want.actions)


def checks_password(entry: Entry, entries: list[Entry]) -> bool:
    """A password module, or a substack with one inside."""
    if os.path.basename(entry.line.module) in PASSWORD_MODULES and not entry.line.includes:
        return True
    return entry.line.includes and any(
        entry.line in e.via and os.path.basename(e.line.module) in PASSWORD_MODULES
        for e in entries)


def frame_before(entries: list[Entry], i: int) -> list[Entry]:
    """The entries before ``entries[i]`` in its own (sub)stack, in order."""
    depth, out = entries[i].depth, []
    for k in range(i - 1, -1, -1):
        if entries[k].depth == depth:
            out.append(entries[k])
        elif entries[k].depth < depth:
            break
    return out[::-1]


def after_password(frame: list[Entry]) -> tuple[Entry | None, bool]:
    """From the password step to the end of ``frame``: a line that ends the stack on
    success (then nothing after it runs for a right password), and whether a line
    ends it on failure (then a wrong password never reaches the code)."""
    done = next((e for e in frame if e.line.control
                 and e.line.control.action("success") == "done"), None)
    stop = any(e.line.control and e.line.control.stops_on_failure() for e in frame)
    return done, stop


def block_lines(guard: str, module: str, args: str) -> list[str]:
    rest = f" {args}" if args else ""
    return [BLOCK[0].format(guard=guard), BLOCK[1].format(module=module, args=rest)]


def service_path(pam_dir: str, name: str) -> str:
    if not name or "/" in name or name.startswith(".") or any(c.isspace() for c in name):
        raise PamConfigError(f"bad service name {name!r}")
    return os.path.join(pam_dir, name)


def services(pam_dir: str) -> list[str]:
    """Every service file in ``pam_dir`` (not backups, editor or dpkg leftovers)."""
    names = []
    for name in sorted(os.listdir(pam_dir)):
        if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES):
            continue
        if os.path.isfile(os.path.join(pam_dir, name)):
            names.append(name)
    return names


class Resolver:
    """Reads each file once; resolves includes relative to the PAM directory."""

    def __init__(self, pam_dir: str) -> None:
        self.pam_dir = pam_dir
        self.files: dict[str, PamFile] = {}

    def file(self, path: str) -> PamFile:
        if path not in self.files:
            self.files[path] = PamFile.read(path)
        return self.files[path]

    def stack(self, service: str) -> Stack:
        path = service_path(self.pam_dir, service)
        stack = Stack(service, path)
        self._walk(stack, path, None, (), 0)
        other = os.path.join(self.pam_dir, "other")
        if not stack.entries and service != "other" and os.path.isfile(other):
            # libpam runs "other"'s lines for a function the service file has none for
            stack.fallback = True
            self._walk(stack, other, None, (), 0)
        return stack

    def _walk(self, stack: Stack, path: str, top: Line | None, via: tuple[Line, ...],
              depth: int) -> None:
        if len(via) > 16:  # libpam's limit on nested includes, and our guard against loops
            raise PamConfigError("includes nest deeper than 16 (a loop?)", via[-1].where)
        for line in self.file(path).lines:
            if not (line.at_include or line.type == "auth"):
                continue
            here = top or line
            if line.includes:
                target = line.module if line.module.startswith("/") else os.path.join(
                    self.pam_dir, line.module)
                if not os.path.isfile(target):
                    stack.problems.append(f"{line.where}: includes {line.module}, "
                                          "which does not exist (libpam fails this stack)")
                    continue
                inner = depth
                if line.control is not None and line.control.keyword == "substack":
                    stack.entries.append(Entry(line, here, via, depth))
                    inner = depth + 1
                self._walk(stack, target, here, (*via, line), inner)
            elif line.is_rule:
                stack.entries.append(Entry(line, here, via, depth))


def find_blocks(pam: PamFile) -> list[tuple[int, int]]:
    """(begin, end) physical line numbers of each block twofa-admin wrote."""
    blocks, begin = [], 0
    for number, raw in enumerate(pam.physical, 1):
        text = raw.strip()
        if text == BEGIN:
            if begin:
                raise PamConfigError(f"'{BEGIN}' without '{END}'", f"{pam.path}:{begin}")
            begin = number
        elif text == END:
            if not begin:
                raise PamConfigError(f"'{END}' without '{BEGIN}'", f"{pam.path}:{number}")
            blocks.append((begin, number))
            begin = 0
    if begin:
        raise PamConfigError(f"'{BEGIN}' without '{END}'", f"{pam.path}:{begin}")
    return blocks


def block_is_ours(pam: PamFile, begin: int, end: int, guard: str, module: str) -> str:
    """'' when the block holds exactly the lines enable writes; else the first odd line."""
    inner = [x for x in pam.lines if begin < x.first and x.last < end]
    rules = [x for x in inner if x.is_rule or x.at_include]
    ok = (len(rules) == 2 == len(inner) and is_guard_line(rules[0], guard)
          and is_twofa(rules[1], module) and rules[1].type == "auth"
          and rules[1].control is not None and rules[1].control.keyword == "required")
    if ok:
        return ""
    odd = next((x for x in inner if not (is_guard(x, guard) or is_twofa(x, module))),
               inner[0] if inner else None)
    return odd.where if odd else f"{pam.path}:{begin}"


def in_blocks(line: Line, blocks: list[tuple[int, int]]) -> bool:
    return any(b < line.first and line.last < e for b, e in blocks)


def managed_by_pam_auth_update(pam: PamFile, line: Line) -> bool:
    """The line lies in the block pam-auth-update rewrites (its profiles' lines)."""
    start = end = 0
    for number, raw in enumerate(pam.physical, 1):
        if raw.startswith(MANAGED[0]) and not start:
            start = number
        elif raw.startswith(MANAGED[1]):
            end = number
    return bool(start and end and start < line.first < end)


def module_exists(name: str, dirs: tuple[str, ...] = MODULE_DIRS) -> bool:
    if name.startswith("/"):
        return os.path.isfile(name)
    return any(os.path.isfile(os.path.join(d, name)) for pat in dirs for d in glob.glob(pat))
