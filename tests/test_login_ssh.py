"""End to end: a real sshd (tests/harness/sshd.py) and two real clients, OpenSSH ``ssh``
(askpass) and paramiko, against the module under pam_python.

Every case runs with both clients. Users are mapped onto the sshd's uid (65534).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.sshclient import Login, make_key
from tests.harness.sshd import KEY_AND_KBD, SshServer

Client = Callable[..., Login]
PW = ("Password:", "secret")
POLICY = "mandatory: {scope: selected, users: [alice]}\n"


@pytest.fixture
def server(sshd_env: SshServer) -> SshServer:
    sshd_env.add_user("alice")
    sshd_env.add_user("bob")  # not in scope, not enrolled
    sshd_env.write_policy(POLICY + "lockout: {max_failures: 2, lock_seconds: 600}\n")
    return sshd_env


def code_answers(server: SshServer, secret: str, user: str = "alice") -> list[tuple[str, str]]:
    return [PW, ("Verification code:", server.next_code(user, secret))]


def test_password_and_code(server: SshServer, client: Client) -> None:
    secret = server.enroll("alice")
    server.start()
    res = client(server, "alice", code_answers(server, secret), command="echo in")
    assert res.ok, res
    assert res.output.strip() == "in"
    assert [p.rsplit(") ", 1)[-1] for p in res.prompts] == ["Password: ", "Verification code: "]
    assert res.result_line().endswith("user=alice rhost=127.0.0.1 result=success reason=ok")


def test_wrong_code_refused(server: SshServer, client: Client) -> None:
    secret = server.enroll("alice")
    server.start()
    good = server.next_code("alice", secret)
    wrong = f"{(int(good) + 1) % 1000000:06d}"
    res = client(server, "alice", [PW, ("Verification code:", wrong)])
    assert not res.ok, res
    assert res.saw("Verification code:")
    line = res.result_line()
    assert " result=refused reason=bad-code failures=1" in line


def test_wrong_password_right_code_refused(server: SshServer, client: Client) -> None:
    secret = server.enroll("alice")
    server.start()
    res = client(server, "alice", [("Password:", "nope"),
                                   ("Verification code:", server.next_code("alice", secret))])
    assert not res.ok, res


def test_lockout(server: SshServer, client: Client) -> None:
    secret = server.enroll("alice")
    server.start()
    for n in (1, 2):
        res = client(server, "alice", [PW, ("Verification code:", "000000")])
        assert not res.ok, res
        assert f"failures={n}" in res.result_line()
    assert "locked_until=" in res.result_line()
    res = client(server, "alice", code_answers(server, secret))  # the right code, locked
    assert not res.ok, res
    assert " result=refused reason=locked locked_until=" in res.result_line()
    assert server.admin("unlock", "alice").returncode == 0
    res = client(server, "alice", code_answers(server, secret))
    assert res.ok, res


def test_key_and_code_without_password(sshd_env: SshServer, client: Client,
                                       tmp_path: Path) -> None:
    server = sshd_env
    server.auth_methods = KEY_AND_KBD
    server.key_only_stack()
    assert "pam_matrix" not in (server.env.pam_dir / server.service).read_text()
    server.add_user("alice")
    server.write_policy(POLICY)
    key, pub = make_key(tmp_path / "k")
    server.authorize_key("alice", pub)
    secret = server.enroll("alice")
    server.start()
    res = client(server, "alice", [("Verification code:", server.next_code("alice", secret))],
                 key=key)
    assert res.ok, res
    assert not res.saw("Password")
    assert [p.rsplit(") ", 1)[-1] for p in res.prompts] == ["Verification code: "]
    assert "result=success reason=ok" in res.result_line()
    wrong = client(server, "alice", [("Verification code:", "000000")], key=key)
    assert not wrong.ok, wrong
    assert "reason=bad-code" in wrong.result_line()
    no_key = client(server, "alice", [("Verification code:", "000000")])
    assert not no_key.ok, no_key
    assert no_key.prompts == []  # publickey must come first: PAM never ran


def test_out_of_scope_user_password_only(server: SshServer, client: Client) -> None:
    server.enroll("alice")
    server.start()
    res = client(server, "bob", [PW])
    assert res.ok, res
    assert [p.rsplit(") ", 1)[-1] for p in res.prompts] == ["Password: "]
    assert res.result_line().endswith("user=bob rhost=127.0.0.1 result=ignored "
                                      "reason=not-enrolled")
    bad = client(server, "bob", [("Password:", "wrong")])
    assert not bad.ok, bad  # PAM_IGNORE is no PAM_SUCCESS: the password still decides
