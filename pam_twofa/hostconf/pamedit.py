"""Put pam-twofa into one service's auth stack, and take out exactly what was put in.

enable: the guard and module lines (``pamstack.BLOCK``) between two marker comments,
right after the service's password step, ``required``; refused (naming file:line)
whenever the file's shape leaves doubt. disable: removes those blocks and nothing
else; a pam-twofa line it did not write is reported and the file is left as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass, field

from pam_twofa.errors import PamConfigError, PamLinesNotOurs
from pam_twofa.hostconf import pamstack as ps
from pam_twofa.hostconf.pamfile import PamFile, replace_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

BAD_CHARS = set("#[]\\\n\r\t ")


@dataclass
class Outcome:
    service: str
    path: str
    changed: bool
    message: str
    warnings: list[str] = field(default_factory=list)
    backup: str = ""


@contextlib.contextmanager
def locked(pam_dir: str) -> Iterator[None]:
    """Serialise twofa-admin runs on one PAM directory (an flock on the directory)."""
    fd = os.open(pam_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_word(what: str, value: str) -> None:
    if not value or BAD_CHARS & set(value) or not value.isprintable():
        raise PamConfigError(f"{what} {value!r}: blanks, '#', '[', ']' and '\\' do not "
                             "survive a PAM service file")


def check_module_args(args: str) -> str:
    """Validate with the module's own parser, so a typo cannot fail every login."""
    from pam_twofa.pamface import parse_args

    words = args.split()
    for word in words:
        check_word("module argument", word)
    parse_args(words)
    return " ".join(words)


def read_service(pam_dir: str, service: str) -> PamFile:
    path = ps.service_path(pam_dir, service)
    if not os.path.lexists(path):
        raise PamConfigError("no such PAM service file", path)
    return PamFile.read(path, follow=False)


def password_step(stack: ps.Stack, pam: PamFile) -> tuple[int, int, int]:
    """(first, last, module) indexes in the top-level stack: the service's last line
    that checks a password, directly or through an include or substack, and the entry
    that stands for its password module."""
    top = stack.top_level()
    found = None
    for line in pam.lines:
        pw = [e for e in stack.entries if e.top == line
              and os.path.basename(e.line.module) in ps.PASSWORD_MODULES]
        if pw:
            found = (line, pw[-1])
    if found is None:
        raise PamConfigError(
            "no password step found (pam_unix.so or another password module, directly or "
            "through @include, include or substack): pam-twofa goes after it; add the "
            "lines by hand", pam.path)
    line, module = found
    indexes = [i for i, e in enumerate(top) if e.top == line]
    rep = next((i for i, e in enumerate(top) if e.line == module.line or e.line in module.via),
               indexes[-1])
    return indexes[0], indexes[-1], rep


def insertion_point(top: list[ps.Entry], first: int, last: int) -> int:
    """The index our lines take: after the password step and any jump it makes
    (``[success=1] pam_unix`` over ``requisite pam_deny``); refused when an earlier
    jump crosses it (inserting lines would change where that jump lands)."""
    point, moved = last + 1, True
    while moved:
        moved = False
        for j in range(first, point):
            control = top[j].line.control
            for n in control.jumps() if control else []:
                if min(j + 1 + n, len(top)) > point:  # a jump past the end: to the end
                    point, moved = min(j + 1 + n, len(top)), True
    if point < len(top) and top[point].top == top[point - 1].top:
        raise PamConfigError(
            f"the password step's jump lands inside {ps.short(top[point - 1].top.where)}, "
            "where no line can be added", top[point - 1].line.where)
    for j in range(first):
        control = top[j].line.control
        for n in control.jumps() if control else []:
            if j + 1 + n > point:
                raise PamConfigError(
                    f"this line jumps {n} lines over the place after the password step; "
                    "added lines would change where it lands", top[j].line.where)
    return point


