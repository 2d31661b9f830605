"""Single-prompt mode: one "Password and verification code" prompt. ``single_prompt=ask``
(before the password module) splits the answer and hands the password on as PAM_AUTHTOK;
``single_prompt=verify`` (after the requisite password module) checks the code.

The password module must take PAM_AUTHTOK without prompting (``use_first_pass``).
pam_matrix always prompts, so the stacks here use pam_exec ``expose_authtok`` with a
checker of the same passdb: a real PAM module that uses an existing PAM_AUTHTOK.

Issue 11, finding 6: the old one-line form checked (and counted) the code before any
password check, so anyone who knew a user name could lock the user out, and learn
whether a code was right.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from pam_twofa import single
from tests.harness.pamenv import PAM_SET_ITEMS, PamEnv, oathtool
from tests.harness.sshclient import Login
from tests.harness.sshd import SshServer, authtok_line
from tests.harness.wait import wait_fresh_step
from tests.pam_support import status, wrong_code

PROMPT = "Password and verification code:"
POLICY = "mandatory: {scope: selected, users: [alice]}\ntrusted_devices: {enabled: true}\n"


@pytest.mark.parametrize(("answer", "digits", "expected"), [
    ("secret123456", 6, ("secret", "123456")),
    ("12345678", 6, ("12", "345678")),
    ("secret12345678", 8, ("secret", "12345678")),
    ("secret12345", 6, ("secret12345", "")),  # too few digits: no code
    ("123456", 6, ("", "123456")),
    ("secret١٢٣٤٥٦", 6, ("secret١٢٣٤٥٦", "")),  # non-ASCII digits are not a code
    ("secret123456", None, ("secret123456", "")),  # not enrolled: all of it is the password
    ("", 6, ("", "")),
])
def test_split(answer: str, digits: int | None, expected: tuple[str, str]) -> None:
    assert single.split(answer, digits) == expected


@pytest.fixture
def env(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("alice")
    pam_env.add_user("bob")  # out of scope, not enrolled
    pam_env.write_policy(POLICY)
    pam_env.service_raw("single", [
        f"auth required {PAM_SET_ITEMS}",
        pam_env.module_line("single_prompt=ask"),
        requisite(authtok_line(pam_env)),
        pam_env.module_line("single_prompt=verify"),
        "account required pam_permit.so",
    ])
    return pam_env


def requisite(line: str) -> str:
    assert line.startswith("auth required ")
    return line.replace("auth required ", "auth requisite ", 1)


def enroll(env: PamEnv) -> str:
    res = env.admin("enroll", "alice", "--json")
    assert res.returncode == 0, res.stderr
    return str(json.loads(res.stdout)["secret"])


def test_pamtester_one_prompt_password_and_code(env: PamEnv) -> None:
    secret = enroll(env)
    res = env.pamtester("single", "alice", ["secret" + oathtool(secret)])
    assert res.rc == 0, res
    assert res.stderr.count(PROMPT) == 1 and "Verification code" not in res.stderr.replace(
        PROMPT, "")
    assert "Password: " not in res.stderr  # the password module did not ask again
    [line] = [x for x in res.log_lines if "result=" in x]
    assert line.endswith("result=success reason=ok")


def test_pamtester_wrong_password_counts_nothing_and_tells_nothing(env: PamEnv) -> None:
    secret = enroll(env)
    wait_fresh_step()
    for answer in ["secreT" + wrong_code(secret), "secreT", "", "x" * 7]:
        res = env.pamtester("single", "alice", [answer])
        assert res.rc != 0, res
        assert "Wrong verification code" not in res.stdout + res.stderr  # no verdict
        assert not [x for x in res.log_lines if "result=" in x], res  # no decision at all
    assert status(env, "alice")["failures"] == 0
    # a right code behind a wrong password is not used up: it still logs in
    code = oathtool(secret)
    assert env.pamtester("single", "alice", ["secreT" + code]).rc != 0
    res = env.pamtester("single", "alice", ["secret" + code])
    assert res.rc == 0, res
    [line] = [x for x in res.log_lines if "result=" in x]
    assert line.endswith("result=success reason=ok"), line


def test_pamtester_right_password_wrong_code_counted(env: PamEnv) -> None:
    secret = enroll(env)
    res = env.pamtester("single", "alice", ["secret" + wrong_code(secret)])
    assert res.rc != 0, res
    assert "Wrong verification code." in res.stdout + res.stderr
    [line] = [x for x in res.log_lines if "result=" in x]
    assert line.endswith("result=refused reason=bad-code failures=1"), line
    # No code at all: refused, and not counted, like an empty answer at the code
    # prompt (no guess was made; issue 11's rule, verify.verify).
    res = env.pamtester("single", "alice", ["secret"])
    assert res.rc != 0, res
    [line] = [x for x in res.log_lines if "result=" in x]
    assert line.endswith("result=refused reason=empty"), line
    assert status(env, "alice")["failures"] == 1


def test_pamtester_old_one_line_form_cannot_lock_out(pam_env: PamEnv) -> None:
    """The old form: the module alone before the password module. It used to count
    wrong codes of logins with a wrong password (three of them locked alice). Now the
    bare argument is refused, whatever failmode says, and counts nothing."""
    pam_env.add_user("alice")
    pam_env.write_policy(POLICY + "lockout: {max_failures: 3}\n")
    pam_env.service_raw("old", [
        f"auth required {PAM_SET_ITEMS}",
        pam_env.module_line("single_prompt failmode=safe"),
        authtok_line(pam_env),
        "account required pam_permit.so",
    ])
    secret = enroll(pam_env)
    for _ in range(3):  # an attacker who knows only the user name
        res = pam_env.pamtester("old", "alice", ["guess" + wrong_code(secret)])
        assert res.rc != 0, res
        assert "Wrong verification code" not in res.stdout + res.stderr
    assert status(pam_env, "alice")["failures"] == 0
    res = pam_env.pamtester("old", "alice", ["secret" + oathtool(secret)])
    assert res.rc != 0, res  # never silently "ask" only: that would check no code
    [line] = [x for x in res.log_lines if "result=" in x]
    assert "result=refused reason=bad-argument failmode=secure error: single_prompt " \
        "takes a value" in line, line


def test_pamtester_verify_without_ask_is_a_stack_error(env: PamEnv) -> None:
    enroll(env)
    env.service_raw("noask", [
        f"auth required {PAM_SET_ITEMS}",
        env.module_line("single_prompt=verify"),
        "auth required pam_permit.so",
    ])
    res = env.pamtester("noask", "alice", [])
    assert res.rc != 0, res
    [line] = [x for x in res.log_lines if "result=" in x]
    assert "result=refused reason=bad-stack failmode=secure error: " in line, line


def test_pamtester_user_out_of_scope_whole_answer_is_password(env: PamEnv) -> None:
    enroll(env)
    res = env.pamtester("single", "bob", ["secret"])
    assert res.rc == 0, res
    assert "result=ignored reason=not-enrolled" in "".join(res.log_lines)
    res = env.pamtester("single", "bob", ["secret123456"])
    assert res.rc != 0, res  # no digits are taken off a user without 2FA


def test_sshd_single_prompt(sshd_env: SshServer, client: Callable[..., Login]) -> None:
    server = sshd_env
    server.add_user("alice")
    server.add_user("bob")
    server.write_policy(POLICY)
    server.stack(server.module_line("single_prompt=ask"), requisite(server.authtok_line()),
                 server.module_line("single_prompt=verify"), password=False)
    secret = server.enroll("alice")
    server.start()
    res = client(server, "alice", [(PROMPT, "secret" + server.next_code("alice", secret))])
    assert res.ok, res
    assert [p.rsplit(") ", 1)[-1] for p in res.prompts] == ["Password and verification code: "]
    assert "result=success reason=ok" in res.result_line()  # no trust offer: one prompt only
    bad = client(server, "alice", [(PROMPT, "secreT000000")])  # wrong password: no verdict
    assert not bad.ok, bad
    assert not bad.saw("Wrong verification code"), bad
    assert not [x for x in server.drain_log() if "result=" in x]
    bad = client(server, "alice", [(PROMPT, "secret000000")])
    assert not bad.ok, bad
    assert "result=refused reason=bad-code failures=1" in bad.result_line()
    bob = client(server, "bob", [(PROMPT, "secret")])
    assert bob.ok, bob
    assert "result=ignored reason=not-enrolled" in bob.result_line()
