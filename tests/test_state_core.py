"""core.authenticate and the state it leaves: steps recorded, failures counted, grace
first seen written once; the outcome strings.  Shared pieces are in tests/core_support.py."""

from __future__ import annotations

from pathlib import Path

from pam_twofa import core, login, policy
from pam_twofa.accounts import Account
from pam_twofa.clock import FixedClock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from tests.core_support import (
    ADMINS,
    DAY,
    NOW,
    STEP,
    WHEEL,
    Script,
    code,
    enrolled,
    make_policy,
)


def _run(
    store: FileStore, answer: str, now: float = NOW, pol: policy.Policy | None = None
) -> login.Decision:
    account = Account(name="alice", uid=4242, gid=4242, home="/h", groups=frozenset())
    request = login.Request(user="alice", account=account, conversation=Script([answer]))
    return core.authenticate(request, pol or make_policy({}), store, FixedClock(now))


def test_success_records_step_and_resets(tmp_path: Path) -> None:
    store = FileStore(Paths(state_dir=str(tmp_path / "s")), FixedClock(NOW))
    with store.update("alice") as new:
        enrolled(failures=3, recent_failures=[NOW - 5, NOW - 4, NOW - 3])(new)
    assert _run(store, code(-1)).outcome == "success"
    st = store.load("alice")
    assert st is not None
    assert (st.last_step, st.failures, st.recent_failures, st.lock_level, st.last_success) == (
        STEP - 1,
        0,
        [],
        0,
        NOW,
    )
    # the step just accepted, and any older one, can never be used again
    assert _run(store, code(-1)).reason == "replay"
    assert _run(store, code()).reason == "ok"
    assert _run(store, code()).reason == "replay"
    assert _run(store, code(-1)).reason == "replay"


def test_failure_counts_and_never_writes_the_code(tmp_path: Path) -> None:
    store = FileStore(Paths(state_dir=str(tmp_path / "s")), FixedClock(NOW))
    with store.update("alice") as new:
        enrolled()(new)
    wrong = "000000" if code() != "000000" else "111111"
    d = _run(store, wrong)
    assert (d.outcome, d.reason, d.fields) == ("refused", "bad-code", (("failures", 1),))
    st = store.load("alice")
    assert st is not None and st.failures == 1 and st.recent_failures == [NOW]
    raw = (tmp_path / "s" / "users" / "alice.json").read_text()
    assert wrong not in raw


def test_grace_first_seen_is_written_once(tmp_path: Path) -> None:
    store = FileStore(Paths(state_dir=str(tmp_path / "s")), FixedClock(NOW))
    pol = make_policy(ADMINS)
    account = Account(name="alice", uid=4242, gid=4242, home="/h", groups=WHEEL)
    for now in (NOW, NOW + DAY, NOW + 7 * DAY - 1):
        req = login.Request(user="alice", account=account, conversation=Script([]))
        d = core.authenticate(req, pol, store, FixedClock(now))
        assert (d.outcome, d.reason) == ("ignored", "grace")
    st = store.load("alice")
    assert st is not None and st.first_seen == NOW and not st.enrolled
    req = login.Request(user="alice", account=account, conversation=Script([]))
    d = core.authenticate(req, pol, store, FixedClock(NOW + 7 * DAY))
    assert (d.outcome, d.reason) == ("refused", "enrollment-required")


def test_outcomes_are_three_strings() -> None:
    assert (login.Outcome.SUCCESS, login.Outcome.IGNORE, login.Outcome.REFUSE) == (
        "success",
        "ignored",
        "refused",
    )
