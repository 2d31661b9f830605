"""Trusted devices end to end through the real sshd, with both clients.

Source addresses: sshd listens on 127.0.0.1 and accepts from all of 127/8, so the
clients bind 127.0.0.1 or 127.0.0.2 to be two devices.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pam_twofa import trust
from tests.harness.sshclient import Login, fingerprint, make_key
from tests.harness.sshd import KEY_AND_KBD, SshServer

Client = Callable[..., Login]
PW = ("Password:", "secret")
TRUST_ON = "trusted_devices: {enabled: true, days: 30, max_per_user: 10"
NO_CODE = ("Verification code:", "000000")


def setup(server: SshServer, trust_extra: str = "", key_login: bool = False) -> str:
    if "alice" not in server.env.users:
        server.add_user("alice")
    server.write_policy(f"mandatory: {{scope: all}}\n{TRUST_ON}{trust_extra}}}\n")
    if key_login:
        server.auth_methods = KEY_AND_KBD
        server.key_only_stack()
    secret = server.enroll("alice")
    server.start()
    return secret


def answers(server: SshServer, secret: str, trust_answer: str = "yes",
            password: bool = True) -> list[tuple[str, str]]:
    code = ("Verification code:", server.next_code("alice", secret))
    return [("Trust this device", trust_answer), *([PW] if password else []), code]


def devices(server: SshServer) -> list[dict[str, object]]:
    res = server.admin("trust", "list", "alice", "--json")
    assert res.returncode == 0, res.stderr
    rows: list[dict[str, object]] = json.loads(res.stdout)
    return rows


def test_trust_then_skip_code_from_same_device(sshd_env: SshServer, client: Client) -> None:
    server = sshd_env
    secret = setup(server)
    first = client(server, "alice", answers(server, secret))
    assert first.ok, first
    assert first.saw("Trust this device for 30 days")
    assert "This device is trusted until " in first.messages
    [record] = devices(server)
    assert record["ip"] == "127.0.0.1" and record["key"] is None
    assert f"trusted_device={record['id']}" in first.result_line()
    again = client(server, "alice", [PW, NO_CODE])
    assert again.ok, again
    assert not again.saw("Verification code") and not again.saw("Trust this device")
    assert f"reason=trusted-device device={record['id']}" in again.result_line()
    assert "Trusted device: no verification code needed (trusted until " in again.messages
    other = client(server, "alice", [PW, NO_CODE], source="127.0.0.2")  # another IP
    assert not other.ok and other.saw("Verification code"), other


def test_declined_or_blank_answer_trusts_nothing(sshd_env: SshServer, client: Client) -> None:
    server = sshd_env
    secret = setup(server)
    res = client(server, "alice", answers(server, secret, trust_answer="no"))
    assert res.ok and res.saw("Trust this device"), res
    res = client(server, "alice", answers(server, secret, trust_answer=""))
    assert res.ok and res.saw("Trust this device"), res
    assert devices(server) == []


def test_key_bound_record(sshd_env: SshServer, client: Client, tmp_path: Path) -> None:
    server = sshd_env
    key1, pub1 = make_key(tmp_path / "k1")
    key2, pub2 = make_key(tmp_path / "k2")
    server.add_user("alice")
    server.authorize_key("alice", pub1)
    server.authorize_key("alice", pub2)
    secret = setup(server, key_login=True)
    first = client(server, "alice", answers(server, secret, password=False), key=key1)
    assert first.ok and first.saw("Trust this device"), first
    [record] = devices(server)
    assert record["key"] == fingerprint(key1)  # the fingerprint OpenSSH itself prints
    assert record["ip"] == "127.0.0.1"
    same = client(server, "alice", [NO_CODE], key=key1)
    assert same.ok and same.prompts == [], same
    assert "reason=trusted-device" in same.result_line()
    other_key = client(server, "alice", [NO_CODE], key=key2)
    assert not other_key.ok and other_key.saw("Verification code"), other_key
    other_ip = client(server, "alice", [NO_CODE], key=key1, source="127.0.0.2")
    assert not other_ip.ok and other_ip.saw("Verification code"), other_ip


def test_expired_and_revoked_records_ask_for_the_code(sshd_env: SshServer,
                                                      client: Client) -> None:
    server = sshd_env
    secret = setup(server)
    ok = client(server, "alice", answers(server, secret))
    assert ok.ok, ok
    with server.as_owner(), server.store().update("alice") as st:  # expire it now
        st.devices[0]["expires"] = st.devices[0]["created"] - 1
    expired = client(server, "alice", [PW, NO_CODE])
    assert not expired.ok and expired.saw("Verification code"), expired
    [row] = devices(server)
    assert row["expired"] is True
    renewed = client(server, "alice", answers(server, secret))  # trust offered again
    assert renewed.ok and renewed.saw("Trust this device"), renewed
    [row] = devices(server)  # the expired record gave way: no duplicate
    assert row["expired"] is False
    ok = client(server, "alice", [PW, NO_CODE])
    assert ok.ok, ok
    res = server.admin("trust", "revoke", "alice", str(row["id"]))
    assert res.returncode == 0, res.stderr
    revoked = client(server, "alice", [PW, NO_CODE])
    assert not revoked.ok and revoked.saw("Verification code"), revoked
    assert devices(server) == []


def test_require_key_never_offered_to_password_login(sshd_env: SshServer,
                                                     client: Client) -> None:
    server = sshd_env
    secret = setup(server, ", require_key: true")
    res = client(server, "alice", answers(server, secret))
    assert res.ok, res
    assert not res.saw("Trust this device")
    assert devices(server) == []


def test_outside_networks_never_offered(sshd_env: SshServer, client: Client) -> None:
    server = sshd_env
    secret = setup(server, ", networks: [127.0.0.2/32, 10.0.0.0/8]")
    res = client(server, "alice", answers(server, secret))
    assert res.ok and not res.saw("Trust this device"), res
    assert devices(server) == []
    inside = client(server, "alice", answers(server, secret), source="127.0.0.2")
    assert inside.ok and inside.saw("Trust this device"), inside
    assert [r["ip"] for r in devices(server)] == ["127.0.0.2"]


def test_trust_never_lifts_a_lock(sshd_env: SshServer, client: Client) -> None:
    server = sshd_env
    secret = setup(server)
    ok = client(server, "alice", answers(server, secret))
    assert ok.ok, ok
    with server.as_owner(), server.store().update("alice") as st:
        st.locked_until = 4102444800.0  # 2100-01-01
        st.lock_level = 1
    res = client(server, "alice", [PW, NO_CODE])
    assert not res.ok and res.saw("Verification code"), res
    assert "reason=locked" in res.result_line()


def test_parser_never_raises_on_garbage() -> None:
    for junk in ("", "publickey", "publickey ssh-ed25519 !!!", "publickey x AAAA=\n",
                 "\x00\xff", "password\n", "publickey ssh-ed25519 " + "A" * 3):
        assert trust.key_fingerprint(junk) is None
