"""One finding of ``twofa-admin doctor``: what is wrong, where, how bad, and the fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass

CRITICAL, ERROR, WARNING, INFO = "critical", "error", "warning", "info"
SEVERITIES = (CRITICAL, ERROR, WARNING, INFO)  # worst first
PROBLEMS = (CRITICAL, ERROR, WARNING)  # any of these: exit 1


@dataclass(frozen=True)
class Finding:
    check: str  # a stable name, e.g. "sshd-password-auth" (README lists them)
    severity: str
    message: str
    fix: str = ""
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def plain(self) -> dict[str, object]:
        return {**asdict(self), "where": self.where}


def rank(finding: Finding) -> int:
    return SEVERITIES.index(finding.severity)


def failed(findings: list[Finding]) -> bool:
    """Whether anything is wrong (only info: nothing is)."""
    return any(f.severity in PROBLEMS for f in findings)


def counts(findings: list[Finding]) -> dict[str, int]:
    return {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
