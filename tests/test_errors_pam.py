"""Errors through pamtester: failmode, corrupt state, bad policy, bad module arguments,
unreadable state, bad user names; the six pam_sm_* entries and where the module is loaded
from.  Helpers and the setup are in tests/pam_support.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pam_twofa import log
from tests.harness.pamenv import ENTRY_MODULE, PamEnv, oathtool
from tests.pam_support import NOBODY, PROMPT, enroll, log_text, login, output, tree, wrong_code

# ----------------------------------------------------------------------------- failmode
TRUNCATED = '{"version": 1, "user": "alice",'


def _corrupt(env: PamEnv, content: str = TRUNCATED) -> None:
    enroll(env, "alice")
    (env.state_dir / "users" / "alice.json").write_text(content)


def _unknown_key_policy(env: PamEnv, failmode: str | None = None) -> None:
    text = "mandatory:\n  scope: admins\n  sccope: all\n"
    if failmode:
        text = f"failmode: {failmode}\n" + text
    env.write_policy(text)


@pytest.mark.parametrize("content", [
    TRUNCATED,
    "",  # a zero-length file (disk full) must not read as "not enrolled"
    '{"version": 1, "user": "alice", "enrolled": "yes"}',
    '{"version": 1, "user": "alice", "enrolled": false, "colour": "red"}',
    '{"version": 3, "user": "alice"}',
    '{"version": 1, "user": "bob"}',
], ids=["truncated", "empty", "bad-type", "unknown-field", "newer-version", "other-user"])
def test_corrupt_state_refused_secure(tw: PamEnv, content: str) -> None:
    _corrupt(tw, content)
    res = login(tw, "alice", "123456")
    assert res.rc != 0, res
    assert "unavailable" in output(res)
    text = log_text(res)
    assert text.startswith("pam_twofa(svc:auth): user=alice rhost=- result=refused "
                           "reason=corrupt-state failmode=secure error: "), text
    assert res.log_lines[0].startswith("<83>")  # authpriv.err


def test_corrupt_state_ignored_safe(tw: PamEnv) -> None:
    _corrupt(tw)
    tw.service("safe", "failmode=safe")
    res = login(tw, "alice", "123456", service="safe")
    assert res.rc == 0, res
    assert "unavailable" not in output(res)
    assert log_text(res, "safe").startswith(
        "pam_twofa(safe:auth): user=alice rhost=- result=ignored reason=corrupt-state "
        "failmode=safe error: ")
    tw.write_policy("failmode: safe\n")  # the same through the policy file
    res = login(tw, "alice", "123456")
    assert res.rc == 0, res
    assert " result=ignored reason=corrupt-state failmode=safe " in log_text(res)


def test_log_fields_are_escaped(tw: PamEnv) -> None:
    res = login(tw, "bob", None, env={"PAM_RHOST": "evil host\nresult=success"})
    assert res.rc == 0, res
    assert log_text(res) == ("pam_twofa(svc:auth): user=bob rhost=evil\\x20host\\x0aresult"
                             "\\x3dsuccess result=ignored reason=not-enrolled")


def test_policy_unknown_key_refused_secure(tw: PamEnv) -> None:
    _unknown_key_policy(tw)
    res = login(tw, "bob", None)
    assert res.rc != 0, res
    text = log_text(res)
    assert text.startswith("pam_twofa(svc:auth): user=bob rhost=- result=refused "
                           "reason=bad-policy failmode=secure error: "), text
    assert f"{tw.policy}:3:" in text and "sccope" in text


def test_policy_unknown_key_safe_by_argument(tw: PamEnv) -> None:
    _unknown_key_policy(tw)
    tw.service("safe", "failmode=safe")
    res = login(tw, "bob", None, service="safe")
    assert res.rc == 0, res
    assert " result=ignored reason=bad-policy failmode=safe " in log_text(res, "safe")


def test_policy_unknown_key_safe_by_policy_failmode(tw: PamEnv) -> None:
    _unknown_key_policy(tw, failmode="safe")
    res = login(tw, "bob", None)
    assert res.rc == 0, res
    text = log_text(res)
    assert " result=ignored reason=bad-policy failmode=safe " in text
    assert f"{tw.policy}:4:" in text
    # the module argument wins over the file's hint
    tw.service("strict", "failmode=secure")
    res = login(tw, "bob", None, service="strict")
    assert res.rc != 0, res
    assert " result=refused reason=bad-policy failmode=secure " in log_text(res, "strict")


def test_bad_module_argument_refused(tw: PamEnv) -> None:
    # log_socket= (given by the harness) still applies, so the line is where it is read
    for args in ("failmode=maybe", "policy=relative.yaml", "nosuchflag", "debug=1"):
        tw.service("badarg", args)
        res = login(tw, "bob", "123456", service="badarg")
        assert res.rc != 0, (args, res)
        assert "Two-factor authentication is unavailable" in output(res), args
        assert len(res.log_lines) == 1, (args, res)
        assert ("result=refused reason=bad-argument failmode=secure error: "
                in res.log_lines[0]), args


def test_bad_module_argument_follows_failmode_safe(tw: PamEnv) -> None:
    tw.service("badarg", "failmode=safe nosuchflag")
    res = login(tw, "bob", "123456", service="badarg")
    assert res.rc == 0, res  # ignored: the password (pam_matrix) decides
    assert len(res.log_lines) == 1, res
    assert "result=ignored reason=bad-argument failmode=safe error: " in res.log_lines[0]
    assert "'nosuchflag'" in res.log_lines[0]


def _unreadable_state(env: PamEnv, owner: int, mode: int) -> None:
    env.add_user("nob", uid=NOBODY, groups=["wheel"])
    os.chown(env.state_dir, owner, owner)
    env.state_dir.chmod(mode)


@pytest.mark.parametrize(
    ("owner", "mode", "reason"),
    # root's state seen by an unprivileged process: its own reason (test_unprivileged_pam.py)
    [(NOBODY, 0o000, "state-error"), (0, 0o700, "unprivileged-caller")],
    ids=["mode-000", "other-owner"],
)
def test_unreadable_state_dir(tw: PamEnv, owner: int, mode: int, reason: str) -> None:
    _unreadable_state(tw, owner, mode)
    tw.service("safe", "failmode=safe")
    try:
        res = login(tw, "nob", "123456", as_uid=NOBODY)
        assert res.rc != 0, res
        text = log_text(res)
        assert text.startswith("pam_twofa(svc:auth): user=nob rhost=- result=refused "
                               f"reason={reason} failmode=secure error: "), text
        res = login(tw, "nob", "123456", service="safe", as_uid=NOBODY)
        assert res.rc == 0, res
        assert f" result=ignored reason={reason} failmode=safe " in log_text(res, "safe")
        tw.write_policy("failmode: safe\n")  # the same through the policy file
        res = login(tw, "nob", "123456", as_uid=NOBODY)
        assert res.rc == 0, res
        assert f" result=ignored reason={reason} failmode=safe " in log_text(res)
    finally:
        os.chown(tw.state_dir, 0, 0)
        tw.state_dir.chmod(0o700)


# ---------------------------------------------------------------------------- user names

@pytest.mark.parametrize(
    "name", ["../x", "a/b", "ev\nil", "a" * 300, "../../../../tmp/pwned"],
    ids=["dotdot", "slash", "newline", "300-chars", "deep-dotdot"],
)
def test_bad_user_names_refused_nothing_written(tw: PamEnv, name: str) -> None:
    tw.write_policy("mandatory: {scope: all}\nenrollment: {grace_days: 7}\n")
    assert login(tw, "bob", None).rc == 0  # state dirs, policy cache and bob's first_seen
    tw.add_user(name.replace("/", "_").replace("\n", "_")[:200] + "z")  # harmless twin
    before = tree(tw.root.parent)
    res = tw.pamtester("svc", name, ["secret", "123456"])
    assert res.rc != 0, res
    assert PROMPT in res.stderr
    text = log_text(res)
    assert text.endswith(" rhost=- result=refused reason=bad-user-name"), text
    assert text.startswith(f"pam_twofa(svc:auth): user={log.escape(name)} rhost=-"), text
    after = tree(tw.root.parent)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {os.path.relpath(tw.log_socket, tw.root.parent)}, changed
    assert not Path("/tmp/pwned.json").exists()


# ------------------------------------------------------------------- entries and loading
def test_all_six_entries_return_deliberate_codes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("pam_entry_under_test", ENTRY_MODULE)
    assert spec and spec.loader
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)

    class Handle:  # distinct values, so a wrong constant cannot pass by accident
        PAM_SUCCESS, PAM_IGNORE, PAM_AUTH_ERR, PAM_SERVICE_ERR = 1000, 1025, 1007, 1003

    h = Handle()
    assert entry.pam_sm_setcred(h, 0, [str(ENTRY_MODULE)]) == 1000
    for name in ("acct_mgmt", "chauthtok", "open_session", "close_session"):
        assert getattr(entry, f"pam_sm_{name}")(h, 0, [str(ENTRY_MODULE)]) == 1025, name
    assert callable(entry.pam_sm_authenticate)
    entries = sorted(n for n in vars(entry) if n.startswith("pam_sm_"))
    assert entries == sorted(f"pam_sm_{n}" for n in (
        "authenticate", "setcred", "acct_mgmt", "chauthtok", "open_session", "close_session"))


def test_other_entries_through_pam(tw: PamEnv) -> None:
    # ignore=1 skips pam_deny; any other code (success included) fails the stack
    lines = []
    for kind in ("account", "session", "password"):
        lines += [f"{kind} [ignore=1 default=bad] pam_python.so {ENTRY_MODULE}",
                  f"{kind} required pam_deny.so", f"{kind} required pam_permit.so"]
    tw.service_raw("others", lines)
    for op in ("acct_mgmt", "open_session", "close_session", "chauthtok"):
        res = tw.pamtester("others", "alice", [], op=op)
        assert res.rc == 0, (op, res)
    # setcred: pamtester has no such operation; pypamtest drives libpam directly
    tw.service_raw("cred", [f"auth [success=ok default=bad] pam_python.so {ENTRY_MODULE}"])
    code = ("import pypamtest as p\n"
            "p.run_pamtest('alice', 'cred', [p.TestCase(p.PAMTEST_SETCRED, expected_rv=0)])\n"
            "try:\n"
            "    p.run_pamtest('alice', 'cred', [p.TestCase(p.PAMTEST_SETCRED, expected_rv=25)])\n"
            "except p.PamTestError:\n"
            "    print('setcred-is-success')\n")
    done = subprocess.run(["/usr/bin/python3", "-c", code], env=tw.wrapper_env(),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "setcred-is-success"


def test_module_found_from_its_own_location_through_a_symlink(tw: PamEnv) -> None:
    # A copy of the package whose prompt differs: what pamtester shows proves which
    # package the module loaded (the copy, through the symlink), whatever PYTHONPATH says.
    copy = tw.root / "usr-lib" / "python3" / "dist-packages"
    shutil.copytree(ENTRY_MODULE.parent, copy / "pam_twofa",
                    ignore=shutil.ignore_patterns("__pycache__"))
    core = copy / "pam_twofa" / "login.py"
    core.write_text(core.read_text().replace('CODE_PROMPT = "Verification code: "',
                                             'CODE_PROMPT = "Copied code: "'))
    security = tw.root / "lib" / "security"
    security.mkdir(parents=True)
    link = security / "pam_twofa.py"
    link.symlink_to(copy / "pam_twofa" / "pam_entry.py")
    tw.service("linked", module=link)
    secret = enroll(tw, "alice")
    res = login(tw, "alice", oathtool(secret), service="linked",
                env={"PYTHONPATH": "/nonexistent"})
    assert res.rc == 0, res
    assert "Copied code: " in res.stderr and PROMPT not in res.stderr
    assert log_text(res, "linked").endswith("result=success reason=ok")
    # and the checkout's own module, by absolute path, under the same empty PYTHONPATH
    res = login(tw, "alice", wrong_code(secret), env={"PYTHONPATH": "/nonexistent"})
    assert PROMPT in res.stderr
    assert log_text(res).endswith("reason=bad-code failures=1")


def test_longest_valid_user_name_logs_in(tw: PamEnv) -> None:
    from pam_twofa.store import MAX_NAME_BYTES

    name = "u" * MAX_NAME_BYTES
    tw.add_user(name)
    secret = enroll(tw, name)
    res = login(tw, name, oathtool(secret))
    assert res.rc == 0, res
    assert log_text(res).endswith("result=success reason=ok")
    res = login(tw, name + "u", "123456")  # one byte more: refused before any path
    assert log_text(res).endswith("reason=bad-user-name")
