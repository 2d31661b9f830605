"""The module behind the C guard under a plain host (pamtester, pam_wrapper): logins
behave as before, and what the guard's `success=1` does to setcred, measured.

PAM jumps apply per function (pam.conf(5)).  In a handle where authenticate has not run
(sshd runs setcred in another process than authenticate), the guard's setcred returns
PAM_SUCCESS and `success=1` skips pam_python: no second interpreter start.  In a handle
where authenticate ran first (su, sudo, pamtester "authenticate setcred"), Linux-PAM
replays authenticate's cached return values as setcred's control flow, so the guard's
PAM_IGNORE is replayed and pam_python's setcred runs, in the interpreter already there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.guard_support import build_guard
from tests.harness.pamenv import GUARD_LINE, PAM_MATRIX, PamEnv, oathtool
from tests.harness.sshclient import paramiko_login
from tests.harness.sshd import SshServer
from tests.harness.wait import wait_fresh_step
from tests.pam_support import PROMPT, enroll, log_text, login, wrong_code

PROBE = '''
def _note(argv, what):
    with open(argv[1], "a") as f:
        f.write(what + "\\n")
def pam_sm_authenticate(pamh, flags, argv):
    _note(argv, "authenticate")
    return pamh.PAM_SUCCESS
def pam_sm_setcred(pamh, flags, argv):
    _note(argv, "setcred")
    return pamh.PAM_SUCCESS
'''


def guarded(pam_env: PamEnv) -> PamEnv:
    build_guard()
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.add_user("bob")
    pam_env.service("svc", guard=True)
    assert GUARD_LINE in (pam_env.pam_dir / "svc").read_text().splitlines()
    return pam_env


def test_logins_behind_the_guard(pam_env: PamEnv) -> None:
    tw = guarded(pam_env)
    tw.write_policy("lockout:\n  max_failures: 3\n")  # a policy to compile: yaml is imported
    secret = enroll(tw, "alice")
    wait_fresh_step()
    bad = login(tw, "alice", wrong_code(secret))
    assert bad.rc != 0 and PROMPT in bad.stderr, bad
    assert log_text(bad).endswith("user=alice rhost=- result=refused reason=bad-code failures=1")
    good = login(tw, "alice", oathtool(secret), env={"PAM_RHOST": "203.0.113.7"})
    assert good.rc == 0, good
    assert log_text(good) == (
        "pam_twofa(svc:auth): user=alice rhost=203.0.113.7 result=success reason=ok")
    ignored = login(tw, "bob", None)
    assert ignored.rc == 0 and PROMPT not in ignored.stderr, ignored
    assert log_text(ignored).endswith("user=bob rhost=- result=ignored reason=not-enrolled")
    unknown = tw.pamtester("svc", "mallory", ["secret", "123456"])
    assert unknown.rc != 0 and PROMPT in unknown.stderr, unknown
    assert log_text(unknown).endswith("result=refused reason=unknown-user")


def test_wrong_password_still_refused_behind_the_guard(pam_env: PamEnv) -> None:
    tw = guarded(pam_env)
    secret = enroll(tw, "alice")
    res = tw.pamtester("svc", "alice", ["wrong", oathtool(secret)])
    assert res.rc != 0, res


def probe_services(pam_env: PamEnv, tmp_path: Path) -> Path:
    build_guard()
    pam_env.add_user("alice")
    calls = tmp_path / "calls"
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    password = f"auth required {PAM_MATRIX} passdb={pam_env.passdb}"
    module = f"auth required pam_python.so {probe} {calls}"
    account = "account required pam_permit.so"
    pam_env.service_raw("bare", [password, module, account])
    pam_env.service_raw("guarded", [password, GUARD_LINE, module, account])
    pam_env.service_raw("alone", [GUARD_LINE, module, account])  # no password step
    pam_env.service_raw("trailing", [GUARD_LINE, module, "auth required pam_permit.so", account])
    return calls


def calls_of(pam_env: PamEnv, calls: Path, service: str, op: str,
             answers: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    calls.unlink(missing_ok=True)
    res = pam_env.pamtester(service, "alice", list(answers), op=op)
    return res.rc, calls.read_text().split() if calls.exists() else []


def test_setcred_alone_skips_pam_python(pam_env: PamEnv, tmp_path: Path) -> None:
    """sshd's case: setcred in a handle of its own starts no interpreter behind the guard."""
    calls = probe_services(pam_env, tmp_path)
    assert calls_of(pam_env, calls, "bare", "setcred") == (0, ["setcred"])
    assert calls_of(pam_env, calls, "guarded", "setcred") == (0, [])


def test_authenticate_then_setcred_replays_the_cached_chain(
        pam_env: PamEnv, tmp_path: Path) -> None:
    """su's and sudo's case: one handle, so pam_python's setcred runs (no new start)."""
    calls = probe_services(pam_env, tmp_path)
    assert calls_of(pam_env, calls, "guarded", "authenticate setcred", ("secret",)) == (
        0, ["authenticate", "setcred"])


def test_the_jump_needs_a_positive_module_in_setcred(pam_env: PamEnv, tmp_path: Path) -> None:
    """Jumping over the last module is no "bad jump", but a jump is not a success: a
    setcred whose only other module is skipped fails (PAM_PERM_DENIED).  Every real
    stack has its password step first (pam_unix's setcred succeeds); a stack without
    one needs a module after pam_python (pam_permit, as the key + code stacks have)."""
    calls = probe_services(pam_env, tmp_path)
    assert calls_of(pam_env, calls, "alone", "setcred") == (1, [])
    res = pam_env.pamtester("alone", "alice", [], op="setcred")
    assert "Permission denied" in res.stderr, res  # pam_strerror(PAM_PERM_DENIED)
    assert calls_of(pam_env, calls, "trailing", "setcred") == (0, [])
    assert calls_of(pam_env, calls, "alone", "authenticate") == (0, ["authenticate"])


# ------------------------------------------------------------------ under a real sshd
def test_ssh_login_behind_the_guard(sshd_env: SshServer) -> None:
    build_guard()
    sshd_env.add_user("alice")
    sshd_env.stack(GUARD_LINE, sshd_env.module_line())
    secret = sshd_env.enroll("alice")
    sshd_env.start()
    res = paramiko_login(sshd_env, "alice", [
        ("Password:", "secret"), ("Verification code:", sshd_env.next_code("alice", secret))],
        command="echo in")
    assert res.ok and res.output.strip() == "in", res
    assert res.result_line().endswith("user=alice rhost=127.0.0.1 result=success reason=ok")


@pytest.mark.parametrize(("guard", "expected"), [
    (False, ["authenticate", "setcred"]),  # two interpreter starts per login
    (True, ["authenticate"]),  # sshd's setcred handle jumps over pam_python
])
def test_sshd_setcred_skips_pam_python_behind_the_guard(
        sshd_env: SshServer, tmp_path: Path, guard: bool, expected: list[str]) -> None:
    build_guard()
    sshd_env.add_user("alice")
    notes = tmp_path / "notes"
    notes.mkdir()
    os.chown(notes, sshd_env.uid, sshd_env.uid)
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    sshd_env.stack(*([GUARD_LINE] if guard else []),
                   f"auth required pam_python.so {probe} {notes / 'calls'}")
    sshd_env.start()
    res = paramiko_login(sshd_env, "alice", [("Password:", "secret")], command="echo in")
    assert res.ok and res.output.strip() == "in", res
    assert (notes / "calls").read_text().split() == expected
