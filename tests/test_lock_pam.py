"""The user's lock through pamtester (issue 11 finding 5): a client whose output blocks
holds no lock, and a lock that cannot be had is a refusal even under failmode=safe.

Before the fix, the "locked until" message was written to the client inside
``store.update``: a pamtester whose stderr nobody reads held alice's lock, and every
other login of alice waited 10 s for it and then failed as an internal error, which
failmode=safe turns into PAM_IGNORE: the password alone logged in."""

from __future__ import annotations

import fcntl
import os
import subprocess
import termios
import time

from tests.harness.pamenv import PamEnv, oathtool
from tests.pam_support import enroll, log_text, login, output, wrong_code

F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ (Python 3.10+ on Linux; spelled out for mypy)


def _lock_alice(tw: PamEnv) -> str:
    tw.write_policy("failmode: safe\nlockout: {max_failures: 1, lock_seconds: 600}\n")
    secret = enroll(tw, "alice")
    res = login(tw, "alice", wrong_code(secret))
    assert "locked until" in output(res), res
    return secret


def _queued(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, "little")


def test_a_client_whose_output_blocks_holds_no_lock(tw: PamEnv) -> None:
    secret = _lock_alice(tw)
    # where alice's refusal starts in pamtester's stderr (prompts go there too)
    probe = login(tw, "alice", "123456")
    prefix = len(probe.stderr[: probe.stderr.index("Too many wrong codes")].encode())
    # A: a pamtester whose stderr is a pipe nobody reads, filled so that everything
    # before the refusal fits and the refusal's write blocks
    rfd, wfd = os.pipe()
    size = fcntl.fcntl(wfd, F_GETPIPE_SZ)
    os.write(wfd, b"x" * (size - prefix))
    proc = subprocess.Popen(["pamtester", "-v", "svc", "alice", "authenticate"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=wfd,
                            env=tw.wrapper_env(), cwd=tw.root, text=True)
    os.close(wfd)
    try:
        assert proc.stdin is not None
        proc.stdin.write("secret\n123456\n")
        proc.stdin.close()
        deadline = time.monotonic() + 30
        while _queued(rfd) < size and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _queued(rfd) == size, "pamtester never reached the refusal"
        time.sleep(0.3)
        assert proc.poll() is None  # A is stuck writing the refusal to its client
        # B: another login of alice runs at once, not after a 10 s lock wait
        t0 = time.monotonic()
        res = login(tw, "alice", oathtool(secret, at=int(time.time()) + 30))
        elapsed = time.monotonic() - t0
        assert res.rc != 0, res  # not let in: locked (before the fix: rc 0, failmode safe)
        assert "locked until" in output(res), res
        assert " result=refused reason=locked " in log_text(res) + " ", res
        assert elapsed < 8, elapsed  # the lock wait is 10 s
        assert proc.poll() is None  # A was still blocked all along
    finally:
        while proc.poll() is None:  # the client reads again: A finishes, refused
            os.read(rfd, 65536)
            time.sleep(0.01)
        os.close(rfd)
    assert proc.wait(timeout=10) != 0


def test_lock_timeout_is_a_refusal_under_failmode_safe(tw: PamEnv) -> None:
    tw.write_policy("failmode: safe\n")
    secret = enroll(tw, "alice")
    lock = tw.state_dir / "locks" / "alice.lock"
    fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a stuck process holds alice's lock
        t0 = time.monotonic()
        res = login(tw, "alice", oathtool(secret), timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        os.close(fd)
    assert res.rc != 0, res  # before the fix: PAM_IGNORE, the password alone let in
    assert elapsed >= 10, elapsed  # it did wait for the lock
    assert log_text(res).endswith("result=refused reason=lock-timeout"), res
    assert "Another login to your account is in progress" in output(res)
    # the lock is free again: the same code logs in (it was not used up)
    assert login(tw, "alice", oathtool(secret)).rc == 0
