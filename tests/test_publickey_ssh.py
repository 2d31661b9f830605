"""Issue 11, finding 7: the key + code stack (the module, then pam_permit, no password)
through a real sshd.

When sshd does not require a key first (``AuthenticationMethods keyboard-interactive``,
e.g. set by another sshd_config file), that stack let a user out of scope in with
nothing and an enrolled user with the code alone. ``require_publickey`` refuses unless
SSH_AUTH_INFO_0 (set by sshd in the PAM environment) lists a completed publickey method.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pam_twofa import pamface
from tests.harness.sshclient import CLIENTS, Login, make_key
from tests.harness.sshd import KBD, KEY_AND_KBD, SshServer

Client = Callable[..., Login]
CODE = "Verification code:"


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest) -> Client:
    return CLIENTS[request.param]


def key_and_code(server: SshServer, args: str = "") -> None:
    """README's key + code stack: the module, then pam_permit; no password module."""
    server.stack(server.module_line(args), "auth required pam_permit.so", password=False)


@pytest.fixture
def server(sshd_env: SshServer, tmp_path: Path) -> tuple[SshServer, Path, str]:
    sshd_env.add_user("alice")
    sshd_env.add_user("bob")  # out of scope, not enrolled
    sshd_env.write_policy("mandatory: {scope: selected, users: [alice]}\n")
    key, pub = make_key(tmp_path / "k")
    sshd_env.authorize_key("alice", pub)
    sshd_env.authorize_key("bob", pub)
    return sshd_env, key, sshd_env.enroll("alice")


def test_kbd_only_sshd_without_the_argument_lets_anyone_in(
        server: tuple[SshServer, Path, str], client: Client) -> None:
    """The attack, reproduced: no key, no password."""
    sshd, _, secret = server
    sshd.auth_methods = KBD
    key_and_code(sshd)
    sshd.start()
    bob = client(sshd, "bob", [])
    assert bob.ok, bob  # nothing asked at all
    assert bob.result_line().endswith("user=bob rhost=127.0.0.1 result=ignored "
                                      "reason=not-enrolled")
    alice = client(sshd, "alice", [(CODE, sshd.next_code("alice", secret))])
    assert alice.ok, alice  # the code alone


def test_kbd_only_sshd_with_require_publickey_refuses_everyone(
        server: tuple[SshServer, Path, str], client: Client) -> None:
    sshd, _, secret = server
    sshd.auth_methods = KBD
    key_and_code(sshd, "require_publickey failmode=safe")  # safe: a refusal, not an error
    sshd.start()
    bob = client(sshd, "bob", [])
    assert not bob.ok, bob
    assert bob.result_line().endswith("user=bob rhost=127.0.0.1 result=refused "
                                      "reason=no-publickey")
    alice = client(sshd, "alice", [(CODE, sshd.next_code("alice", secret))])
    assert not alice.ok, alice
    assert not alice.saw(CODE), alice  # refused before any question
    assert "result=refused reason=no-publickey" in alice.result_line()


def test_key_then_code_still_works_with_require_publickey(
        server: tuple[SshServer, Path, str], client: Client) -> None:
    sshd, key, secret = server
    sshd.auth_methods = KEY_AND_KBD
    key_and_code(sshd, "require_publickey")
    sshd.start()
    alice = client(sshd, "alice", [(CODE, sshd.next_code("alice", secret))], key=key)
    assert alice.ok, alice
    assert [p.rsplit(") ", 1)[-1] for p in alice.prompts] == ["Verification code: "]
    assert "result=success reason=ok" in alice.result_line()
    wrong = client(sshd, "alice", [(CODE, "000000")], key=key)
    assert not wrong.ok, wrong
    assert "reason=bad-code" in wrong.result_line()
    bob = client(sshd, "bob", [], key=key)
    assert bob.ok, bob  # out of scope: the key alone, as the policy says
    assert bob.result_line().endswith("result=ignored reason=not-enrolled")


@pytest.mark.parametrize(("info", "expected"), [
    ("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n", True),
    ("password\npublickey ssh-rsa AAAAB3\n", True),
    ("", False),
    (None, False),
    ("keyboard-interactive\n", False),
    ("publickeyx ssh-ed25519 AAAA\n", False),
    (" publickey ssh-ed25519 AAAA\n", False),
    ("hostbased ssh-ed25519 AAAA publickey\n", False),
])
def test_has_publickey(info: str | None, expected: bool) -> None:
    assert pamface.has_publickey(info) is expected
