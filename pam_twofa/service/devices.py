"""The enrollment service's trusted-device operation (``twofa-enroll devices``).

``devices`` with ``action``: ``list`` (default) the caller's own records, ``revoke``
one by ``id``, or ``revoke-all``. Records hold no secret (IP, key fingerprint,
times), so listing them to their owner is safe. A revocation is in the state at
once: the next login from that device asks for the code.
"""

from __future__ import annotations

from pam_twofa.errors import NotEnrolled, RequestError
from pam_twofa.service.protocol import arg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.service.context import Caller, Context

ACTIONS = ("list", "revoke", "revoke-all")


def devices(ctx: Context, caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    action = arg(args, "action", required=False, max_len=16) or "list"
    if action not in ACTIONS:
        raise RequestError("bad-request", f"devices: action must be one of {', '.join(ACTIONS)}")
    device_id = arg(args, "id", required=action == "revoke", max_len=64)
    if action == "list":
        return {"devices": ctx.store.devices(caller.name, ctx.clock.now())}
    removed = ctx.store.revoke_devices(caller.name, device_id if action == "revoke" else None)
    if removed is None:
        raise NotEnrolled("you have no trusted devices")
    if action == "revoke" and not removed:
        raise NotEnrolled(f"no trusted device {device_id}")
    ctx.audit(caller, "devices", "ok", action=action, devices=",".join(removed) or "-")
    return {"revoked": removed}
