"""One policy file in a test's temp dir, and the errors a text gives there, for the
policy tests (test_policy_core, test_scope_policy, test_policy_cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pam_twofa import policyfile
from pam_twofa.errors import PolicyError, PolicyErrors
from pam_twofa.paths import Paths


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """An empty, root-readable policy file named explicitly, and a state dir beside it."""
    file = tmp_path / "policy.yaml"
    file.write_text("")
    file.chmod(0o644)
    return Paths(policy=str(file), policy_explicit=True, state_dir=str(tmp_path / "state"))


def write(paths: Paths, text: str) -> None:
    Path(paths.policy).write_text(text)


def errors_of(paths: Paths, text: str) -> list[tuple[int, str]]:
    """(line, message) of every error ``text`` gives, each checked to name the file."""
    write(paths, text)
    with pytest.raises(PolicyError) as info:
        policyfile.load(paths, use_cache=False)
    exc = info.value
    found = exc.errors if isinstance(exc, PolicyErrors) else [exc]
    out = []
    for err in found:
        assert err.path == paths.policy
        assert err.message.startswith(f"{paths.policy}:{err.line}: " if err.line
                                      else f"{paths.policy}: ")
        out.append((err.line, err.problem))
    return out
