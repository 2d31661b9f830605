"""Issue 2's acceptance list, through a real C host: pamtester under pam_wrapper +
nss_wrapper, the module loaded from this checkout by absolute path, codes from oathtool.

The password step is pam_matrix (``required``), so "password alone logs in" means the
module returned PAM_IGNORE and the stack still succeeded.  Every decision is also checked
in the module's log line, read from the harness's syslog socket.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa import log
from tests.harness.pamenv import ENTRY_MODULE, PAM_MATRIX, PamEnv, Result, oathtool
from tests.harness.procs import LogSocket, private_tmp_cmd

NOBODY = 65534
PROMPT = "Verification code: "


# ----------------------------------------------------------------------------- helpers
def log_text(res: Result, service: str = "svc") -> str:
    """The one pam_twofa line of this call, without the syslog header."""
    lines = [line for line in res.log_lines if f"pam_twofa({service}:auth):" in line]
    assert len(lines) == 1, res
    header, sep, text = lines[0].partition("]: ")
    assert sep and header.startswith(("<83>", "<85>", "<86>")), lines[0]  # authpriv
    assert "\n" not in text, text
    return text


def output(res: Result) -> str:
    return res.stdout + res.stderr


def wait_mid_step(margin: float = 4.0, period: int = 30) -> None:
    """Sleep past a step boundary closer than ``margin`` s, so codes computed now stay
    in their step while a short sequence of logins runs."""
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.05)


def enroll(env: PamEnv, user: str) -> str:
    done = env.admin("enroll", user, "--json")
    assert done.returncode == 0, done.stderr
    secret: str = json.loads(done.stdout)["secret"]
    return secret


def status(env: PamEnv, user: str) -> dict[str, object]:
    done = env.admin("status", user, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def wrong_code(secret: str) -> str:
    """A code that is no code of the accepted window around now."""
    now = int(time.time())
    near = {oathtool(secret, at=now + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def login(pam: PamEnv, user: str, code: str | None, service: str = "svc",
          **kw: object) -> Result:
    """Password, then ``code`` (None: the module is expected not to ask)."""
    answers = ["secret"] if code is None else ["secret", code]
    return pam.pamtester(service, user, answers, **kw)  # type: ignore[arg-type]


@pytest.fixture
def tw(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.add_user("bob")
    pam_env.add_user("carol", groups=["wheel"])
    pam_env.service("svc")
    return pam_env


# ------------------------------------------------------------------- right / wrong / replay
def test_right_code_in(tw: PamEnv) -> None:
    secret = enroll(tw, "alice")
    res = login(tw, "alice", oathtool(secret), env={"PAM_RHOST": "203.0.113.7"})
    assert res.rc == 0, res
    assert "successfully authenticated" in res.stdout
    assert PROMPT in res.stderr
    assert log_text(res) == (
        "pam_twofa(svc:auth): user=alice rhost=203.0.113.7 result=success reason=ok"
    )
    assert res.log_lines[0].startswith("<86>")  # authpriv.info
    assert status(tw, "alice")["failures"] == 0


def test_code_with_spaces_in(tw: PamEnv) -> None:
    secret = enroll(tw, "alice")
    code = oathtool(secret)
    res = login(tw, "alice", f" {code[:3]} {code[3:]} ")
    assert res.rc == 0, res


def test_wrong_code_refused(tw: PamEnv) -> None:
    secret = enroll(tw, "alice")
    res = login(tw, "alice", wrong_code(secret))
    assert res.rc != 0, res
    assert "Authentication failure" in res.stderr
    assert "Wrong verification code." in output(res)
    assert log_text(res) == (
        "pam_twofa(svc:auth): user=alice rhost=- result=refused reason=bad-code failures=1"
    )
    assert res.log_lines[0].startswith("<85>")  # authpriv.notice
    assert status(tw, "alice")["failures"] == 1


def test_non_ascii_digits_refused(tw: PamEnv) -> None:
    secret = enroll(tw, "alice")
    code = oathtool(secret)
    arabic = "".join(chr(0x660 + int(c)) for c in code)  # the same digits, Arabic-Indic
    res = login(tw, "alice", arabic)
    assert res.rc != 0, res
    assert log_text(res).endswith("result=refused reason=bad-code failures=1")


def test_wrong_password_right_code_refused(tw: PamEnv) -> None:
    secret = enroll(tw, "alice")
    res = tw.pamtester("svc", "alice", ["bad-password", oathtool(secret)])
    assert res.rc != 0, res


def test_same_code_twice_second_refused(tw: PamEnv) -> None:
    secret = enroll(tw, "alice")
    wait_mid_step()
    code = oathtool(secret)
    first = login(tw, "alice", code)
    assert first.rc == 0, first
    second = login(tw, "alice", code)
    assert second.rc != 0, second
    assert log_text(second) == (
        "pam_twofa(svc:auth): user=alice rhost=- result=refused reason=replay failures=1"
    )


def test_code_two_steps_old_refused_one_step_old_accepted(tw: PamEnv) -> None:
    tw.write_policy("totp: {window: 1}\n")
    secret = enroll(tw, "alice")
    wait_mid_step()
    now = int(time.time())
    two_old, one_old = oathtool(secret, at=now - 60), oathtool(secret, at=now - 30)
    assert two_old != oathtool(secret, at=now)  # else the test proves nothing
    res = login(tw, "alice", two_old)
    assert res.rc != 0, res
    assert log_text(res).endswith("result=refused reason=bad-code failures=1")
    # the window is really 1: the step just before is still accepted
    res = login(tw, "alice", one_old)
    assert res.rc == 0, res
    assert log_text(res).endswith("result=success reason=ok")


def test_window_zero_refuses_previous_step(tw: PamEnv) -> None:
    tw.write_policy("totp: {window: 0}\n")
    secret = enroll(tw, "alice")
    wait_mid_step()
    res = login(tw, "alice", oathtool(secret, at=int(time.time()) - 30))
    assert res.rc != 0, res
    assert log_text(res).endswith("reason=bad-code failures=1")


def test_unknown_user_is_prompted_then_refused(tw: PamEnv) -> None:
    res = tw.pamtester("svc", "mallory", ["secret", "123456"])
    assert res.rc != 0, res
    assert PROMPT in res.stderr  # no account enumeration through the prompt
    assert log_text(res).endswith("user=mallory rhost=- result=refused reason=unknown-user")


# --------------------------------------------------------------------------- scope / grace
def test_not_enrolled_scope_none_password_alone(tw: PamEnv) -> None:
    res = login(tw, "alice", None)
    assert res.rc == 0, res
    assert PROMPT not in res.stderr
    assert log_text(res) == (
        "pam_twofa(svc:auth): user=alice rhost=- result=ignored reason=not-enrolled"
    )
    assert not (tw.state_dir / "users" / "alice.json").exists()


def test_not_enrolled_is_ignore_never_success(tw: PamEnv) -> None:
    # `sufficient` stacking (CVE-2025-23013): PAM_SUCCESS here would skip pam_deny.
    tw.service_raw("suff", [
        tw.module_line().replace("auth required", "auth sufficient"),
        "auth required pam_deny.so",
    ])
    res = tw.pamtester("suff", "alice", [])
    assert res.rc != 0, res
    assert log_text(res, "suff").endswith("result=ignored reason=not-enrolled")
    # ... while a proven code does make it sufficient
    secret = enroll(tw, "alice")
    res = tw.pamtester("suff", "alice", [oathtool(secret)])
    assert res.rc == 0, res


def test_scope_admins_grace_over_refused(tw: PamEnv) -> None:
    tw.write_policy("mandatory: {scope: admins}\nenrollment: {grace_days: 0}\n")
    res = login(tw, "alice", None)
    assert res.rc != 0, res
    assert "grace period is over" in output(res)
    assert log_text(res).endswith("user=alice rhost=- result=refused reason=enrollment-required")
    # bob is not an admin: password alone
    res = login(tw, "bob", None)
    assert res.rc == 0, res
    assert log_text(res).endswith("result=ignored reason=not-enrolled")


def test_scope_admins_first_seen_in_the_past_refused(tw: PamEnv) -> None:
    from pam_twofa.clock import Clock
    from pam_twofa.paths import Paths
    from pam_twofa.store import FileStore

    tw.write_policy("mandatory: {scope: admins}\nenrollment: {grace_days: 7}\n")
    store = FileStore(Paths(state_dir=str(tw.state_dir)), Clock())
    with store.update("alice") as st:
        st.first_seen = time.time() - 7 * 86400 - 60
    res = login(tw, "alice", None)
    assert res.rc != 0, res
    assert log_text(res).endswith("result=refused reason=enrollment-required")


def test_scope_admins_inside_grace_in_with_notice(tw: PamEnv) -> None:
    tw.write_policy("mandatory: {scope: admins}\nenrollment: {grace_days: 7}\n")
    t0 = time.time()
    res = login(tw, "alice", None)
    assert res.rc == 0, res
    assert "Two-factor authentication will be required for your account from" in output(res)
    assert "twofa-enroll" in output(res)
    text = log_text(res)
    found = re.fullmatch(r"pam_twofa\(svc:auth\): user=alice rhost=- result=ignored "
                         r"reason=grace grace_until=(\d+)", text)
    assert found, text
    assert t0 + 7 * 86400 - 1 <= int(found[1]) <= time.time() + 7 * 86400
    # the first time seen is kept: a second login has the same deadline
    again = login(tw, "alice", None)
    assert again.rc == 0, again
    assert log_text(again).endswith(f"grace_until={found[1]}")


def test_scope_admins_exempt_user_in(tw: PamEnv) -> None:
    tw.write_policy("mandatory: {scope: admins, exempt_users: [carol]}\n"
                    "enrollment: {grace_days: 0}\n")
    res = login(tw, "carol", None)
    assert res.rc == 0, res
    assert log_text(res).endswith("user=carol rhost=- result=ignored reason=not-enrolled")
    assert login(tw, "alice", None).rc != 0  # same groups, not exempt


def test_scope_all_and_selected(tw: PamEnv) -> None:
    tw.write_policy("mandatory: {scope: selected, users: [bob]}\nenrollment: {grace_days: 0}\n")
    assert login(tw, "bob", None).rc != 0
    assert login(tw, "alice", None).rc == 0
    tw.write_policy("mandatory: {scope: all}\nenrollment: {grace_days: 0}\n")
    assert login(tw, "alice", None).rc != 0


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
def vt() -> Iterator[PamEnv]:
    """Like ``tw``, rooted outside /tmp: for hosts that each get a private /tmp."""
    root = Path(tempfile.mkdtemp(prefix="twofa-core-", dir="/var/tmp"))
    env = PamEnv(root)
    try:
        env.add_user("alice", groups=["wheel"])
        env.service("svc")
        yield env
    finally:
        env.close()
        shutil.rmtree(root, ignore_errors=True)


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
        procs = [
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=penv, cwd=env.root, text=True)
            for _ in range(n)
        ]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"secret\n{code}\n")
            proc.stdin.close()
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            lines.extend(sock.drain())
            time.sleep(0.01)
        codes = [p.wait(timeout=5) for p in procs]
        lines.extend(sock.drain())
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
    vt.write_policy("lockout: {max_failures: 100}\n")  # replays count as wrong codes
    secret = enroll(vt, "alice")
    wait_mid_step()
    codes, lines = run_concurrently(vt, "alice", oathtool(secret), 8)
    assert sorted(codes)[:2] == [0, 1], codes  # exactly one success ...
    assert codes.count(0) == 1, codes
    assert sum(" result=success reason=ok" in x for x in lines) == 1, lines
    assert sum(" reason=replay " in x for x in lines) == 7, lines  # ... the rest replays


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
    '{"version": 2, "user": "alice"}',
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
    [(NOBODY, 0o000, "state-error"), (0, 0o700, "insecure-state")],
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
def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "ev\nil", "a" * 300, "../../../../tmp/pwned"],
    ids=["dotdot", "slash", "newline", "300-chars", "deep-dotdot"],
)
def test_bad_user_names_refused_nothing_written(tw: PamEnv, name: str) -> None:
    tw.write_policy("mandatory: {scope: all}\nenrollment: {grace_days: 7}\n")
    assert login(tw, "bob", None).rc == 0  # state dirs, policy cache and bob's first_seen
    tw.add_user(name.replace("/", "_").replace("\n", "_")[:200] + "z")  # harmless twin
    before = _tree(tw.root.parent)
    res = tw.pamtester("svc", name, ["secret", "123456"])
    assert res.rc != 0, res
    assert PROMPT in res.stderr
    text = log_text(res)
    assert text.endswith(" rhost=- result=refused reason=bad-user-name"), text
    assert text.startswith(f"pam_twofa(svc:auth): user={log.escape(name)} rhost=-"), text
    after = _tree(tw.root.parent)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed <= {os.path.relpath(tw.log_socket, tw.root.parent)}, changed
    assert not Path("/tmp/pwned.json").exists()


# ------------------------------------------------------------------------------ PAM_SILENT
def test_pam_silent_suppresses_messages(tw: PamEnv) -> None:
    secret = enroll(tw, "alice")
    bad = wrong_code(secret)
    loud = login(tw, "alice", bad)
    assert "Wrong verification code." in output(loud)
    quiet = login(tw, "alice", bad, op="authenticate(PAM_SILENT)")
    assert quiet.rc != 0, quiet
    assert "Wrong verification code." not in output(quiet)
    assert PROMPT in quiet.stderr  # prompts are not messages: still asked
    assert log_text(quiet).endswith("reason=bad-code failures=2")
    tw.write_policy("mandatory: {scope: admins}\n")
    res = login(tw, "carol", None, op="authenticate(PAM_SILENT)")
    assert res.rc == 0, res
    assert "Two-factor" not in output(res)
    assert re.search(r" result=ignored reason=grace grace_until=\d+$", log_text(res))
    loud = login(tw, "carol", None)
    assert "Two-factor authentication will be required" in output(loud)


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
    core = copy / "pam_twofa" / "core.py"
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
