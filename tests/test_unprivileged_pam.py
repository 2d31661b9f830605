"""Issue 11, finding 9 (third bullet): a PAM caller with no privilege of its own.

A screen locker runs PAM as the logged-in user, who cannot read root's state: the
module cannot decide. By default that stays an internal error (now with its own
reason, ``unprivileged-caller``); ``unprivileged=ignore`` on the locker's line makes it
PAM_IGNORE, but only when the process authenticates its own user, so a daemon that
runs PAM as its service uid to check other users is never waved through.

Through pamtester run as a non-root uid (setpriv), the state dir root's 0700 as
installed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.pamenv import REPO_ROOT, PamEnv
from tests.pam_support import enroll, log_text, output

POLICY = "mandatory: {scope: all}\n"


@pytest.fixture
def env(tw: PamEnv) -> PamEnv:
    tw.write_policy(POLICY)
    tw.add_user("mail")  # a service account, as a mail daemon would run PAM
    enroll(tw, "alice")
    tw.service("locker", "unprivileged=ignore")
    tw.service("locker-safe", "unprivileged=ignore failmode=safe")
    return tw


def test_default_is_an_internal_error_with_its_own_reason(env: PamEnv) -> None:
    alice = env.users["alice"].uid
    for user in ("alice", "bob"):  # enrolled, and not enrolled: the module cannot tell
        res = env.pamtester("svc", user, ["secret"], as_uid=alice)
        assert res.rc != 0, res
        assert "unavailable" in output(res)
        assert log_text(res).startswith(
            f"pam_twofa(svc:auth): user={user} rhost=- result=refused "
            "reason=unprivileged-caller failmode=secure error: uid "), res


def test_ignore_lets_a_locker_unlock_with_the_password(env: PamEnv) -> None:
    alice = env.users["alice"].uid
    res = env.pamtester("locker", "alice", ["secret"], as_uid=alice)
    assert res.rc == 0, res
    assert "Verification code" not in output(res)
    assert log_text(res, "locker") == ("pam_twofa(locker:auth): user=alice rhost=- "
                                       "result=ignored reason=unprivileged-caller")
    res = env.pamtester("locker", "alice", ["wrong"], as_uid=alice)
    assert res.rc != 0, res  # PAM_IGNORE is no PAM_SUCCESS: the password decides


def test_ignore_never_for_another_user(env: PamEnv) -> None:
    """A daemon running PAM as its own uid for other users (a mail server): refused."""
    mail = env.users["mail"].uid
    for service in ("locker", "locker-safe"):
        res = env.pamtester(service, "alice", ["secret"], as_uid=mail)
        if service == "locker":
            assert res.rc != 0, res
            assert " result=refused reason=unprivileged-caller failmode=secure " in \
                log_text(res, service), res
        else:  # failmode=safe: the admin's choice for internal errors, as before
            assert " result=ignored reason=unprivileged-caller failmode=safe " in \
                log_text(res, service), res


def test_root_is_not_affected(env: PamEnv) -> None:
    res = env.pamtester("locker", "alice", ["secret", "000000"])
    assert res.rc != 0, res
    assert log_text(res, "locker").endswith("result=refused reason=bad-code failures=1")


def _unprivileged(setpriv: list[str], state_dir: Path) -> str:
    """caller.unprivileged() in a real process started by setpriv with these ids."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from pam_twofa import caller; "
            "print(caller.unprivileged(sys.argv[2]))")
    done = subprocess.run(["setpriv", *setpriv, "--clear-groups", "/usr/bin/python3", "-I",
                           "-c", code, str(REPO_ROOT), str(state_dir)],
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def test_who_counts_as_unprivileged(pam_env: PamEnv, tmp_path: Path) -> None:
    pam_env.allow_uid(4242)
    root_dir = pam_env.state_dir  # root's, 0700
    own = tmp_path / "own"
    own.mkdir()
    os.chown(own, 4242, 4242)
    assert _unprivileged(["--reuid=4242", "--regid=4242"], root_dir) == "True"
    assert _unprivileged(["--reuid=4242", "--regid=4242"], own) == "False"  # its own state
    # a setuid-like process (real uid != effective uid): today's handling
    assert _unprivileged(["--ruid=4242", "--euid=4243", "--regid=4242"], root_dir) == "False"
    assert _unprivileged(["--reuid=4242", "--rgid=4242", "--egid=4243"], root_dir) == "False"
    assert _unprivileged([], root_dir) == "False"  # root
