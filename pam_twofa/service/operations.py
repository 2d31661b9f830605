"""The enrollment service's operations: one static table, op name -> handler.

Every handler is imported here by name, so the table is the whole list of what
the service can do and tools see every dependency. A new operation: a handler in
the module of its feature, and one line in ``OPERATIONS`` with the arguments it
takes (any other argument is refused before the handler runs). Handlers raise
``TwofaError`` for refusals (its ``reason`` goes out as ``error``) and must never
return a secret except the caller's own new one.
"""

from __future__ import annotations

from pam_twofa.record import Record
from pam_twofa.service import devices, email, enroll

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pam_twofa.service.context import Caller, Context


class Operation(Record):
    """A handler and the argument names it accepts."""

    handler: Callable[[Context, Caller, dict[str, Any]], dict[str, Any]]
    args: frozenset[str]


def _op(handler: Callable[[Context, Caller, dict[str, Any]], dict[str, Any]],
        *args: str) -> Operation:
    return Operation(handler=handler, args=frozenset(args))


OPERATIONS: dict[str, Operation] = {
    "status": _op(enroll.status),
    "begin": _op(enroll.begin, "code"),
    "confirm": _op(enroll.confirm, "code"),
    "recovery-codes": _op(enroll.recovery_codes, "code"),
    "disable": _op(enroll.disable, "code"),
    "email": _op(email.email, "address", "code"),
    "email-verify": _op(email.email_verify, "code"),
    "devices": _op(devices.devices, "action", "id"),
}
