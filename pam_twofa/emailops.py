"""The enrollment service's security-email operations (``twofa-enroll email``).

- ``email`` address: mail a verification code to ``address`` (the caller's own
  record; counts against the hourly mail limit); the address waits in
  ``email_pending`` until confirmed.
- ``email-verify`` code: make the waiting address the caller's security email.
  A wrong code counts; after ``MAX_TRIES`` wrong codes the waiting address is
  dropped, so a code cannot be guessed through the socket.
"""

from __future__ import annotations

from pam_twofa import secemail
from pam_twofa.enrollsvc import Caller, Context, arg, operation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@operation("email", args=("address",))
def email(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    address = arg(args, "address", max_len=254)
    assert address is not None
    masked = secemail.start(caller.name, address, ctx.policy, ctx.store, ctx.clock,
                            client=f"uid {caller.uid} (twofa-enroll)")
    ctx.audit(caller, "email", "ok")
    return {"email_pending": masked, "ttl_seconds": ctx.policy.emergency.ttl_seconds}


@operation("email-verify", args=("code",))
def email_verify(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    code = arg(args, "code", max_len=32)
    assert code is not None
    masked = secemail.confirm(caller.name, code, ctx.store, ctx.clock)
    ctx.audit(caller, "email-verify", "ok")
    return {"email": masked}
