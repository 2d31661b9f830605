"""Two test runs on one machine do not disturb each other (issue 12 item 11).

The harness used to add o+x to pytest's shared ``pytest-of-<user>`` (so that sshd, as
uid 65534, could reach its $T) and take it back at teardown, while every other pytest
run resets that directory to 0700: the other run's SSH tests then failed with
"Permission denied". Now each run has a directory of its own (tests/harness/rundir.py)
and the harness changes modes only inside it.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import rundir
from tests.harness.pamenv import REPO_ROOT, PamEnv
from tests.harness.sshd import NOBODY

# SSH logins as uid 65534 (what needs a traversable $T), both clients, a few sshd starts.
SELECTION = [
    "tests/test_login_ssh.py::test_password_and_code",
    "tests/test_login_ssh.py::test_wrong_code_refused",
    "tests/test_login_ssh.py::test_out_of_scope_user_password_only",
]
RUN_TIMEOUT = 50.0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_basetemp_is_in_a_run_dir_of_its_own(run_dir: Path, tmp_path: Path,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.getbasetemp()
    assert run_dir in base.parents or base == run_dir
    assert tmp_path.is_relative_to(base)
    assert "pytest-of-" not in str(tmp_path)
    assert rundir.may_chmod(tmp_path) and not rundir.may_chmod(run_dir.parent)
    if run_dir.name.startswith(rundir.RUN_PREFIX):  # made by conftest (no --basetemp)
        assert mode(run_dir) == rundir.RUN_MODE and run_dir.stat().st_uid == os.geteuid()


def test_allow_uid_never_changes_a_parent_that_is_not_the_runs(tmp_path: Path) -> None:
    """A $T below a 0700 directory of someone else's making: refused, nothing changed."""
    foreign = Path(os.path.realpath("/var/tmp")) / f"twofa-foreign-{os.getpid()}"
    foreign.mkdir(mode=0o700)
    try:
        env = PamEnv(foreign / "world")  # $T itself is the PamEnv's to open, not its parent
        try:
            with pytest.raises(PermissionError, match="not this run's"):
                env.allow_uid(NOBODY)
            assert mode(foreign) == 0o700
        finally:
            env.close()
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(foreign)], check=True)
    # Inside this run's tree it works, and only there.
    env = PamEnv(tmp_path / "world")
    try:
        env.allow_uid(NOBODY)
        assert mode(env.root) & stat.S_IXOTH and mode(tmp_path) & stat.S_IXOTH
    finally:
        env.close()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A short, traversable TMPDIR for two sub-runs (their sockets live below it)."""
    path = rundir.make_run_dir()
    try:
        yield path
    finally:
        rundir.remove_run_dir(path)


def test_two_runs_of_the_ssh_tests_at_once(shared_tmp: Path) -> None:
    """Two pytest runs as a developer starts them (no --basetemp), in one temp dir."""
    env = {**os.environ, "TMPDIR": str(shared_tmp)}
    # no -q: the header names the run dir
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *SELECTION]
    started = time.monotonic()
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = []
    try:
        for proc in procs:
            left = max(1.0, RUN_TIMEOUT - (time.monotonic() - started))
            outputs.append(proc.communicate(timeout=left)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
        assert re.search(r"\b6 passed\b", out), out
    run_dirs = [re.findall(r"^pam-twofa run dir: (\S+)", out, re.M) for out in outputs]
    assert all(len(found) == 1 for found in run_dirs), outputs
    assert run_dirs[0] != run_dirs[1]
    assert all(Path(found[0]).parent == shared_tmp for found in run_dirs)
    assert list(shared_tmp.iterdir()) == []  # both removed theirs; no pytest-of-<user>


def test_make_test_installs_no_package() -> None:
    """`make test` installs the requirements only: no `pip install -e .` re-pointing the
    interpreter's pam_twofa at whichever checkout ran last (the tests never use it)."""
    dry = subprocess.run(["make", "--no-print-directory", "-n", "test"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "deps-test-pip" in dry or "flock" in dry, dry
    assert not re.search(r"install[^\n]*\s-e\s", dry), dry
    assert "-m pytest" in dry
