"""The one error hierarchy: every error class lives in errors.py, and a refusal of the
enrollment service maps to the exit code of the class that raised it (no second table
in twofa-enroll)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pam_twofa import errors
from pam_twofa.cli.common import ExitCode, exit_code

ROOT = Path(__file__).resolve().parent.parent / "pam_twofa"


@pytest.mark.parametrize(("reason", "code"), [
    ("bad-code", ExitCode.NOPERM), ("replay", ExitCode.NOPERM), ("locked", ExitCode.NOPERM),
    ("code-needed", ExitCode.NOPERM), ("not-allowed", ExitCode.NOPERM),
    ("not-enrolled", ExitCode.NOT_FOUND), ("unknown-user", ExitCode.NOT_FOUND),
    # what twofa-enroll(1) documents as 1: busy, an expired enrollment, the rest
    ("no-pending", ExitCode.FAILED), ("busy", ExitCode.FAILED),
    ("unavailable", ExitCode.FAILED), ("bad-request", ExitCode.FAILED),
    ("internal-error", ExitCode.FAILED), ("state-error", ExitCode.FAILED),
])
def test_a_service_refusal_exits_as_the_class_that_raised_it(reason: str,
                                                             code: ExitCode) -> None:
    assert exit_code(errors.ServiceRefused(reason, "no")) == code


def test_the_relayed_reasons_are_the_classes_own() -> None:
    """The client's mapping follows the classes: change a class, the client follows."""
    assert errors.exit_name_of(errors.NotEnrolled.reason) == errors.NotEnrolled.exit_name
    assert errors.exit_name_of("bad-code") == errors.CodeRefused.exit_name


def test_every_twofa_error_class_is_in_errors_py() -> None:
    """A class deriving from TwofaError (or one of its subclasses) anywhere else is a
    second hierarchy in the making."""
    ours = {name for name, value in vars(errors).items()
            if isinstance(value, type) and issubclass(value, errors.TwofaError)}
    elsewhere = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.name == "errors.py" and path.parent == ROOT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id in ours for b in node.bases):
                elsewhere.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}")
    assert not elsewhere, elsewhere
