"""This test run's own temp tree, and the rule that the harness changes modes only there.

Why: sshd and the module run as uid 65534 (tests/harness/sshd.py), so every directory
above a test's $T must be traversable by others. pytest's default base dir,
``$TMPDIR/pytest-of-<user>``, is shared by every pytest run of that user on the machine,
and each run resets it to 0700: a harness that added o+x there lost it to the next run
("Permission denied" in the other run's SSH tests, issue 12 item 11).

So each run gets a directory of its own (``make_run_dir``: mkdtemp, 0711, in a temp dir
that others can traverse), pytest's basetemp goes inside it (tests/conftest.py), and
:func:`may_chmod` says which directories the harness may make traversable: those under
a root registered with :func:`own` (this run's tree). Anything else - a shared parent -
is never touched; ``PamEnv.allow_uid`` raises instead.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

RUN_PREFIX = "twofa-run-"  # short: AF_UNIX socket paths below it are at most 107 bytes
RUN_MODE = 0o711  # others may traverse, not list

_owned: list[Path] = []


def traversable(path: Path) -> bool:
    """Whether every directory from ``path`` up to / has the search bit for others."""
    for p in [path, *path.parents]:
        try:
            if not stat.S_IMODE(p.stat().st_mode) & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def temp_root() -> Path:
    """$TMPDIR (tempfile's choice) when others can traverse it, else /tmp."""
    chosen = Path(tempfile.gettempdir()).resolve()
    return chosen if traversable(chosen) else Path("/tmp")


def make_run_dir(parent: Path | None = None) -> Path:
    """A new directory only this run uses (mkdtemp: unique, ours), mode 0711."""
    path = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=parent or temp_root())).resolve()
    path.chmod(RUN_MODE)
    own(path)
    return path


def own(root: Path) -> None:
    """Register ``root`` as this run's: the harness may add o+x below it."""
    root = Path(root).resolve()
    if root not in _owned:
        _owned.append(root)


def owned_roots() -> list[Path]:
    return list(_owned)


def may_chmod(path: Path) -> bool:
    """True for a directory inside (or equal to) a root registered with :func:`own`."""
    path = Path(path).resolve()
    return any(path == root or root in path.parents for root in _owned)


def let_others_traverse(path: Path, *, also: Path | None = None) -> None:
    """Add o+x to ``path`` and each ancestor lacking it, all of which must be this run's
    (:func:`may_chmod`, or ``also``); otherwise raise PermissionError, changing nothing."""
    path = Path(path).resolve()
    todo: list[tuple[Path, int]] = []
    blocked: list[tuple[Path, int]] = []
    for p in [path, *path.parents]:
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & stat.S_IXOTH:
            continue
        (todo if p == also or may_chmod(p) else blocked).append((p, mode))
    if blocked:
        raise PermissionError(
            f"others cannot traverse {', '.join(str(p) for p, _ in blocked)}, and the "
            "harness changes no directory that is not this run's (another run would "
            "undo it, or rely on it): use a directory under the run dir (tmp_path, see "
            "tests/conftest.py) or one made with tests.harness.rundir.make_run_dir()")
    for p, mode in todo:
        p.chmod(mode | stat.S_IXOTH)


def remove_run_dir(path: Path) -> None:
    """Remove a run dir (files of uid 65534 included: the run is root or their owner)."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # a read-only dir inside: make it writable and try once more
        for dirpath, dirnames, _ in os.walk(path):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o700)
        shutil.rmtree(path, ignore_errors=True)
    if path in _owned:
        _owned.remove(path)
