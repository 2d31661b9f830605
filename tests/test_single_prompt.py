"""Single-prompt mode (module argument ``single_prompt``): one "Password and verification
code" prompt, the trailing digits checked as the code, the rest handed on as PAM_AUTHTOK.

The password module after it must take PAM_AUTHTOK without prompting (``use_first_pass``).
pam_matrix always prompts, so the stacks here use pam_exec ``expose_authtok`` with a
checker of the same passdb: a real PAM module that uses an existing PAM_AUTHTOK.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from pam_twofa import single
from tests.harness.pamenv import PAM_SET_ITEMS, PamEnv, oathtool
from tests.harness.sshclient import Login
from tests.harness.sshd import SshServer, authtok_line

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
        pam_env.module_line("single_prompt"),
        authtok_line(pam_env),
        "account required pam_permit.so",
    ])
    return pam_env


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


def test_pamtester_wrong_code_or_password_refused(env: PamEnv) -> None:
    secret = enroll(env)
    code = oathtool(secret)
    wrong = f"{(int(code) + 1) % 1000000:06d}"
    res = env.pamtester("single", "alice", ["secret" + wrong])
    assert res.rc != 0, res
    assert "reason=bad-code" in "".join(res.log_lines)
    res = env.pamtester("single", "alice", ["secreT" + oathtool(secret, at=time.time() + 30)])
    assert res.rc != 0, res  # the code was right; the password module refuses
    assert "result=success" in "".join(res.log_lines)
    res = env.pamtester("single", "alice", ["secret"])  # no code at all
    assert res.rc != 0, res


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
    server.stack(server.module_line("single_prompt"), server.authtok_line(), password=False)
    secret = server.enroll("alice")
    server.start()
    res = client(server, "alice", [(PROMPT, "secret" + server.next_code("alice", secret))])
    assert res.ok, res
    assert [p.rsplit(") ", 1)[-1] for p in res.prompts] == ["Password and verification code: "]
    assert "result=success reason=ok" in res.result_line()  # no trust offer: one prompt only
    bad = client(server, "alice", [(PROMPT, "secret000000")])
    assert not bad.ok, bad
    bob = client(server, "bob", [(PROMPT, "secret")])
    assert bob.ok, bob
    assert "result=ignored reason=not-enrolled" in bob.result_line()
