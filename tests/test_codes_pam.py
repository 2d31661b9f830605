"""Codes through pamtester: right, wrong, replay, the window, unknown users, scope and
grace, PAM_SILENT.  Helpers and the setup are in tests/pam_support.py."""

from __future__ import annotations

import re
import time

from tests.harness.pamenv import PamEnv, oathtool
from tests.harness.wait import wait_fresh_step
from tests.pam_support import (
    PROMPT,
    enroll,
    log_text,
    login,
    output,
    status,
    wrong_code,
)


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
    wait_fresh_step()
    code = oathtool(secret)
    first = login(tw, "alice", code)
    assert first.rc == 0, first
    second = login(tw, "alice", code)
    assert second.rc != 0, second
    # said as such, and not counted: ssh then sudo within one step (issue 12 item 1)
    assert "That code was already used; wait for the next one." in output(second)
    assert "Wrong verification code" not in output(second)
    assert log_text(second) == (
        "pam_twofa(svc:auth): user=alice rhost=- result=refused reason=replay"
    )
    assert status(tw, "alice")["failures"] == 0


def test_empty_answer_refused_and_not_counted(tw: PamEnv) -> None:
    tw.write_policy("lockout: {max_failures: 1}\n")
    enroll(tw, "alice")
    for _ in range(3):
        res = login(tw, "alice", "")
        assert res.rc != 0, res
        assert "No verification code was entered." in output(res)
        assert log_text(res).endswith("result=refused reason=empty")
    st = status(tw, "alice")
    assert st["failures"] == 0 and st["locked"] is False


def test_code_two_steps_old_refused_one_step_old_accepted(tw: PamEnv) -> None:
    tw.write_policy("totp: {window: 1}\n")
    secret = enroll(tw, "alice")
    wait_fresh_step()
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
    wait_fresh_step()
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
    from pam_twofa.filestore import FileStore
    from pam_twofa.paths import Paths

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

