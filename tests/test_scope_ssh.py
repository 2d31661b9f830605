"""Exempt networks and per-service rules (issue 15 items 1-2) through a real sshd on
127.0.0.1 (tests/harness/sshd.py, PAM service ``sshd-twofa``) with both clients: the
client address comes from sshd's SSH_CONNECTION (the TCP peer, 127.0.0.1 here)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness.sshclient import Login
from tests.harness.sshd import SshServer

Client = Callable[..., Login]
PW = ("Password:", "secret")


@pytest.fixture
def server(sshd_env: SshServer) -> SshServer:
    sshd_env.add_user("alice")
    return sshd_env


def test_loopback_exempt_no_code_asked(server: SshServer, client: Client) -> None:
    server.write_policy("mandatory: {scope: all}\nexempt_networks: [127.0.0.0/8]\n")
    server.enroll("alice")
    server.start()
    res = client(server, "alice", [PW], command="echo in")
    assert res.ok and res.output.strip() == "in", res
    assert not res.saw("Verification code"), res
    assert res.result_line().endswith(
        "user=alice rhost=127.0.0.1 result=ignored reason=exempt-network "
        "address=127.0.0.1 network=127.0.0.0/8")


def test_not_exempt_code_asked(server: SshServer, client: Client) -> None:
    # the top-level list holds loopback, the service's own list replaces it
    server.write_policy("mandatory: {scope: all}\nexempt_networks: [127.0.0.0/8]\n"
                        "services:\n  sshd-twofa: {exempt_networks: [10.0.0.0/8]}\n")
    secret = server.enroll("alice")
    server.start()
    res = client(server, "alice", [PW, ("Verification code:", server.next_code("alice",
                                                                               secret))])
    assert res.ok and res.saw("Verification code"), res
    assert res.result_line().endswith("result=success reason=ok")


def test_disabled_service_over_ssh(server: SshServer, client: Client) -> None:
    server.write_policy("mandatory: {scope: all}\nservices:\n  sshd-twofa: {enabled: false}\n")
    server.enroll("alice")
    server.start()
    res = client(server, "alice", [PW], command="echo in")
    assert res.ok and not res.saw("Verification code"), res
    assert res.result_line().endswith("result=ignored reason=service-disabled")
