"""``twofa-enroll email``: set the security email that emergency codes go to.

``twofa-enroll email ADDRESS`` asks the service to mail a verification code to
ADDRESS, then asks for that code; the address becomes active only once the code
is entered. ``twofa-enroll email-verify CODE`` enters a code later (the code is
valid ``emergency.ttl_seconds``).
"""

from __future__ import annotations

import click

from pam_twofa.cli.common import run
from pam_twofa.cli.enroll import PROG, Client, ServiceRefused, cli, pass_client

TRIES = 3
# The service sends the mail while we wait: allow for the policy's smtp timeout (<= 120 s).
MAIL_WAIT = 150.0


@cli.command("email")
@click.argument("address")
@click.option("--no-wait", is_flag=True,
              help="Only send the code; enter it later with 'email-verify CODE'.")
@pass_client
def email(client: Client, address: str, no_wait: bool) -> None:
    """Mail a verification code to ADDRESS, then enter it to make ADDRESS active."""

    def body() -> None:
        sent = client.ask("email", address=address, timeout=MAIL_WAIT)
        click.echo(f"A verification code was sent to {sent['email_pending']}.")
        if no_wait:
            click.echo(f"Run '{PROG} email-verify CODE' with the code from the mail.")
            return
        for attempt in range(1, TRIES + 1):
            code = click.prompt("Enter the code from the mail")
            try:
                done = client.ask("email-verify", code=code)
                break
            except ServiceRefused as exc:
                if "wrong verification code" not in exc.message or attempt == TRIES:
                    raise
                click.echo(f"{PROG}: {exc.message}; try again.", err=True)
        click.echo(f"Security email set: {done['email']}.")

    run(PROG, body)


@cli.command("email-verify")
@click.argument("code")
@pass_client
def email_verify(client: Client, code: str) -> None:
    """Enter the verification CODE mailed by 'email ADDRESS'."""

    def body() -> None:
        done = client.ask("email-verify", code=code)
        click.echo(f"Security email set: {done['email']}.")

    run(PROG, body)
