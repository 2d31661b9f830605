"""Notices from the pure core, with a recorder notifier (no SMTP): a lock, a
suspension, a trusted device, an emergency code sent and used; and how many
times a login reads and writes the user's state (one locked read-modify-write)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pam_twofa import core
from pam_twofa.clock import FixedClock
from pam_twofa.filestore import FileStore
from pam_twofa.login import Account, ClockHint, Decision, Notifier, Request
from pam_twofa.paths import Paths
from pam_twofa.state import UserState
from tests.core_support import NOW, Script, code, enrolled, make_policy

ALICE = Account(name="alice", uid=4242, gid=4242, home="/h", groups=frozenset())
ADDRESS = "alice@example.org"
CONN = "192.0.2.7 50000 192.0.2.1 22"
SMTP = {"host": "127.0.0.1", "port": 9, "security": "none"}


class Recorder(Notifier):
    """Records every notice and every code it is asked to mail (sends nothing)."""

    def __init__(self) -> None:
        self.notices: list[tuple[str, str, str, dict[str, Any]]] = []
        self.codes: list[tuple[str, str, str]] = []

    def notice(self, event: str, user: str, address: str, **facts: Any) -> bool:
        self.notices.append((event, user, address, facts))
        return True

    def send_code(self, user: str, address: str, code: str, *, minutes: int,
                  client: str | None, now: float) -> tuple[bool, str]:
        self.codes.append((user, address, code))
        return True, "a***@example.org"


class Counting(FileStore):
    """A FileStore that counts whole-state reads and locked read-modify-writes."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(Paths(state_dir=str(tmp_path / "s")), FixedClock(NOW))
        self.loads = 0
        self.updates = 0

    def load(self, user: str) -> UserState | None:
        self.loads += 1
        return super().load(user)

    def update(self, user: str) -> AbstractContextManager[UserState]:
        self.updates += 1
        return super().update(user)

    def reset_counts(self) -> None:
        self.loads = self.updates = 0


def _store(tmp_path: Path, **changes: Any) -> Counting:
    store = Counting(tmp_path)
    with store.update("alice") as st:
        enrolled(**changes)(st)
    store.reset_counts()
    return store


def _login(store: FileStore, answers: list[str | None], notifier: Notifier,
           overrides: dict[str, Any] | None = None, now: float = NOW,
           hint: ClockHint | None = None) -> tuple[Decision, Script]:
    conv = Script(answers)
    request = Request(user="alice", account=ALICE, conversation=conv, service="sshd",
                      ssh_connection=CONN)
    return core.authenticate(request, make_policy(overrides or {}), store, FixedClock(now),
                             notifier, hint), conv


def test_a_lock_is_noticed_once_through_the_notifier(tmp_path: Path) -> None:
    store = _store(tmp_path, email=ADDRESS)
    rec = Recorder()
    pol = {"lockout": {"max_failures": 2, "lock_seconds": 60}}
    first, _ = _login(store, ["000001"], rec, pol)
    assert first.reason == "bad-code" and rec.notices == []
    second, conv = _login(store, ["000002"], rec, pol)
    assert second.reason == "bad-code"
    [(event, user, address, facts)] = rec.notices
    assert (event, user, address) == ("locked_out", "alice", ADDRESS)
    assert facts == {"client": "192.0.2.7", "now": NOW, "until": NOW + 60}
    assert dict(second.fields)["notified"] == "yes"
    assert "locked until" in conv.errors[-1]


def test_a_suspension_is_noticed(tmp_path: Path) -> None:
    store = _store(tmp_path, email=ADDRESS, failures=99)
    rec = Recorder()
    decision, conv = _login(store, ["000001"], rec)
    assert dict(decision.fields)["suspended"] == "yes" and "suspended" in conv.errors[0]
    assert [n[0] for n in rec.notices] == ["suspended"]
    assert rec.notices[0][3] == {"client": "192.0.2.7", "now": NOW}


def test_no_address_no_notice(tmp_path: Path) -> None:
    store = _store(tmp_path, failures=99)
    rec = Recorder()
    decision, _ = _login(store, ["000001"], rec)
    assert decision.reason == "bad-code" and rec.notices == []
    assert "notified" not in dict(decision.fields)


