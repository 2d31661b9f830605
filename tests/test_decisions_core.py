"""core.authenticate, decision by decision: a FixedClock, a scripted conversation, a real
FileStore in a temp dir and policies built through the schema.  Table-driven; the shared
pieces are in tests/core_support.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pam_twofa import core, login
from pam_twofa.accounts import Account
from pam_twofa.clock import FixedClock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.state import UserState
from tests.core_support import (
    ADMINS,
    DAY,
    NOW,
    STEP,
    WHEEL,
    Script,
    code,
    enrolled,
    fields,
    make_policy,
)

ENROLLED = enrolled()


@dataclass
class Case:
    id: str
    answers: list[str | None]
    outcome: str
    reason: str
    setup: Callable[[UserState], None] | None = ENROLLED  # None: no state at all
    policy: dict[str, Any] = field(default_factory=dict)
    user: str = "alice"
    groups: frozenset[str] = frozenset({"alice"})
    uid: int = 4242
    known: bool = True  # NSS knows the user
    given_code: str | None = None  # single-prompt mode: the code came with the password
    prompts: int = 1
    infos: tuple[str, ...] = ()  # substrings, one per message, in order
    errors: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)


MSG_WRONG = "Wrong verification code."

CASES = [
    # enrolled: codes
    Case("right-code", [code()], "success", "ok"),
    Case("right-code-with-spaces", [" " + code()[:3] + " " + code()[3:]], "success", "ok"),
    Case(
        "wrong-code",
        ["000000" if code() != "000000" else "111111"],
        "refused",
        "bad-code",
        errors=(MSG_WRONG,),
        fields={"failures": 1},
    ),
    Case(
        "too-short", ["12345"], "refused", "bad-code", errors=(MSG_WRONG,), fields={"failures": 1}
    ),
    Case(
        "arabic-indic-digits",
        ["".join(chr(0x660 + int(c)) for c in code())],
        "refused",
        "bad-code",
        fields={"failures": 1},
    ),
    Case(
        "fullwidth-digits",
        ["".join(chr(0xFF10 + int(c)) for c in code())],
        "refused",
        "bad-code",
        fields={"failures": 1},
    ),
    # an empty answer is no guess: not counted (issue 12 item 1)
    Case("empty-answer", [""], "refused", "empty", errors=(login.MSG_EMPTY,)),
    Case("blank-answer", [" \t "], "refused", "empty", errors=(login.MSG_EMPTY,)),
    Case("no-answer", [None], "refused", "no-answer"),
    Case("previous-step-window-1", [code(-1)], "success", "ok"),
    Case("next-step-window-1", [code(1)], "success", "ok"),
    Case("two-steps-old-window-1", [code(-2)], "refused", "bad-code", fields={"failures": 1}),
    Case("two-steps-ahead-window-1", [code(2)], "refused", "bad-code", fields={"failures": 1}),
    Case(
        "previous-step-window-0",
        [code(-1)],
        "refused",
        "bad-code",
        policy={"totp": {"window": 0}},
        fields={"failures": 1},
    ),
    Case("two-steps-old-window-2", [code(-2)], "success", "ok", policy={"totp": {"window": 2}}),
    # replay: a step not newer than the last accepted one. Said as such and not
    # counted (issue 12 item 1: ssh then sudo within one step): it proves knowledge
    # of a real code, so counting it only locks out the owner.
    Case(
        "replay-same-step",
        [code()],
        "refused",
        "replay",
        setup=enrolled(last_step=STEP, failures=2),
        errors=(login.MSG_REPLAY,),
    ),
    Case(
        "replay-older-step",
        [code(-1)],
        "refused",
        "replay",
        setup=enrolled(last_step=STEP),
        errors=(login.MSG_REPLAY,),
    ),
    Case(  # an old code of a step never used is a wrong code, not a replay
        "old-step-outside-window-after-last",
        [code(-3)],
        "refused",
        "bad-code",
        setup=enrolled(last_step=STEP),
        fields={"failures": 1},
    ),
    Case("newer-than-last", [code()], "success", "ok", setup=enrolled(last_step=STEP - 1)),
    Case("next-after-last", [code(1)], "success", "ok", setup=enrolled(last_step=STEP)),
    # the user's own TOTP parameters, fixed at enrollment
    Case(
        "sha512-8-digits-60s",
        [code(0, digits=8, algorithm="SHA512", period=60)],
        "success",
        "ok",
        setup=enrolled(digits=8, algorithm="SHA512", period=60),
    ),
    Case(
        "6-digit-code-for-8-digit-user",
        [code()],
        "refused",
        "bad-code",
        setup=enrolled(digits=8),
        fields={"failures": 1},
    ),
    # lockout
    Case(
        "locked-right-code",
        [code()],
        "refused",
        "locked",
        setup=enrolled(locked_until=NOW + 100, lock_level=1, failures=5),
        errors=("locked until",),
        fields={"locked_until": int(NOW + 100)},
    ),
    Case(
        "lock-just-over",
        [code()],
        "success",
        "ok",
        setup=enrolled(locked_until=NOW, lock_level=1, failures=5),
    ),
    Case(
        "last-failure-locks",
        ["000000" if code() != "000000" else "111111"],
        "refused",
        "bad-code",
        setup=enrolled(failures=4, recent_failures=[NOW - 4, NOW - 3, NOW - 2, NOW - 1]),
        errors=("Too many wrong codes: locked until",),
        fields={"failures": 5, "locked_until": int(NOW + 300)},
    ),
    Case(
        "old-failures-do-not-lock",
        ["000000" if code() != "000000" else "111111"],
        "refused",
        "bad-code",
        setup=enrolled(failures=4, recent_failures=[NOW - 999] * 4),
        fields={"failures": 5},
    ),
    Case(
        "after-a-lock-each-failure-doubles",
        ["000000" if code() != "000000" else "111111"],
        "refused",
        "bad-code",
        setup=enrolled(failures=6, lock_level=2, locked_until=NOW - 1),
        fields={"failures": 7, "locked_until": int(NOW + 1200)},
    ),
    # not enrolled
    Case(
        "not-enrolled-scope-none",
        [],
        "ignored",
        "not-enrolled",
        setup=None,
        prompts=0,
        groups=WHEEL,
    ),
    Case(
        "not-enrolled-not-admin",
        [],
        "ignored",
        "not-enrolled",
        setup=None,
        policy=ADMINS,
        prompts=0,
    ),
    Case(
        "grace-first-login",
        [],
        "ignored",
        "grace",
        setup=None,
        policy=ADMINS,
        groups=WHEEL,
        prompts=0,
        infos=("will be required for your account from",),
        fields={"grace_until": int(NOW + 7 * DAY)},
    ),
    Case(
        "grace-inside",
        [],
        "ignored",
        "grace",
        policy=ADMINS,
        groups=WHEEL,
        prompts=0,
        setup=fields(first_seen=NOW - 7 * DAY + 1),
        infos=("twofa-enroll",),
        fields={"grace_until": int(NOW + 1)},
    ),
    Case(
        "grace-over",
        [],
        "refused",
        "enrollment-required",
        policy=ADMINS,
        groups=WHEEL,
        prompts=0,
        setup=fields(first_seen=NOW - 7 * DAY),
        errors=("grace period is over",),
    ),
    Case(
        "grace-zero",
        [],
        "refused",
        "enrollment-required",
        setup=None,
        policy={**ADMINS, "enrollment": {"grace_days": 0}},
        groups=WHEEL,
        prompts=0,
        errors=("grace period is over",),
    ),
    Case(
        "root-is-admin",
        [],
        "refused",
        "enrollment-required",
        setup=None,
        policy={**ADMINS, "enrollment": {"grace_days": 0}},
        user="root",
        uid=0,
        groups=frozenset({"root"}),
        prompts=0,
        errors=("grace period is over",),
    ),
    Case(
        "mode-deny",
        [],
        "refused",
        "enrollment-required",
        setup=None,
        policy={"mandatory": {"scope": "all"}, "enrollment": {"mode": "deny"}},
        prompts=0,
        errors=("not set up",),
    ),
    Case(
        "exempt-user",
        [],
        "ignored",
        "not-enrolled",
        setup=None,
        groups=WHEEL,
        prompts=0,
        policy={
            "mandatory": {"scope": "admins", "exempt_users": ["alice"]},
            "enrollment": {"grace_days": 0},
        },
    ),
    Case(
        "exempt-group",
        [],
        "ignored",
        "not-enrolled",
        setup=None,
        groups=WHEEL | {"robots"},
        prompts=0,
        policy={
            "mandatory": {"scope": "all", "exempt_groups": ["robots"]},
            "enrollment": {"grace_days": 0},
        },
    ),
    Case(
        "selected-group",
        [],
        "refused",
        "enrollment-required",
        setup=None,
        groups=WHEEL,
        prompts=0,
        policy={
            "mandatory": {"scope": "selected", "groups": ["wheel"]},
            "enrollment": {"grace_days": 0},
        },
        errors=("grace period is over",),
    ),
    Case(
        "enrolled-exempt-user-still-asked",
        [code()],
        "success",
        "ok",
        policy={"mandatory": {"scope": "admins", "exempt_users": ["alice"]}},
    ),
    Case(
        "reset-state-not-enrolled",
        [],
        "ignored",
        "not-enrolled",
        prompts=0,
        setup=fields(enrolled=False, secret=None, failures=3),
    ),
    # who
    Case("unknown-user", ["123456"], "refused", "unknown-user", known=False, errors=(MSG_WRONG,)),
    Case(
        "unknown-user-no-answer",
        [None],
        "refused",
        "unknown-user",
        known=False,
        errors=(MSG_WRONG,),
    ),
    Case("bad-user-name", ["123456"], "refused", "bad-user-name", user="../alice", known=True,
         errors=(MSG_WRONG,)),
    Case("newline-user-name", ["123456"], "refused", "bad-user-name", user="al\nice",
         errors=(MSG_WRONG,)),
    # single-prompt mode: the code came in already
    Case("given-code", [], "success", "ok", given_code=code(), prompts=0),
    Case(
        "given-wrong-code",
        [],
        "refused",
        "bad-code",
        given_code="999999" if code() != "999999" else "888888",
        prompts=0,
        fields={"failures": 1},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision(case: Case, tmp_path: Path) -> None:
    store = FileStore(Paths(state_dir=str(tmp_path / "state")), FixedClock(NOW))
    if case.setup is not None and case.known and "/" not in case.user and "\n" not in case.user:
        with store.update(case.user) as st:
            case.setup(st)
    conv = Script(case.answers)
    account = (
        Account(name=case.user, uid=case.uid, gid=case.uid, home="/nonexistent", groups=case.groups)
        if case.known
        else None
    )
    request = login.Request(
        user=case.user, account=account, conversation=conv, service="svc", code=case.given_code
    )
    clock = FixedClock(NOW)
    decision = core.authenticate(request, make_policy(case.policy), store, clock)
    assert (decision.outcome, decision.reason) == (case.outcome, case.reason)
    assert dict(decision.fields) == case.fields
    assert conv.prompts == [(login.CODE_PROMPT, False)] * case.prompts
    assert "Verification code" in login.CODE_PROMPT
    assert len(conv.infos) == len(case.infos), conv.infos
    for text, needle in zip(conv.infos, case.infos, strict=True):
        assert needle in text
    errors = case.errors or ((MSG_WRONG,) if case.reason == "bad-code" else ())
    assert len(conv.errors) == len(errors), conv.errors
    for text, needle in zip(conv.errors, errors, strict=True):
        assert needle in text
    assert clock.now() == NOW  # the core never sleeps or reads another clock
