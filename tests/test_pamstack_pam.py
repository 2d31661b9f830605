"""``twofa-admin pam enable`` then a login through the stack it wrote: pamtester under
pam_wrapper, the real guard (build/pam_twofa_guard.so) and the checkout's module."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness.pamenv import (
    ENTRY_MODULE,
    GUARD_SO,
    PAM_MATRIX,
    PAM_SET_ITEMS,
    REPO_ROOT,
    PamEnv,
)
from tests.harness.wait import wait_fresh_step
from tests.pam_support import enroll, log_text, status, wrong_code


def test_an_enabled_stack_asks_password_then_code_and_stops_at_a_wrong_password(
        pam_env: PamEnv) -> None:
    """pamtester under pam_wrapper on a service shaped like Debian's sshd: it
    includes a common-auth (pam_matrix in pam_unix's place, then requisite pam_deny),
    and `pam enable` adds the block with the guard that make test builds."""
    guard = GUARD_SO
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.service_raw("common-auth", [
        f"auth [success=1 default=ignore] {PAM_MATRIX} passdb={pam_env.passdb}",
        "auth requisite pam_deny.so",
        "auth required pam_permit.so",
    ], register=False)
    pam_env.service_raw("svc", [
        f"auth required {PAM_SET_ITEMS}",
        # absolute: under pam_wrapper libpam resolves a relative include in /etc/pam.d
        f"@include {pam_env.pam_dir}/common-auth",
        "account required pam_permit.so",
    ])
    args = (f"policy={pam_env.policy} state_dir={pam_env.state_dir} "
            f"log_socket={pam_env.log_socket}")
    done = subprocess.run(
        [sys.executable, "-m", "pam_twofa.cli.admin", "pam", "enable", "svc",
         "--pam-dir", str(pam_env.pam_dir), "--module", str(ENTRY_MODULE),
         "--guard", str(guard), "--module-args", args],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False)
    assert done.returncode == 0 and "warning" not in done.stderr, done
    secret = enroll(pam_env, "alice")
    wait_fresh_step()

    res = pam_env.pamtester("svc", "alice", ["secret", pam_env.oathtool(secret)])
    assert res.rc == 0, res
    assert "result=success" in log_text(res)
    res = pam_env.pamtester("svc", "alice", ["secret", wrong_code(secret)])
    assert res.rc != 0 and "reason=bad-code" in log_text(res), res
    assert status(pam_env, "alice")["failures"] == 1
    # a wrong password ends at requisite pam_deny: no code asked, nothing counted
    res = pam_env.pamtester("svc", "alice", ["wrong", wrong_code(secret)])
    assert res.rc != 0, res
    assert not [x for x in res.log_lines if "pam_twofa(" in x], res
    assert "Verification code" not in res.stdout + res.stderr
    assert status(pam_env, "alice")["failures"] == 1
    # setcred: the guard's success skips pam_python (no module run, no log line)
    res = pam_env.pamtester("svc", "alice", [], op="setcred")
    assert res.rc == 0 and not [x for x in res.log_lines if "pam_twofa(" in x], res
    assert os.path.exists(pam_env.pam_dir / "svc.twofa-bak")