def enable(pam_dir: str, service: str, *, module: str = ps.DEFAULT_MODULE,
           guard: str = ps.DEFAULT_GUARD, args: str = "") -> Outcome:
    check_word("--module", module)
    check_word("--guard", guard)
    args = check_module_args(args)
    pam = read_service(pam_dir, service)
    want = ps.block_lines(guard, module, args)
    for begin, end in ps.find_blocks(pam):
        odd = ps.block_is_ours(pam, begin, end, guard, module)
        if odd:
            raise PamConfigError("the pam-twofa block holds a line twofa-admin did not "
                                 "write; fix it by hand", odd)
        if [x.strip() for x in pam.physical[begin:end - 1]] == want:
            return Outcome(service, pam.path, False,
                           f"already enabled ({pam.path}:{begin}-{end}); nothing changed")
        raise PamConfigError(f"already enabled with other lines; run 'twofa-admin pam "
                             f"disable {service}' first", f"{pam.path}:{begin}")
    resolver = ps.Resolver(pam_dir)
    resolver.files[pam.path] = pam
    stack = resolver.stack(service)
    if stack.problems:
        raise PamConfigError(stack.problems[0])
    present = [e for e in stack.entries if ps.is_twofa(e.line, module)]
    if present:
        e = present[0]
        control = e.line.control.text if e.line.control else "?"
        raise PamConfigError(f"pam-twofa is already in this stack ('{control}', "
                             f"{e.describe()}); take that line out first", e.line.where)
    for what, name, dirs in (("guard", guard, ps.MODULE_DIRS),
                             ("module", module, (ps.PYTHON_MODULE_DIR,))):
        if not ps.module_exists(name, dirs):
            raise PamConfigError(f"the {what} {name} is not installed: every login of "
                                 f"{service} would fail (give its path with --{what})")
    top = stack.top_level()
    first, last, pw_index = password_step(stack, pam)
    point = insertion_point(top, first, last)
    after = top[point - 1].top
    if ps.managed_by_pam_auth_update(pam, after):
        raise PamConfigError("this is pam-auth-update's block, which it rewrites: use "
                             "'pam-auth-update --enable pam-twofa' instead", after.where)
    done, stop = ps.after_password(top[pw_index:point])
    if done is not None:
        raise PamConfigError(
            f"'{done.line.control.text if done.line.control else ''}' ends the stack "
            "when the password is right: lines after it would never run", done.line.where)
    warnings = []
    if service in ps.UNPRIVILEGED_SERVICES:
        warnings.append(f"{service}: a screen locker's service: it runs PAM as the user, "
                        "who cannot read pam-twofa's state, so unlocking will fail; "
                        f"'twofa-admin pam disable {service}' takes it out again")
    if not stop:
        warnings.append(
            f"{service}: no 'requisite' line (or default=die) after the password step "
            f"({top[pw_index].describe()}): after a wrong password the code is still "
            "asked, and a wrong code is counted; Debian's common-auth has "
            "'auth requisite pam_deny.so' for this")
    data = pam.with_lines(after.last, [ps.BEGIN, *want, ps.END])
    backup = pam.path + ps.BACKUP_SUFFIX
    with locked(pam_dir):
        replace_file(pam.path, data, backup, pam.data)
    return Outcome(service, pam.path, True,
                   f"enabled: {pam.path}:{after.last + 1}-{after.last + 4}\n"
                   f"after {ps.short(after.where)}: {pam.physical[after.last - 1].strip()}\n"
                   f"backup: {backup}", warnings, backup)


def plan_disable(pam_dir: str, service: str, module: str,
                 guard: str) -> tuple[PamFile, list[tuple[int, int]], list[str], list[str]]:
    """(file, our blocks, lines we did not write, lines pam-auth-update manages)."""
    pam = read_service(pam_dir, service)
    blocks = ps.find_blocks(pam)
    foreign, managed = [], []
    for begin, end in blocks:
        odd = ps.block_is_ours(pam, begin, end, guard, module)
        if odd:
            foreign.append(f"{odd}: inside the pam-twofa block, not written by twofa-admin")
    for line in pam.lines:
        if ps.is_twofa(line, module) and not ps.in_blocks(line, blocks):
            text = pam.physical[line.first - 1].strip()
            if ps.managed_by_pam_auth_update(pam, line):
                managed.append(f"{line.where}: {text}")
            else:
                foreign.append(f"{line.where}: {text}")
    return pam, blocks, foreign, managed


def _remove(pam: PamFile, blocks: list[tuple[int, int]], service: str) -> Outcome:
    data = pam.data
    for begin, end in reversed(blocks):
        data = PamFile(pam.path, data).without_lines(begin, end)
    backup = pam.path + ps.BACKUP_SUFFIX
    replace_file(pam.path, data, backup, pam.data)
    spans = ", ".join(f"{pam.path}:{b}-{e}" for b, e in blocks)
    return Outcome(service, pam.path, True, f"disabled: removed {spans}\nbackup: {backup}",
                   backup=backup)


def not_ours(foreign: list[str]) -> PamLinesNotOurs:
    return PamLinesNotOurs("pam-twofa lines that twofa-admin pam did not write (nothing "
                           "was changed; remove them by hand):\n  " + "\n  ".join(foreign))


def disable(pam_dir: str, service: str, *, module: str = ps.DEFAULT_MODULE,
            guard: str = ps.DEFAULT_GUARD) -> Outcome:
    with locked(pam_dir):
        pam, blocks, foreign, managed = plan_disable(pam_dir, service, module, guard)
        if foreign:
            raise not_ours(foreign)
        if blocks:
            return _remove(pam, blocks, service)
    note = "; ".join(f"{m} stays: pam-auth-update manages it" for m in managed)
    return Outcome(service, pam.path, False,
                   "not enabled by twofa-admin pam; nothing changed", [note] if note else [])


def disable_all(pam_dir: str, *, module: str = ps.DEFAULT_MODULE,
                guard: str = ps.DEFAULT_GUARD) -> list[Outcome]:
    """Every service file; all or nothing: one line we did not write anywhere
    (or a file we cannot read that mentions pam-twofa) and nothing changes."""
    with locked(pam_dir):
        plans, foreign, notes = [], [], []
        for name in ps.services(pam_dir):
            try:
                pam, blocks, strange, managed = plan_disable(pam_dir, name, module, guard)
            except (PamConfigError, OSError) as exc:
                path = os.path.join(pam_dir, name)
                with contextlib.suppress(OSError), open(path, "rb") as f:
                    raw = f.read()
                    if b"pam_twofa" in raw or b"pam-twofa" in raw:
                        foreign.append(f"{path}: cannot be read as a PAM file: {exc}")
                continue
            foreign += strange
            notes += [f"{m} stays: pam-auth-update manages it" for m in managed]
            if blocks:
                plans.append((name, pam, blocks))
        if foreign:
            raise not_ours(foreign)
        outcomes = [_remove(pam, blocks, name) for name, pam, blocks in plans]
    if notes:
        outcomes.append(Outcome("", pam_dir, False, "", notes))
    return outcomes
