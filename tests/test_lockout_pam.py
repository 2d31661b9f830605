"""Lockout through pamtester, and concurrent logins counted exactly.  Helpers and the
setup are in tests/pam_support.py."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.harness.pamenv import PAM_MATRIX, PamEnv, oathtool
from tests.harness.procs import LogSocket, private_tmp_cmd, run_many
from tests.harness.wait import wait_fresh_step
from tests.pam_support import enroll, log_text, login, output, status, wrong_code


# --------------------------------------------------------------------------------- lockout
def test_progressive_lockout_unlock_and_reset(tw: PamEnv) -> None:
    tw.write_policy("lockout: {max_failures: 3, interval_seconds: 900, lock_seconds: 2,\n"
                    "          max_lock_seconds: 60}\n")
    secret = enroll(tw, "alice")
    bad = wrong_code(secret)
    # two wrong codes, then a success starts the count over
    for n in (1, 2):
        res = login(tw, "alice", bad)
        assert log_text(res).endswith(f"reason=bad-code failures={n}"), res
    assert login(tw, "alice", oathtool(secret)).rc == 0
    assert status(tw, "alice")["failures"] == 0

    # max_failures wrong codes lock for lock_seconds
    for n in (1, 2):
        res = login(tw, "alice", bad)
        assert log_text(res).endswith(f"reason=bad-code failures={n}"), res
    t0 = time.time()
    res = login(tw, "alice", bad)
    t1 = time.time()
    assert "locked until" in output(res)
    first = status(tw, "alice")
    assert first["locked"] is True and first["failures"] == 3 and first["lock_level"] == 1
    until1 = first["locked_until"]
    assert isinstance(until1, float)
    assert t0 <= until1 - 2 <= t1
    assert log_text(res).endswith(f"reason=bad-code failures=3 locked_until={int(until1)}")

    # the right code (of a step never used) while locked: refused, told until when
    res = login(tw, "alice", oathtool(secret, at=int(time.time()) + 30))
    assert res.rc != 0, res
    assert "locked until" in output(res)
    assert log_text(res).endswith(f"result=refused reason=locked locked_until={int(until1)}")
    assert status(tw, "alice")["failures"] == 3  # attempts while locked do not count

    # once the lock ends, one more wrong code locks for twice as long
    time.sleep(max(0.0, until1 - time.time()) + 0.05)
    assert status(tw, "alice")["locked"] is False
    t0 = time.time()
    res = login(tw, "alice", bad)
    t1 = time.time()
    second = status(tw, "alice")
    assert second["locked"] is True and second["lock_level"] == 2 and second["failures"] == 4
    until2 = second["locked_until"]
    assert isinstance(until2, float)
    assert t0 <= until2 - 4 <= t1
    assert log_text(res).endswith(f"failures=4 locked_until={int(until2)}")
    assert login(tw, "alice", oathtool(secret, at=int(time.time()) + 30)).rc != 0

    # unlock: the right code works, and the success starts the count over
    done = tw.admin("unlock", "alice")
    assert done.returncode == 0, done.stderr
    assert status(tw, "alice")["locked"] is False
    res = login(tw, "alice", oathtool(secret, at=int(time.time()) + 30))
    assert res.rc == 0, res
    after = status(tw, "alice")
    assert after["failures"] == 0 and after["lock_level"] == 0 and after["locked"] is False
    res = login(tw, "alice", bad)
    assert log_text(res).endswith("reason=bad-code failures=1")  # no lock: level was reset
    assert status(tw, "alice")["locked"] is False


@pytest.fixture
def vt(pam_env_outside_tmp: PamEnv) -> PamEnv:
    """Like ``tw``, rooted outside /tmp: for hosts that each get a private /tmp."""
    pam_env_outside_tmp.add_user("alice", groups=["wheel"])
    pam_env_outside_tmp.service("svc")
    return pam_env_outside_tmp


def run_concurrently(env: PamEnv, user: str, code: str, n: int) -> tuple[list[int], list[str]]:
    """``n`` pamtester logins at once (password, then ``code``): exit codes and log lines.

    A service of its own with its own log socket, drained while they run (the socket
    queue holds ~10 datagrams; the harness's pamtester() runs one host at a time).
    """
    sock = LogSocket(env.root / "conc.sock")
    try:
        line = env.module_line().replace(f"log_socket={env.log_socket}",
                                         f"log_socket={sock.path}")
        env.service_raw("conc", [f"auth required {PAM_MATRIX} passdb={env.passdb}", line])
        cmd, penv = private_tmp_cmd(["pamtester", "conc", user, "authenticate"],
                                    env.wrapper_env())
        codes, lines, _errors = run_many(cmd, penv, f"secret\n{code}\n", n, sock, env.root)
    finally:
        sock.close()
    return codes, lines


def test_32_concurrent_wrong_codes_counted_exactly(vt: PamEnv) -> None:
    vt.write_policy("lockout: {max_failures: 1000}\n")
    secret = enroll(vt, "alice")
    codes, lines = run_concurrently(vt, "alice", wrong_code(secret), 32)
    assert all(rc != 0 for rc in codes), codes
    assert len(lines) == 32 and all(" reason=bad-code failures=" in x for x in lines), lines
    counts = sorted(int(m[1]) for m in (re.search(r" failures=(\d+)$", x) for x in lines) if m)
    assert counts == list(range(1, 33)), lines  # every update saw the one before it
    assert status(vt, "alice")["failures"] == 32
    raw = (vt.state_dir / "users" / "alice.json").read_text()
    data = json.loads(raw)
    assert data["failures"] == 32 and data["enrolled"] is True and data["secret"] == secret
    leftovers = [p for p in (vt.state_dir / "users").iterdir() if p.name != "alice.json"]
    assert leftovers == []  # no temp files left behind


def test_concurrent_wrong_codes_lock_after_exactly_max_failures(vt: PamEnv) -> None:
    vt.write_policy("lockout: {max_failures: 5, lock_seconds: 600}\n")
    secret = enroll(vt, "alice")
    codes, lines = run_concurrently(vt, "alice", wrong_code(secret), 16)
    assert all(rc != 0 for rc in codes), codes
    assert sum(" reason=bad-code " in x for x in lines) == 5, lines
    assert sum(" reason=locked " in x for x in lines) == 11, lines
    st = status(vt, "alice")
    assert st["failures"] == 5 and st["lock_level"] == 1 and st["locked"] is True


def test_concurrent_same_right_code_accepted_once(vt: PamEnv) -> None:
    vt.write_policy("lockout: {max_failures: 3}\n")  # replays must not lock (issue 12)
    secret = enroll(vt, "alice")
    wait_fresh_step()
    codes, lines = run_concurrently(vt, "alice", oathtool(secret), 8)
    assert sorted(codes)[:2] == [0, 1], codes  # exactly one success ...
    assert codes.count(0) == 1, codes
    assert sum(" result=success reason=ok" in x for x in lines) == 1, lines
    assert sum(" reason=replay" in x for x in lines) == 7, lines  # ... the rest replays,
    st = status(vt, "alice")  # not counted: each proves knowledge of a real code
    assert st["failures"] == 0 and st["locked"] is False