def test_trusting_a_device_is_noticed(tmp_path: Path) -> None:
    store = _store(tmp_path, email=ADDRESS)
    rec = Recorder()
    decision, conv = _login(store, [code(), "y"], rec, {"trusted_devices": {"enabled": True}})
    assert decision.reason == "ok" and "This device is trusted" in conv.infos[-1]
    device = dict(decision.fields)["trusted_device"]
    [(event, user, address, facts)] = rec.notices
    assert (event, user, address) == ("device_trusted", "alice", ADDRESS)
    assert facts["device"] == f"{device} (192.0.2.7)" and facts["client"] == "192.0.2.7"
    assert facts["until"] == NOW + 30 * 86400


def test_emergency_code_goes_through_the_notifier_and_its_use_is_noticed(
        tmp_path: Path) -> None:
    store = _store(tmp_path, email=ADDRESS)
    rec = Recorder()

    class Answers(Script):
        def ask(self, prompt: str, echo: bool = False) -> str | None:
            self.prompts.append((prompt, echo))
            return "email" if len(self.prompts) == 1 else rec.codes[0][2]

    conv = Answers([])
    request = Request(user="alice", account=ALICE, conversation=conv, service="sshd",
                      ssh_connection=CONN)
    decision = core.authenticate(request, make_policy({"smtp": SMTP}), store,
                                 FixedClock(NOW), rec)
    assert (decision.outcome, decision.reason) == ("success", "emergency-code")
    [(user, address, sent)] = rec.codes
    assert (user, address) == ("alice", ADDRESS) and len(sent) == 8 and sent.isdigit()
    assert [n[0] for n in rec.notices] == ["emergency_code_used"]
    assert "a***@example.org" in conv.infos[0]
    st = store.load("alice")
    assert st is not None and st.emergency is None and sent not in repr(st.to_plain())


def test_a_failed_code_mail_is_a_refusal_with_its_reason(tmp_path: Path) -> None:
    store = _store(tmp_path, email=ADDRESS)

    class Down(Recorder):
        def send_code(self, user: str, address: str, code: str, *, minutes: int,
                      client: str | None, now: float) -> tuple[bool, str]:
            return False, "mail-timeout"

    decision, conv = _login(store, ["email"], Down(), {"smtp": SMTP})
    assert (decision.outcome, decision.reason) == ("refused", "mail-timeout")
    assert "could not be mailed (timeout)" in conv.errors[0]


def test_the_clock_hint_comes_in(tmp_path: Path) -> None:
    store = _store(tmp_path)

    class Off(ClockHint):
        def offset_beyond(self, covered: float, now: float) -> float | None:
            assert (covered, now) == (30, NOW)
            return 95.0

    decision, conv = _login(store, ["000001"], Recorder(), hint=Off())
    assert dict(decision.fields)["clock_offset"] == "+95.0"
    assert "server clock may be off" in conv.errors[0]


def test_a_login_reads_once_and_writes_under_one_lock(tmp_path: Path) -> None:
    """A code login: one unlocked read (the view) and one locked read-modify-write;
    a trusted-device login the same. Before issue 13 a trusted-devices login read
    the state up to three times and took the lock twice."""
    trust = {"trusted_devices": {"enabled": True}}
    store = _store(tmp_path)
    rec = Recorder()
    decision, _ = _login(store, [code(), "n"], rec, trust)
    assert decision.reason == "ok"
    assert (store.loads, store.updates) == (2, 1)  # the view + the update's own read
    decision, _ = _login(store, [code(1), "y"], rec, trust, now=NOW + 30)
    assert decision.reason == "ok"
    store.reset_counts()
    decision, conv = _login(store, [], rec, trust, now=NOW + 60)
    assert decision.reason == "trusted-device" and conv.prompts == []
    assert (store.loads, store.updates) == (2, 1)
    store.reset_counts()
    decision, _ = _login(store, [code(3)], rec, now=NOW + 90)  # trust off: no offer
    assert (store.loads, store.updates) == (2, 1)
