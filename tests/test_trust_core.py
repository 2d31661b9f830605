"""Trusted devices through core.authenticate: a FixedClock, a scripted conversation and a
real FileStore (the SSH side is in test_trust_ssh.py)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pam_twofa import core, policy, schema, totp, trust
from pam_twofa.accounts import Account
from pam_twofa.clock import FixedClock, format_time
from pam_twofa.filestore import FileStore
from pam_twofa.login import CODE_PROMPT, Conversation, Decision, Request
from pam_twofa.mail.notify import MailNotifier
from pam_twofa.paths import Paths

NOW = 1796092395.0  # 15 s into its 30 s step
SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
DAY = 86400


def code(offset_steps: int = 0) -> str:
    return totp.hotp(totp.b32decode(SECRET), int(NOW // 30) + offset_steps, 6, "SHA1")


def _policy(overrides: dict[str, Any]) -> policy.Policy:
    plain, errors = schema.validate(overrides)
    assert errors == []
    return policy.build(plain)


class Script(Conversation):
    """Answers prompts from a list; records prompts (with echo) and infos."""

    def __init__(self, answers: list[str | None]) -> None:
        self.answers = list(answers)
        self.prompts: list[tuple[str, bool]] = []
        self.infos: list[str] = []

    def ask(self, prompt: str, echo: bool = False) -> str | None:
        self.prompts.append((prompt, echo))
        return self.answers.pop(0) if self.answers else None

    def info(self, text: str) -> None:
        self.infos.append(text)
BLOB = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(32)).decode()
KEY1 = f"publickey ssh-ed25519 {BLOB}\n"
CONN1 = "127.0.0.1 50000 127.0.0.1 22"


def store_for(tmp_path: Path) -> FileStore:
    store = FileStore(Paths(state_dir=str(tmp_path / "s")), FixedClock(NOW))
    with store.update("alice") as st:
        st.enrolled = True
        st.secret = SECRET
    return store


def login(store: FileStore, answers: list[str | None], now: float = NOW,
          conn: str | None = CONN1, auth_info: str | None = None,
          trust_policy: dict[str, Any] | None = None,
          given: str | None = None,
          extra_policy: dict[str, Any] | None = None,
          service: str = "sshd") -> tuple[Decision, Script]:
    pol = _policy({"trusted_devices": {"enabled": True, **(trust_policy or {})},
                   **(extra_policy or {})})
    account = Account(name="alice", uid=4242, gid=4242, home="/h", groups=frozenset())
    conv = Script(answers)
    request = Request(user="alice", account=account, conversation=conv, service=service,
                           ssh_connection=conn, ssh_auth_info=auth_info, code=given)
    return core.authenticate(request, pol, store, FixedClock(now), MailNotifier(pol)), conv


def step_code(now: float) -> str:
    return code(int(now // 30) - int(NOW // 30))


def test_fingerprint_matches_openssh(tmp_path: Path) -> None:
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key)], check=True,
                             capture_output=True, text=True).stdout.split()[1]
    assert trust.key_fingerprint(f"publickey {kind} {blob}\n") == printed
    expected = base64.b64encode(hashlib.sha256(base64.b64decode(BLOB)).digest())
    assert trust.key_fingerprint(KEY1) == "SHA256:" + expected.decode().rstrip("=")
    # the first publickey line counts; other methods' lines are skipped
    assert trust.key_fingerprint(f"password\n{KEY1}") == trust.key_fingerprint(KEY1)


@pytest.mark.parametrize("junk", [None, "", "publickey", "publickey ssh-ed25519",
                                  "publickey ssh-ed25519 !!!notbase64", "publickey a QQ==",
                                  "keyboard-interactive\n", "\udcff\x00", "publickey x ñ"])
def test_parser_never_raises(junk: str | None) -> None:
    assert trust.key_fingerprint(junk) is None


@pytest.mark.parametrize(("conn", "rhost", "ip"), [
    ("192.0.2.7 5000 10.0.0.1 22", None, "192.0.2.7"),
    ("2001:db8::0001 5000 ::1 22", "ignored", "2001:db8::1"),
    (None, "192.0.2.8", "192.0.2.8"),
    ("::ffff:192.0.2.7 5000 ::1 22", None, "192.0.2.7"),
    (None, "host.example", None),
    ("garbage", "192.0.2.8", None),
    (None, None, None),
])
def test_client_ip(conn: str | None, rhost: str | None, ip: str | None) -> None:
    assert trust.client_ip(conn, rhost) == ip


def test_offer_accept_then_skip_with_expiry_message(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    decision, conv = login(store, [code(), "Yes"], auth_info=KEY1)
    assert (decision.outcome, decision.reason) == ("success", "ok")
    assert conv.prompts[1][1] is True and "Trust this device" in conv.prompts[1][0]
    [record] = store.load("alice").devices  # type: ignore[union-attr]
    assert record == {"id": record["id"], "created": NOW, "expires": NOW + 30 * DAY,
                      "ip": "127.0.0.1", "key": trust.key_fingerprint(KEY1), "service": "sshd",
                      "last_used": NOW}
    assert dict(decision.fields)["trusted_device"] == record["id"]
    later = NOW + 5 * DAY
    decision, conv = login(store, [], now=later, auth_info=KEY1)
    assert (decision.outcome, decision.reason) == ("success", "trusted-device")
    assert conv.prompts == []
    assert conv.infos == [f"Trusted device: no verification code needed (trusted until "
                          f"{format_time(NOW + 30 * DAY)})."]
    assert store.load("alice").devices[0]["last_used"] == later  # type: ignore[union-attr]


@pytest.mark.parametrize("answer", ["", "n", "no", "yess", None, "  "])
def test_default_is_no(tmp_path: Path, answer: str | None) -> None:
    store = store_for(tmp_path)
    decision, _ = login(store, [code(), answer])
    assert decision.outcome == "success"
    assert store.load("alice").devices == []  # type: ignore[union-attr]


def test_bound_parts_must_all_match(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    login(store, [code(), "y"], auth_info=KEY1)
    other_key = KEY1.replace(BLOB, base64.b64encode(base64.b64decode(BLOB)[:-1] + b"\x01")
                             .decode())
    for conn, info in [(CONN1, other_key), ("127.0.0.2 1 127.0.0.1 22", KEY1), (CONN1, None)]:
        decision, conv = login(store, ["000000"], now=NOW + 60, conn=conn, auth_info=info)
        assert decision.reason == "bad-code", (conn, info)
        assert conv.prompts[0][0] == CODE_PROMPT


def test_expired_record_asks_for_the_code_and_gives_way(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    login(store, [code(), "y"], trust_policy={"days": 1})
    after = NOW + DAY + 1
    decision, conv = login(store, [step_code(after), "y"], now=after, trust_policy={"days": 1})
    assert decision.reason == "ok" and conv.prompts[0][0] == CODE_PROMPT
    [record] = store.load("alice").devices  # type: ignore[union-attr]
    assert record["created"] == after  # replaced, no duplicate


def test_locked_user_not_let_in_by_trust(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    login(store, [code(), "y"])
    with store.update("alice") as st:
        st.locked_until = NOW + 100
    decision, conv = login(store, [code(1)], now=NOW + 1)
    assert decision.reason == "locked"
    assert conv.prompts == [(CODE_PROMPT, False)]


def test_max_per_user_oldest_gives_way(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    for n in range(4):
        now = NOW + n * 30
        conn = f"127.0.0.{n + 1} 1 127.0.0.1 22"
        decision, _ = login(store, [step_code(now), "y"], now=now, conn=conn,
                            trust_policy={"max_per_user": 3})
        assert decision.reason == "ok"
    ips = [r["ip"] for r in store.load("alice").devices]  # type: ignore[union-attr]
    assert ips == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@pytest.mark.parametrize(("policy", "conn", "info"), [
    ({"require_key": True}, CONN1, None),
    ({"networks": ["10.0.0.0/8"]}, CONN1, KEY1),
    ({}, None, KEY1),  # no client IP: nothing to bind
])
def test_never_offered(tmp_path: Path, policy: dict[str, Any], conn: str | None,
                       info: str | None) -> None:
    store = store_for(tmp_path)
    decision, conv = login(store, [code(), "y"], conn=conn, auth_info=info,
                           trust_policy=policy)
    assert decision.reason == "ok"
    assert len(conv.prompts) == 1
    assert store.load("alice").devices == []  # type: ignore[union-attr]


def test_policy_tightened_later_stops_honouring(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    login(store, [code(), "y"])
    decision, _ = login(store, ["000000"], now=NOW + 60, trust_policy={"require_key": True})
    assert decision.reason == "bad-code"


def test_single_prompt_code_neither_offers_nor_skips(tmp_path: Path) -> None:
    store = store_for(tmp_path)
    decision, conv = login(store, [], given=code())
    assert decision.reason == "ok" and conv.prompts == []
    login(store, [code(1), "y"], now=NOW + 1)
    decision, _ = login(store, [], now=NOW + 2, given="000000")
    assert decision.reason == "bad-code"


def test_revoke_and_listing() -> None:
    from pam_twofa.state import UserState

    st = UserState("alice")
    pol = _policy({"trusted_devices": {"enabled": True}}).trusted_devices
    a = trust.add(st, trust.Binding("192.0.2.1", None), pol, NOW)
    b = trust.add(st, trust.Binding("192.0.2.2", "SHA256:x"), pol, NOW + 1)
    assert [r["id"] for r in trust.listing(st, NOW)] == [a["id"], b["id"]]
    assert trust.listing(st, NOW + 31 * DAY)[0]["expired"] is True
    assert trust.revoke(st, "nope") == []
    assert trust.revoke(st, a["id"]) == [a["id"]]
    assert trust.revoke(st, None) == [b["id"]] and st.devices == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # aiosmtpd's own
def test_trusting_a_device_mails_the_owner(tmp_path: Path) -> None:
    from tests.harness.smtpd import MailServer

    with MailServer(None, mode="none") as srv:
        store = store_for(tmp_path)
        with store.update("alice") as st:
            st.email = "alice@example.com"
        smtp = {"host": "127.0.0.1", "port": srv.port, "security": "none",
                "from": "twofa@test.example", "timeout_seconds": 5}
        decision, _ = login(store, [code(), "y"], auth_info=KEY1, extra_policy={"smtp": smtp})
        assert dict(decision.fields)["notified"] == "yes"
        [mail] = srv.wait(1)
        record = store.load("alice").devices[0]  # type: ignore[union-attr]
        assert mail.rcpt_tos == ["alice@example.com"]
        assert "A device was trusted" in mail.body
        assert f"Device:  {record['id']} (127.0.0.1, key {record['key']})" in mail.body
        assert f"until {format_time(record['expires'])}" in mail.body
        assert code() not in mail.body
