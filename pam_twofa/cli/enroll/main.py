"""``twofa-enroll``: a user turns 2FA on or off for themselves.

The click group and the one list of its command modules: a new command family is
a module exposing ``COMMANDS`` and one entry in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import click

from pam_twofa.cli.common import invoke, run
from pam_twofa.cli.enroll import account, devices, email
from pam_twofa.cli.enroll.client import PROG, Client
from pam_twofa.paths import DEFAULT_SOCKET

COMMAND_MODULES = (account, devices, email)


@click.group(invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True,
              help="The enrollment service's socket.")
@click.option("--png", type=click.Path(dir_okay=False), help="Also write the QR code as PNG.")
@click.option("--qr", "qr_mode", type=click.Choice(["auto", "utf8", "ascii", "none"]),
              default="auto", show_default=True, help="How to draw the QR code.")
@click.option("--if-needed", is_flag=True,
              help="Only if the policy requires 2FA and it is not on (profile script).")
@click.version_option(package_name="pam-twofa", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, socket_path: str, png: str | None, qr_mode: str,
        if_needed: bool) -> None:
    """Turn on two-factor authentication for your account (bare command), or manage it."""
    ctx.obj = Client(socket_path)
    if ctx.invoked_subcommand is None:
        run(PROG, lambda: account.enroll(ctx.obj, png, qr_mode, if_needed))


for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    invoke(cli, PROG)
