"""The enrollment service's security-email operations (``twofa-enroll email``).

- ``email`` address [code]: mail a verification code to ``address`` (the caller's
  own record; counts against the hourly verification-mail limit); the address
  waits in ``email_pending`` until confirmed. An enrolled caller must give
  ``code``, a current TOTP code or a recovery code, checked as at a login
  (replay, lockout, failure count); without it nothing is mailed.
- ``email-verify`` code: make the waiting address the caller's security email.
  A wrong code counts; after ``MAX_TRIES`` wrong codes the waiting address is
  dropped, so a code cannot be guessed through the socket. A change mails a
  notice to the old address and pauses emergency codes for
  ``emergency.after_email_change_hours``.
"""

from __future__ import annotations

from pam_twofa.mail import security_email
from pam_twofa.service.protocol import arg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.service.context import Caller, Context


def email(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    address = arg(args, "address", max_len=254)
    proof = arg(args, "code", required=False, max_len=32)
    assert address is not None
    masked = security_email.start(caller.name, address, ctx.policy, ctx.store, ctx.clock,
                            proof=proof, client=f"uid {caller.uid} (twofa-enroll)")
    ctx.audit(caller, "email", "ok")
    return {"email_pending": masked, "ttl_seconds": ctx.policy.emergency.ttl_seconds}


def email_verify(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    code = arg(args, "code", max_len=32)
    assert code is not None
    done = security_email.confirm(caller.name, code, ctx.policy, ctx.store, ctx.clock)
    ctx.audit(caller, "email-verify", "ok", notified="yes" if done.notified else "no")
    return {"email": done.email, "emergency_held_until": done.held_until,
            "old_address_notified": done.notified}
