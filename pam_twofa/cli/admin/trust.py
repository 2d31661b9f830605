"""``twofa-admin trust list USER [--json]`` / ``twofa-admin trust revoke USER ID|--all``.

A revoked record is gone from the user's state at once, so the next login from that
device asks for the code again (the module reads the state on every login).
"""

from __future__ import annotations

import click

from pam_twofa.cli.admin.context import PROG, Admin, pass_admin
from pam_twofa.cli.common import print_json, run
from pam_twofa.cli.show import print_devices
from pam_twofa.errors import NotEnrolled, UsageError
from pam_twofa.store import validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass


@click.group("trust")
def trust_group() -> None:
    """List and revoke a user's trusted devices."""


@trust_group.command("list")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_admin
def trust_list(admin: Admin, user: str, as_json: bool) -> None:
    """Show USER's trusted devices (id, IP, key fingerprint, expiry, last use; on the
    fleet store every host's, with the host)."""

    def body() -> None:
        validate_user_name(user)
        rows = admin.store.devices(user, admin.clock.now())
        if as_json:
            print_json(rows)
        else:
            print_devices(rows)

    run(PROG, body)


@trust_group.command("revoke")
@click.argument("user")
@click.argument("device_id", required=False)
@click.option("--all", "revoke_all", is_flag=True, help="Revoke every device of USER.")
@pass_admin
def trust_revoke(admin: Admin, user: str, device_id: str | None, revoke_all: bool) -> None:
    """Revoke USER's trusted device ID (or --all); the next login asks for the code."""

    def body() -> None:
        validate_user_name(user)
        if (device_id is None) == (not revoke_all):
            raise UsageError("give a device ID or --all (not both)")
        removed = admin.store.revoke_devices(user, None if revoke_all else device_id)
        if removed is None:
            raise NotEnrolled(f"{user} has no 2FA state")
        if not removed and not revoke_all:
            raise NotEnrolled(f"{user} has no trusted device {device_id}")
        admin.audit("trust-revoke", user, devices=",".join(removed) or "-")
        click.echo(f"{user}: revoked {len(removed)} trusted device(s).")

    run(PROG, body)


COMMANDS = (trust_group,)
