"""Shared fixtures, this run's own temp tree, and the rule that a skipped test fails.

Temp tree: unless ``--basetemp`` is given, pytest's basetemp goes into a directory made
for this run (tests/harness/rundir.py: mkdtemp in $TMPDIR or /tmp, mode 0711), not into
the per-user ``pytest-of-<user>`` that every pytest run on the machine shares and resets
to 0700. sshd runs as uid 65534 and must traverse to its test's $T; the harness adds
o+x only inside this run's tree, so two runs (two checkouts, a developer and CI) never
change each other's directories. The run dir is removed at the end (``--keep-run-dir``
keeps it for a post-mortem; its path is in pytest's header).

Imports: ``tests`` is a regular package (tests/__init__.py), so with pytest's default
import mode the repo root goes first on sys.path and tests import the harness as
``from tests.harness.pamenv import PamEnv``; the insert below keeps that true under
``--import-mode=importlib`` and plain ``pytest`` too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pam_twofa  # noqa: E402
from tests.harness import rundir  # noqa: E402
from tests.harness.pamenv import PamEnv  # noqa: E402
from tests.harness.sshclient import CLIENTS, Login  # noqa: E402
from tests.harness.sshd import SshServer  # noqa: E402

# The code under test is this checkout's, never an installed copy (another checkout's
# editable install, say): `make test` does not install pam_twofa (see the Makefile).
if Path(pam_twofa.__file__).resolve().parent != REPO_ROOT / "pam_twofa":
    raise ImportError(f"pam_twofa comes from {pam_twofa.__file__}, not from {REPO_ROOT}: "
                      "run pytest from the checkout's root")

if TYPE_CHECKING:
    from tests.harness.smtpd import CertAuthority

SKIP_IS_FAILURE = "skip turned into a failure: a skipped test means a missing setup step"
RUN_DIR = pytest.StashKey[Path]()
OUTSIDE_TMP = Path("/var/tmp")  # for worlds whose hosts get a private /tmp


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--keep-run-dir", action="store_true",
                     help="keep this run's temp dir (pam-twofa-run-*) for a post-mortem")


@pytest.hookimpl(tryfirst=True)  # before pytest's tmpdir plugin reads the option
def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config.option, "basetemp"):
        return  # -p no:tmpdir
    if config.option.basetemp:  # pytest empties and recreates it: this run's alone
        rundir.own(Path(config.option.basetemp))
        config.stash[RUN_DIR] = Path(config.option.basetemp).resolve()
        return
    run = rundir.make_run_dir()
    config.stash[RUN_DIR] = run
    config.option.basetemp = str(run / "t")
    config.add_cleanup(lambda: _remove_run_dir(config, run))


def _remove_run_dir(config: pytest.Config, run: Path) -> None:
    if not config.getoption("keep_run_dir", False):
        rundir.remove_run_dir(run)


def pytest_report_header(config: pytest.Config) -> str | None:
    run = config.stash.get(RUN_DIR, None)
    return None if run is None else f"pam-twofa run dir: {run}"


SYSTEM_STATE_DIR = Path("/var/lib/pam-twofa")  # the package's: no test may write there


@pytest.fixture(scope="session", autouse=True)
def no_trace_in_the_system_state_dir() -> Iterator[None]:
    """Every test keeps its state in its own temp dir: a program started with a default
    path (the module, a daemon, a CLI) would write to the system's, where another run's
    test_deb checks that purge leaves nothing. Ends the run with an error if it did."""
    before = SYSTEM_STATE_DIR.exists()
    yield
    installed = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "libpam-twofa"],
                               capture_output=True, text=True, check=False).stdout
    if not before and SYSTEM_STATE_DIR.exists() and not installed.startswith("ii"):
        raise AssertionError(f"a test wrote to {SYSTEM_STATE_DIR}: "
                             f"{sorted(str(p) for p in SYSTEM_STATE_DIR.rglob('*'))}")


@pytest.fixture(scope="session")
def run_dir(pytestconfig: pytest.Config) -> Path:
    """This run's own directory (world-traversable; the harness may chmod only in it)."""
    return pytestconfig.stash[RUN_DIR]


@pytest.fixture
def outside_tmp_path() -> Iterator[Path]:
    """A fresh directory of this run outside /tmp (in /var/tmp), removed afterwards: for
    hosts run by procs.private_tmp_cmd, which see an empty /tmp of their own."""
    root = rundir.make_run_dir(OUTSIDE_TMP)
    try:
        yield root
    finally:
        rundir.remove_run_dir(root)


@pytest.fixture
def pam_env_outside_tmp(outside_tmp_path: Path) -> Iterator[PamEnv]:
    """``pam_env`` rooted outside /tmp (see ``outside_tmp_path``)."""
    env = PamEnv(outside_tmp_path)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def pam_env(tmp_path: Path) -> Iterator[PamEnv]:
    """A hermetic PAM world in tmp_path (see tests/harness/pamenv.py)."""
    env = PamEnv(tmp_path)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def tw(pam_env: PamEnv) -> PamEnv:
    """pam_env with alice and carol (wheel), bob and service "svc" (tests/test_*_pam.py)."""
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.add_user("bob")
    pam_env.add_user("carol", groups=["wheel"])
    pam_env.service("svc")
    return pam_env


@pytest.fixture
def sshd_env(pam_env: PamEnv) -> Iterator[SshServer]:
    """An sshd over pam_env, configured but not started (see tests/harness/sshd.py)."""
    server = SshServer(pam_env)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Callable[..., Login]:
    """Each SSH client in turn (tests/harness/sshclient.py): OpenSSH and paramiko."""
    return CLIENTS[request.param]


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    """A CA made for this run (trustme): ``ca.ca_file`` and ``ca.server_context()``."""
    from tests.harness.smtpd import CertAuthority

    return CertAuthority(tmp_path_factory.mktemp("ca"))


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, reason = longrepr
        return f"{reason} ({path}:{lineno})"
    return str(longrepr)


# Old-style hookwrappers (`outcome.get_result()`) work with pytest 7 as well as 8 and 9.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    report: pytest.TestReport = (yield).get_result()
    # xfail outcomes carry ``wasxfail`` and stay as they are: they are declared, not missing.
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{SKIP_IS_FAILURE}: {_skip_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    report: pytest.CollectReport = (yield).get_result()
    if report.skipped:  # a module-level skip, e.g. a missing import
        report.outcome = "failed"
        report.longrepr = f"{SKIP_IS_FAILURE}: {_skip_reason(report.longrepr)}"
