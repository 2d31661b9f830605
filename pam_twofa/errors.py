"""The one error hierarchy of pam-twofa.

Every failure the package expects is a ``TwofaError``. Each class names the log
reason and the CLI exit code it maps to, so the PAM face (``pam_entry``) and the
CLIs (``cli.common``) map errors in exactly one place each.
"""

from __future__ import annotations


class TwofaError(Exception):
    """Base of every expected pam-twofa failure."""

    reason = "internal-error"  # stable token for the log line
    exit_name = "SOFTWARE"  # name in cli.common.ExitCode

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(TwofaError):
    """A command or module argument is wrong."""

    reason = "bad-argument"
    exit_name = "USAGE"


class PolicyError(TwofaError):
    """The policy file is missing, insecure or invalid; names file and line."""

    reason = "bad-policy"
    exit_name = "CONFIG"

    def __init__(
        self, message: str, path: str = "", line: int = 0, failmode: str | None = None
    ) -> None:
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.problem = message
        # The file's own top-level ``failmode`` when it could still be read, so a
        # typo elsewhere does not silently flip an admin's choice.
        self.failmode = failmode


class PolicyErrors(PolicyError):
    """Several policy errors at once (``twofa-admin policy check`` lists them all)."""

    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__("\n".join(e.message for e in errors), failmode=errors[0].failmode)
        self.message = "\n".join(e.message for e in errors)
        self.errors = errors


class InvalidUserName(TwofaError):
    """A user name that must never become a path."""

    reason = "bad-user-name"
    exit_name = "USAGE"


class StateError(TwofaError):
    """The state directory or a state file cannot be used safely."""

    reason = "state-error"
    exit_name = "STATE"


class CorruptState(StateError):
    """A state file is unreadable or does not match the schema."""

    reason = "corrupt-state"


class InsecureState(StateError):
    """A state file or directory has the wrong owner, mode or type."""

    reason = "insecure-state"


class LockTimeout(StateError):
    """Another process held the user's lock for too long."""

    reason = "lock-timeout"


class NotEnrolled(TwofaError):
    """The operation needs an enrolled user."""

    reason = "not-enrolled"
    exit_name = "NOT_FOUND"


class UnknownUser(TwofaError):
    """No such account in the system's user database."""

    reason = "unknown-user"
    exit_name = "NOT_FOUND"


class CodeRefused(TwofaError):
    """A code needed for a change was wrong, replayed, or the user is locked.

    ``reason`` is set per instance (``bad-code``, ``replay``, ``locked``,
    ``no-pending``) so the enrollment service and its clients can tell them apart.
    """

    reason = "bad-code"
    exit_name = "NOPERM"

    def __init__(self, message: str, reason: str = "bad-code") -> None:
        super().__init__(message)
        self.reason = reason


class VerifyFailed(TwofaError):
    """A security-email verification code is wrong, used or expired."""

    reason = "bad-verification-code"
    exit_name = "FAILED"


class SendLimit(TwofaError):
    """The user's mails for this hour are used up."""

    reason = "mail-send-limit"
    exit_name = "FAILED"


class MailError(TwofaError):
    """A mail could not be sent; ``kind`` is one of ``MAIL_KINDS``."""

    exit_name = "FAILED"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.reason = f"mail-{kind}"


MAIL_KINDS = ("resolve", "connect", "tls", "auth", "rejected", "timeout")


class ServiceSocketError(TwofaError):
    """A root service cannot take its socket path: not a socket, or in use."""

    reason = "bad-socket"
    exit_name = "FAILED"


class RequestError(TwofaError):
    """A request the enrollment service refuses before any operation runs."""

    exit_name = "FAILED"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotAllowed(TwofaError):
    """The policy does not allow this change (e.g. turning off mandatory 2FA)."""

    reason = "not-allowed"
    exit_name = "NOPERM"


class PamConfigError(TwofaError):
    """A PAM service file that ``twofa-admin pam`` will not edit, or cannot read.

    ``where`` is ``FILE:LINE`` (or ``FILE``): the admin is told which line to look at.
    """

    reason = "bad-pam-config"
    exit_name = "CONFIG"

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.problem = message


class PamLinesNotOurs(PamConfigError):
    """pam-twofa lines that ``twofa-admin pam`` did not write and so will not remove."""

    exit_name = "FAILED"


# The refusals whose exit code a client of the enrollment service keeps: the service
# answers with the reason token, the client maps it back through the class here.
_RELAYED: tuple[type[TwofaError], ...] = (NotAllowed, NotEnrolled, UnknownUser)
# CodeRefused carries its reason per instance: these are its tokens.
CODE_REFUSALS = ("bad-code", "replay", "locked", "code-needed")


class ServiceRefused(TwofaError):
    """The enrollment service said no; ``reason`` is its error token.

    The exit code is that of the error class the service raised (``exit_name_of``):
    the reason -> exit code mapping is the classes' own, not a second table.
    """

    exit_name = "FAILED"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.exit_name = exit_name_of(reason)


def exit_name_of(reason: str) -> str:
    """The exit-code name of a refusal the service answered with ``reason``
    (``FAILED`` for anything else: busy, an expired enrollment, a bad request)."""
    if reason in CODE_REFUSALS:
        return CodeRefused.exit_name
    for cls in _RELAYED:
        if cls.reason == reason:
            return cls.exit_name
    return "FAILED"


class FleetError(TwofaError):
    """The fleet store (PostgreSQL, ``twofa-fleetd``) refused or failed an operation."""

    reason = "fleet-error"
    exit_name = "FAILED"


class FleetUnavailable(FleetError):
    """The fleet database or the host's ``twofa-fleetd`` cannot be reached in time.

    ``enrolled``: what the daemon's list says of the user (None: nobody knows, e.g.
    the daemon itself did not answer); the login's offline rule needs it.
    ``recovery_codes``: the daemon holds break-glass hashes of the user."""

    reason = "offline"
    exit_name = "STATE"

    def __init__(self, message: str, enrolled: bool | None = None,
                 recovery_codes: bool = False) -> None:
        super().__init__(message)
        self.enrolled = enrolled
        self.recovery_codes = recovery_codes


class FleetConflict(FleetError):
    """A user is already in the fleet with another secret (``fleet import`` without
    ``--force``), or the database has a newer schema than this pam-twofa knows."""

    reason = "fleet-conflict"
