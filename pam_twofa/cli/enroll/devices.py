"""``twofa-enroll devices [--json]`` / ``twofa-enroll devices revoke ID|--all``.

Users see and revoke their own trusted devices through the enrollment service
(the state is root's); the next login from a revoked device asks for the code.
"""

from __future__ import annotations

import click

from pam_twofa.cli.common import print_json, run
from pam_twofa.cli.enroll.client import PROG, Client, pass_client
from pam_twofa.errors import UsageError


@click.group("devices", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def devices(ctx: click.Context, as_json: bool) -> None:
    """List your trusted devices (a trusted device skips the code until it expires)."""
    if ctx.invoked_subcommand is not None:
        return
    client = ctx.find_object(Client)
    assert client is not None

    def body() -> None:
        from pam_twofa.cli.show import print_devices

        rows = client.ask("devices", action="list")["devices"]
        if as_json:
            print_json(rows)
        else:
            print_devices(rows)

    run(PROG, body)


@devices.command("revoke")
@click.argument("device_id", required=False)
@click.option("--all", "revoke_all", is_flag=True, help="Revoke all your trusted devices.")
@pass_client
def revoke(client: Client, device_id: str | None, revoke_all: bool) -> None:
    """Revoke trusted device ID (or --all): its next login asks for the code."""

    def body() -> None:
        if (device_id is None) == (not revoke_all):
            raise UsageError("give a device ID or --all (not both)")
        if revoke_all:
            removed = client.ask("devices", action="revoke-all")["revoked"]
        else:
            removed = client.ask("devices", action="revoke", id=device_id)["revoked"]
        click.echo(f"Revoked {len(removed)} trusted device(s).")

    run(PROG, body)


COMMANDS = (devices,)
