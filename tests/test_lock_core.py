"""The core never talks to the client while holding the user's lock, and a lock it
cannot get is a refusal (issue 11 finding 5); replays and empty answers are not
counted (issue 12 item 1); ``lockout.max_consecutive_failures`` suspends the second
factor (issue 11 finding 8, NIST SP 800-63B 5.2.2).  A real FileStore, a FixedClock
and scripted conversations; the pamtester side is in test_lock_pam.py."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest

from pam_twofa import core, emergency, login, schema, verify
from pam_twofa.accounts import Account
from pam_twofa.clock import FixedClock
from pam_twofa.filestore import FileStore
from pam_twofa.login import Notifier
from pam_twofa.paths import Paths
from pam_twofa.state import UserState
from tests.core_support import NOW, STEP, Script, code, enrolled, make_policy
from tests.test_decisions_core import CASES, Case

ALICE = Account(name="alice", uid=4242, gid=4242, home="/nonexistent",
                groups=frozenset({"alice", "wheel"}))


class LockProbe(Script):
    """A conversation that checks, at every call, that nobody holds ``lock``.

    flock locks belong to an open file description: a second open() of the same
    file in this process conflicts with the core's lock like another process would.
    """

    def __init__(self, answers: list[str | None], lock: Path) -> None:
        super().__init__(answers)
        self.lock = lock
        self.held_during: list[str] = []

    def _probe(self, what: str) -> None:
        if not self.lock.exists():
            return
        fd = os.open(self.lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.held_during.append(what)
        finally:
            os.close(fd)  # closing drops our flock too

    def ask(self, prompt: str, echo: bool = False) -> str | None:
        self._probe(prompt)
        return super().ask(prompt, echo)

    def info(self, text: str) -> None:
        self._probe(text)
        super().info(text)

    def error(self, text: str) -> None:
        self._probe(text)
        super().error(text)


def _store(tmp_path: Path, timeout: float = 10.0) -> FileStore:
    return FileStore(Paths(state_dir=str(tmp_path / "state")), FixedClock(NOW), timeout)


def _run(store: FileStore, conv: login.Conversation, overrides: dict[str, Any] | None = None,
         account: Account = ALICE) -> login.Decision:
    request = login.Request(user=account.name, account=account, conversation=conv,
                           service="sshd", rhost="192.0.2.7")
    return core.authenticate(request, make_policy(overrides or {}), store, FixedClock(NOW))


def _lock(tmp_path: Path, user: str = "alice") -> Path:
    return tmp_path / "state" / "locks" / f"{user}.lock"


@pytest.mark.parametrize("case", [c for c in CASES if c.known and c.given_code is None],
                         ids=lambda c: c.id)
def test_no_message_while_the_lock_is_held(case: Case, tmp_path: Path) -> None:
    store = _store(tmp_path)
    if case.setup is not None and "/" not in case.user and "\n" not in case.user:
        with store.update(case.user) as st:
            case.setup(st)
    conv = LockProbe(case.answers, _lock(tmp_path, case.user))
    account = Account(name=case.user, uid=case.uid, gid=case.uid, home="/nonexistent",
                      groups=case.groups)
    decision = _run(store, conv, case.policy, account)
    assert (decision.outcome, decision.reason) == (case.outcome, case.reason)
    assert conv.held_during == []


@pytest.mark.parametrize("setup", [
    enrolled(),  # no address: refused before any mail
    enrolled(email="a@example.org", locked_until=NOW + 60, lock_level=1),
    enrolled(email="a@example.org", suspended=NOW - 5),
], ids=["no-email", "locked", "suspended"])
def test_emergency_refusals_are_said_after_the_lock(setup: Any, tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.update("alice") as st:
        setup(st)
    conv = LockProbe([], _lock(tmp_path))
    request = login.Request(user="alice", account=ALICE, conversation=conv, service="sshd")
    clock = FixedClock(NOW)
    policy = make_policy({"smtp": {"host": "127.0.0.1", "port": 9, "security": "none"}})
    first = emergency.login(request, "alice", policy, store, clock, Notifier())
    second = emergency.check(request, "alice", "12345678", policy, store, clock, Notifier())
    assert first.outcome == second.outcome == login.Outcome.REFUSE
    assert first.reason == second.reason
    assert first.reason in ("no-email", "locked", "suspended")
    assert len(conv.errors) == 2 and conv.held_during == []


def test_lock_timeout_is_a_refusal_not_an_error(tmp_path: Path) -> None:
    store = _store(tmp_path, timeout=3.0)  # the FixedClock's sleep moves it: no real wait
    with store.update("alice") as st:
        enrolled()(st)
    fd = os.open(_lock(tmp_path), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another login holds alice's lock
        conv = Script([code()])
        decision = _run(store, conv)
    finally:
        os.close(fd)
    assert (decision.outcome, decision.reason) == ("refused", "lock-timeout")
    assert conv.errors == [login.MSG_BUSY]
    state = store.load("alice")
    assert state is not None and state.last_step == -1 and state.failures == 0


def _state(store: FileStore) -> UserState:
    state = store.load("alice")
    assert state is not None
    return state


def test_replay_and_empty_are_not_counted_toward_lock_or_suspension(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.update("alice") as st:
        enrolled(last_step=STEP, failures=4, recent_failures=[NOW - 3] * 4)(st)
    policy = {"lockout": {"max_failures": 5, "max_consecutive_failures": 5}}
    for answer, reason, message in ((code(), "replay", login.MSG_REPLAY),
                                    (code(-1), "replay", login.MSG_REPLAY),
                                    ("", "empty", login.MSG_EMPTY)):
        for _ in range(3):
            conv = Script([answer])
            decision = _run(store, conv, policy)
            assert (decision.reason, decision.fields) == (reason, ())
            assert conv.errors == [message]
    state = _state(store)
    assert (state.failures, state.lock_level, state.suspended) == (4, 0, None)
    assert state.last_step == STEP
    # the next step's code still logs in
    assert _run(store, Script([code(1)]), policy).reason == "ok"


def test_max_consecutive_failures_suspends_until_unlock(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.update("alice") as st:
        enrolled(failures=99, lock_level=20, locked_until=NOW - 1)(st)
        from pam_twofa import recovery

        codes = recovery.replace(st, ["1234567890"])
    conv = Script(["000000" if code() != "000000" else "111111"])
    decision = _run(store, conv)  # the 100th wrong code in a row (the default limit)
    assert (decision.reason, dict(decision.fields)) == (
        "bad-code", {"failures": 100, "suspended": "yes"})
    assert login.MSG_SUSPENDED in conv.errors[0]
    state = _state(store)
    assert state.suspended == NOW and state.locked_until < NOW  # suspended, not locked
    # every code is refused now: the right TOTP code, a recovery code, a trusted device
    for answer in (code(), codes[0], ""):
        conv = Script([answer])
        decision = _run(store, conv)
        assert (decision.outcome, decision.reason) == ("refused", "suspended")
        assert conv.errors == [login.MSG_SUSPENDED]
    state = _state(store)
    assert state.failures == 100 and state.recovery_codes  # nothing counted or used
    with store.update("alice") as st:
        verify.unlock(st)
    assert _run(store, Script([code()])).reason == "ok"
    assert _state(store).suspended is None


def test_a_lower_limit_suspends_before_the_lock_would() -> None:
    policy = make_policy({"lockout": {"max_failures": 5, "max_consecutive_failures": 3}})
    st = UserState("alice")
    assert [verify.record_failure(st, policy.lockout, NOW + i) for i in range(3)] == [None] * 3
    assert st.suspended == NOW + 2 and st.failures == 3


@pytest.mark.parametrize(("value", "ok"), [(1, True), (100, True), (101, False), (0, False),
                                           ("100", False)])
def test_max_consecutive_failures_is_at_most_100(value: object, ok: bool) -> None:
    _plain, errors = schema.validate({"lockout": {"max_consecutive_failures": value}})
    assert (errors == []) is ok, errors


def test_guesses_per_year_stop_at_the_limit() -> None:
    assert verify.guesses_per_year(make_policy({}).lockout) == 100
    small = make_policy({"lockout": {"max_consecutive_failures": 7}}).lockout
    assert verify.guesses_per_year(small) == 7


def test_recovery_hint_names_the_command(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.update("alice") as st:
        enrolled()(st)
        from pam_twofa import recovery

        codes = recovery.replace(st, ["1234567890", "2345678901"])
    conv = Script([codes[0]])
    decision = _run(store, conv)
    assert decision.reason == "recovery-code"
    assert conv.infos == ["Recovery code accepted: 1 left. "
                          "Run 'twofa-enroll recovery-codes' to get new ones."]


def test_lock_timeout_after_a_right_code_only_skips_the_trust(tmp_path: Path) -> None:
    """The code was proven and used: the login stands; only the device is not trusted."""
    store = _store(tmp_path, timeout=3.0)
    with store.update("alice") as st:
        enrolled()(st)

    class HoldLockOnTrustQuestion(Script):
        fd = -1

        def ask(self, prompt: str, echo: bool = False) -> str | None:
            if prompt.startswith("Trust this device"):
                self.fd = os.open(_lock(tmp_path), os.O_RDWR)
                fcntl.flock(self.fd, fcntl.LOCK_EX)  # another login takes the lock
            return super().ask(prompt, echo)

    conv = HoldLockOnTrustQuestion([code(), "yes"])
    try:
        decision = _run(store, conv, {"trusted_devices": {"enabled": True}})
    finally:
        os.close(conv.fd)
    assert (decision.outcome, decision.reason) == ("success", "ok")
    assert dict(decision.fields) == {"trusted_device": "lock-timeout"}
    assert _state(store).devices == [] and _state(store).last_step == STEP


def test_enrollment_service_checks_follow_the_same_rule(tmp_path: Path) -> None:
    """enrollment.check_code is verify.verify: a suspended user proves nothing there (so
    no re-enrollment or disabling lifts a suspension), replays and empty answers are
    not counted."""
    from pam_twofa import enrollment

    store = _store(tmp_path)
    policy = make_policy({})
    with store.update("alice") as st:
        enrolled(last_step=STEP)(st)
        assert enrollment.check_code(st, code(), policy, NOW) == "replay"
        assert enrollment.check_code(st, " ", policy, NOW) == "empty"
        assert st.failures == 0
        st.suspended = NOW - 1
        assert enrollment.check_code(st, code(1), policy, NOW) == "suspended"
        st.pending = {"secret": st.secret, "created": NOW, "expires": NOW + 60}
        assert enrollment.confirm_pending(st, code(1), policy, NOW) == "suspended"
        assert st.last_step == STEP and st.suspended == NOW - 1
    assert "administrator" in enrollment.REFUSAL_MESSAGES["suspended"]


def test_an_empty_emergency_answer_is_not_counted(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with store.update("alice") as st:
        enrolled(email="a@example.org")(st)
    conv = LockProbe([], _lock(tmp_path))
    request = login.Request(user="alice", account=ALICE, conversation=conv, service="sshd")
    decision = emergency.check(request, "alice", " ", make_policy({}), store, FixedClock(NOW),
                                 Notifier())
    assert (decision.outcome, decision.reason) == ("refused", "empty")
    assert conv.errors == ["No emergency code was entered."] and conv.held_during == []
    assert _state(store).failures == 0
