"""The enrollment service's own operations: status, begin, confirm, recovery-codes, disable.

Each acts on the caller's record only (``caller.name``) through one store
operation (one lock), with the same replay rule and lockout as a login
(``verify.verify``, through ``enrollment.check_code``).
The only secret ever returned is the caller's own new pending one, once, by
``begin``; recovery codes are returned once, when they are made.

- ``status``: what ``twofa-enroll status`` shows (no secret).
- ``begin`` [code]: a new pending secret with its URI; an enrolled user must
  give a current TOTP code or a recovery code.
- ``confirm`` code: activate the pending secret when ``code`` is its current
  code; returns ten new recovery codes.
- ``recovery-codes`` code: ten new recovery codes (the old ones stop working).
- ``disable`` code: turn 2FA off, only where the policy does not require it.

``recovery-codes`` and ``disable`` refuse what they would refuse anyway (not
enrolled, required by the policy) before looking at the code; without a code
they answer ``code-needed``, so a client asks for one only when it can help.
"""

from __future__ import annotations

from pam_twofa import enrollment
from pam_twofa.errors import CodeRefused, NotAllowed, NotEnrolled
from pam_twofa.service.protocol import arg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pam_twofa.policy import Policy
    from pam_twofa.service.context import Caller, Context

CODE_LEN = 32


def _required(policy: Policy, caller: Caller) -> bool:
    account = caller.account
    return policy.mandatory.requires(account.name, account.uid, account.groups)


def _refused(result: str) -> CodeRefused:
    return CodeRefused(enrollment.REFUSAL_MESSAGES.get(result, result), result)


def _code(args: dict[str, Any]) -> str:
    code = arg(args, "code", max_len=CODE_LEN)
    assert code is not None  # required=True
    return code


def status(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    policy = ctx.policy
    info = ctx.store.account(caller.name, policy, ctx.clock.now())
    info.update(user=caller.name, required=_required(policy, caller),
                mode=policy.enrollment.mode)
    return info


def begin(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    code = arg(args, "code", required=False, max_len=CODE_LEN)
    policy = ctx.policy
    now = ctx.clock.now()
    result, secret = ctx.store.begin_enrollment(caller.name, code, policy, now)
    expires = now + policy.enrollment.pending_ttl_seconds
    if result == "code-needed":
        raise CodeRefused("you are enrolled already: give a current code or a recovery code "
                          "to enroll again", "code-needed")
    if result not in ("new", "ok", "recovery") or secret is None:
        raise _refused(result)
    ctx.audit(caller, "begin", "ok", proof=result)
    tp = policy.totp
    return {
        "secret": secret,
        "uri": enrollment.uri(caller.name, secret, policy),
        "account": enrollment.label(caller.name, policy),
        "issuer": enrollment.issuer(policy),
        "digits": tp.digits, "period": tp.period, "algorithm": tp.algorithm,
        "expires": expires,
    }


def confirm(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    code = _code(args)
    policy = ctx.policy
    result, codes, summary = ctx.store.confirm_enrollment(caller.name, code, policy,
                                                          ctx.clock.now())
    if result != "ok":
        raise _refused(result)
    ctx.audit(caller, "confirm", "ok", devices_revoked=summary["devices_revoked"])
    return {"enrolled": True, "recovery_codes": codes,
            "revoked": enrollment.revoked(summary)}


def _with_code(ctx: Context, caller: Caller, args: dict[str, Any],
               allowed: Callable[[Policy], None] | None = None) -> tuple[Policy, str]:
    """The policy and the code, for operations that need an enrolled caller.

    Every refusal already known comes first (not enrolled, ``allowed`` raising),
    so no code is asked for, or used up, by a request that would be refused
    anyway; a request without a code then gets ``code-needed`` (what clients use
    to ask "may I?" before prompting).
    """
    code = arg(args, "code", required=False, max_len=CODE_LEN)
    policy = ctx.policy
    if not ctx.store.account(caller.name, policy, ctx.clock.now())["enrolled"]:
        raise NotEnrolled("two-factor authentication is not on for your account")
    if allowed is not None:
        allowed(policy)
    if code is None:
        raise CodeRefused("give a current code from your app or a recovery code",
                          "code-needed")
    return policy, code


def recovery_codes(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    policy, code = _with_code(ctx, caller, args)
    result, codes = ctx.store.new_recovery_codes(caller.name, code, policy, ctx.clock.now())
    if result not in ("ok", "recovery"):
        raise _refused(result)
    ctx.audit(caller, "recovery-codes", "ok", proof=result)
    return {"recovery_codes": codes}


def disable(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    def allowed(policy: Policy) -> None:
        if _required(policy, caller):
            raise NotAllowed("the policy requires two-factor authentication for your account")

    policy, code = _with_code(ctx, caller, args, allowed)
    result = ctx.store.disable(caller.name, code, policy, ctx.clock.now())
    if result not in ("ok", "recovery"):
        raise _refused(result)
    ctx.audit(caller, "disable", "ok", proof=result)
    return {"enrolled": False}
