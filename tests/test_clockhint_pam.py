"""The module reads the last clock check (no network) and explains a refused code when
the server clock was found further off than the TOTP window covers; it never widens
the window. Real pamtester + pam_python, real twofa-clockcheck against chronyd."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa.timecheck.check import sync_status
from tests.harness.pamenv import PamEnv, oathtool
from tests.ntp_support import Chronyd

REPO_ROOT = Path(__file__).resolve().parent.parent
HINT = "The server clock may be off; tell your administrator."
SYNC_OFF = sync_status(5).ntp == "off"  # a systemd host with sync off: right offset exits 1


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chronyd, Chronyd]]:
    good = Chronyd(tmp_path_factory.mktemp("chrony"))
    try:
        off = Chronyd(tmp_path_factory.mktemp("chrony-off"), shift=60)
    except BaseException:
        good.stop()
        raise
    yield good, off
    off.stop()
    good.stop()


def clockcheck(env: PamEnv, server: str) -> subprocess.CompletedProcess[str]:
    """The real command, writing the state dir the module reads."""
    return subprocess.run(
        [sys.executable, "-m", "pam_twofa.cli.clockcheck", "--policy", str(env.policy),
         "--state-dir", str(env.state_dir), "--server", server],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"})


def wrong_code(secret: str) -> str:
    """A code none of the steps the window accepts now (or soon) would give."""
    now = time.time()
    taken = {oathtool(secret, at=int(now) + d) for d in range(-120, 121, 30)}
    return next(f"{n:06d}" for n in range(0, 10**6, 111111) if f"{n:06d}" not in taken)


def test_refused_login_carries_the_clock_hint(pam_env: PamEnv,
                                              servers: tuple[Chronyd, Chronyd]) -> None:
    good, off = servers
    pam_env.add_user("alice")
    pam_env.service("login")
    pam_env.write_policy("totp:\n  window: 1\n  period: 30\n")
    enrolled = pam_env.admin("enroll", "alice", "--json")
    assert enrolled.returncode == 0, enrolled.stderr
    secret = json.loads(enrolled.stdout)["secret"]

    # no clock check yet: a plain refusal
    res = pam_env.pamtester("login", "alice", ["secret", wrong_code(secret)])
    assert res.rc != 0 and "Wrong verification code." in res.stdout + res.stderr, res
    assert HINT not in res.stdout + res.stderr
    assert not any("clock_offset" in line for line in res.log_lines), res

    # the last check found the clock a minute off (window 1 x 30 s covers 30 s)
    checked = clockcheck(pam_env, off.server)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    res = pam_env.pamtester("login", "alice", ["secret", wrong_code(secret)])
    assert res.rc != 0, res
    assert f"Wrong verification code. {HINT}" in res.stdout + res.stderr, res
    warnings = [line for line in res.log_lines if line.startswith("<84>")]  # authpriv.warning
    assert len(warnings) == 1, res
    assert "user=alice clock_offset=+60.0 server clock may be off" in warnings[0]
    refusal = [line for line in res.log_lines if "result=refused" in line]
    assert len(refusal) == 1 and "reason=bad-code" in refusal[0]
    assert "clock_offset=+60.0" in refusal[0]

    # the window is never widened: the code the shifted clock would expect is refused
    ahead = oathtool(secret, at=int(time.time()) + 120)
    res = pam_env.pamtester("login", "alice", ["secret", ahead])
    assert res.rc != 0 and HINT in res.stdout + res.stderr, res
    # and a right code still works, without any hint
    res = pam_env.pamtester("login", "alice", ["secret", oathtool(secret)])
    assert res.rc == 0, res
    assert HINT not in res.stdout + res.stderr
    assert not any(line.startswith("<84>") for line in res.log_lines), res

    status = pam_env.admin("--log-socket", str(pam_env.log_socket), "status")
    assert status.returncode == 0, status.stderr
    clock_line = status.stdout.splitlines()[-1]
    assert clock_line.startswith("Clock: checked "), clock_line
    shown = re.search(r"offset \+(\d+\.\d+) s ", clock_line)  # +59.999 or +60.001: both fine
    assert shown is not None and abs(float(shown.group(1)) - 60) < 0.5, clock_line
    assert f"from {off.server} (OFF: more than 10 s)" in clock_line

    # once a check finds the clock right again, refusals are plain again
    checked = clockcheck(pam_env, good.server)
    assert checked.returncode == (1 if SYNC_OFF else 0), checked.stdout + checked.stderr
    res = pam_env.pamtester("login", "alice", ["secret", wrong_code(secret)])
    assert res.rc != 0 and HINT not in res.stdout + res.stderr, res
    assert not any("clock_offset" in line for line in res.log_lines), res
    status = pam_env.admin("--log-socket", str(pam_env.log_socket), "status")
    assert status.stdout.splitlines()[-1].endswith(
        "(automatic time sync is OFF)" if SYNC_OFF else "(in sync)")


def test_offset_within_the_window_gives_no_hint(pam_env: PamEnv,
                                                servers: tuple[Chronyd, Chronyd]) -> None:
    _good, off = servers
    pam_env.add_user("bob")
    pam_env.service("login")
    pam_env.write_policy("totp:\n  window: 3\n")  # 3 x 30 s covers the 60 s offset
    enrolled = pam_env.admin("enroll", "bob", "--json")
    secret = json.loads(enrolled.stdout)["secret"]
    assert clockcheck(pam_env, off.server).returncode == 1  # over the 10 s limit
    res = pam_env.pamtester("login", "bob", ["secret", wrong_code(secret)])
    assert res.rc != 0 and "Wrong verification code." in res.stdout + res.stderr, res
    assert HINT not in res.stdout + res.stderr
