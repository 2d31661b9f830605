"""Shared fixtures, and the rule that a skipped test is a failed test.

Imports: ``tests`` is a regular package (tests/__init__.py), so with pytest's default
import mode the repo root goes first on sys.path and tests import the harness as
``from tests.harness.pamenv import PamEnv``; the insert below keeps that true under
``--import-mode=importlib`` and plain ``pytest`` too.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness.pamenv import PamEnv  # noqa: E402
from tests.harness.sshd import SshServer  # noqa: E402

SKIP_IS_FAILURE = "skip turned into a failure: a skipped test means a missing setup step"


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
    """pam_env with alice and carol (wheel), bob and service "svc" (tests/test_pam_*.py)."""
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
