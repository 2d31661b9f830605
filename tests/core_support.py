"""Shared pieces of the core.authenticate unit tests (test_decisions_core.py,
test_state_core.py): a FixedClock time, a known secret, a scripted conversation and
state/policy builders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pam_twofa import login, policy, schema, totp
from pam_twofa.state import UserState

NOW = 1796092395.0  # 15 s into its 30 s step: +-1 step is unambiguous
STEP = int(NOW // 30)
SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
KEY = totp.b32decode(SECRET)
DAY = 86400


def code(
    offset_steps: int = 0,
    key: bytes = KEY,
    digits: int = 6,
    algorithm: str = "SHA1",
    period: int = 30,
) -> str:
    return totp.hotp(key, int(NOW // period) + offset_steps, digits, algorithm)


class Script(login.Conversation):
    """Answers prompts from a list; records every prompt, info and error."""

    def __init__(self, answers: list[str | None]) -> None:
        self.answers = list(answers)
        self.prompts: list[tuple[str, bool]] = []
        self.infos: list[str] = []
        self.errors: list[str] = []

    def ask(self, prompt: str, echo: bool = False) -> str | None:
        self.prompts.append((prompt, echo))
        return self.answers.pop(0) if self.answers else None

    def info(self, text: str) -> None:
        self.infos.append(text)

    def error(self, text: str) -> None:
        self.errors.append(text)


def enrolled(**changes: Any) -> Callable[[UserState], None]:
    def setup(st: UserState) -> None:
        st.enrolled = True
        st.secret = SECRET
        for k, v in changes.items():
            setattr(st, k, v)

    return setup


def fields(**changes: Any) -> Callable[[UserState], None]:
    def setup(st: UserState) -> None:
        for k, v in changes.items():
            setattr(st, k, v)

    return setup


ADMINS = {"mandatory": {"scope": "admins"}}
WHEEL = frozenset({"alice", "wheel"})


def make_policy(overrides: dict[str, Any]) -> policy.Policy:
    plain, errors = schema.validate(overrides)
    assert errors == []
    return policy.build(plain)
