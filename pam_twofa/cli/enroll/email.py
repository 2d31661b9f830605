"""``twofa-enroll email``: set the security email that emergency codes go to.

``twofa-enroll email ADDRESS`` asks (when 2FA is on) for a current code from the
app or a recovery code, has the service mail a verification code to ADDRESS,
then asks for that code; the address becomes active only once the code is
entered. ``twofa-enroll email-verify`` asks for a code mailed earlier. Codes are
read at prompts, never from the command line (argv is visible in /proc).
"""

from __future__ import annotations

import click

from pam_twofa.cli.common import run, when
from pam_twofa.cli.enroll.client import PROG, Client, pass_client
from pam_twofa.errors import ServiceRefused

TRIES = 3
# The service sends the mail while we wait: allow for the policy's smtp timeout (<= 120 s).
MAIL_WAIT = 150.0
MAIL_PROMPT = "Enter the code from the mail"


@click.command("email")
@click.argument("address")
@click.option("--no-wait", is_flag=True,
              help="Only send the code; enter it later with 'email-verify'.")
@pass_client
def email(client: Client, address: str, no_wait: bool) -> None:
    """Mail a verification code to ADDRESS, then enter it to make ADDRESS active.

    When 2FA is on, a current code from your app (or a recovery code) is asked first.
    """

    def body() -> None:
        from pam_twofa.mail import mailer

        mailer.check_address(address)  # refuse a typo before a code is used up
        proof = None
        if client.ask("status")["enrolled"]:
            proof = click.prompt("Current code from your app (or a recovery code)")
        sent = client.ask("email", address=address, code=proof, timeout=MAIL_WAIT)
        click.echo(f"A verification code was sent to {sent['email_pending']}.")
        if no_wait:
            click.echo(f"Run '{PROG} email-verify' and enter the code from the mail.")
            return
        for attempt in range(1, TRIES + 1):
            code = click.prompt(MAIL_PROMPT)
            try:
                done = client.ask("email-verify", code=code, timeout=MAIL_WAIT)
                break
            except ServiceRefused as exc:
                if "wrong verification code" not in exc.message or attempt == TRIES:
                    raise
                click.echo(f"{PROG}: {exc.message}; try again.", err=True)
        _done(done)

    run(PROG, body)


def _done(done: dict[str, object]) -> None:
    click.echo(f"Security email set: {done['email']}.")
    held = done.get("emergency_held_until")
    if isinstance(held, (int, float)):
        click.echo(f"Emergency codes by mail are paused until {when(held)}, because the "
                   "address changed; the old address was told.")


@click.command("email-verify")
@click.argument("code", required=False)
@pass_client
def email_verify(client: Client, code: str | None) -> None:
    """Enter the verification code mailed by 'email ADDRESS' (asked at a prompt).

    CODE on the command line still works for scripts, with a warning: other
    users can read a process's arguments.
    """

    def body() -> None:
        given = code
        if given is None:
            given = click.prompt(MAIL_PROMPT)
        else:
            click.echo(f"{PROG}: warning: a code on the command line is visible to other "
                       "users (ps, /proc); leave it out to be asked for it.", err=True)
        _done(client.ask("email-verify", code=given, timeout=MAIL_WAIT))

    run(PROG, body)


COMMANDS = (email, email_verify)
