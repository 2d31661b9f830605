"""``twofa-admin mail-test`` and ``twofa-admin email``: the mail side of administration.

``mail-test ADDRESS`` sends one message through the policy's ``smtp`` settings and
says which step failed (resolve, connect, tls, auth, rejected, timeout), so an
admin can fix the configuration before users depend on emergency codes.
``email USER ADDRESS|--clear`` sets a user's security email (verified: the admin
vouches for it) or removes it.
"""

from __future__ import annotations

import sys

import click

from pam_twofa.cli.admin.context import PROG, Admin, pass_admin
from pam_twofa.cli.common import ExitCode, print_json, run
from pam_twofa.errors import UsageError


@click.command("mail-test")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print {ok, kind, message} as JSON.")
@pass_admin
def mail_test(admin: Admin, address: str, as_json: bool) -> None:
    """Send a test mail to ADDRESS; on failure name the step that failed."""

    def body() -> None:
        import time

        from pam_twofa.mail import mailer

        server = mailer.server(admin.policy.smtp)
        where = f"{server.host}:{server.port} ({server.security})"
        started = time.monotonic()
        try:
            mailer.send(server, address, "pam-twofa test mail",
                        f"This is a test mail from pam-twofa on {mailer.hostname()}.\n"
                        "Emergency codes and notifications can reach this address.\n")
        except mailer.MailError as exc:
            seconds = round(time.monotonic() - started, 2)
            if as_json:
                print_json({"ok": False, "kind": exc.kind, "message": exc.message,
                            "server": where, "seconds": seconds})
            else:
                click.echo(f"{PROG}: mail-test via {where} failed after {seconds} s",
                           err=True)
                click.echo(f"failure: {exc.kind}", err=True)
                click.echo(f"detail: {exc.message}", err=True)
            sys.exit(ExitCode.FAILED)
        if as_json:
            print_json({"ok": True, "kind": None, "message": "sent", "server": where,
                        "seconds": round(time.monotonic() - started, 2)})
        else:
            click.echo(f"mail-test: sent to {address} via {where}")

    run(PROG, body)


@click.command("email")
@click.argument("user")
@click.argument("address", required=False)
@click.option("--clear", is_flag=True, help="Remove USER's security email.")
@pass_admin
def email(admin: Admin, user: str, address: str | None, clear: bool) -> None:
    """Set USER's security email to ADDRESS (verified), or remove it with --clear."""

    def body() -> None:
        from pam_twofa.errors import NotEnrolled
        from pam_twofa.mail import mailer
        from pam_twofa.store import validate_user_name

        validate_user_name(user)
        if clear == (address is not None):
            raise UsageError("give either ADDRESS or --clear")
        if not admin.store.set_email(user, address):
            raise NotEnrolled(f"{user} has no 2FA state")
        admin.audit("email-clear" if clear else "email-set", user)
        if clear:
            click.echo(f"{user}: security email removed.")
        else:
            click.echo(f"{user}: security email set to {mailer.mask(address or '')} "
                       "(verified).")

    run(PROG, body)


def email_of(admin: Admin, user: str) -> str | None:
    """The user's verified address, or None (also for unreadable state: a reset of
    a corrupt state must still work)."""
    from pam_twofa.errors import TwofaError

    try:
        return admin.store.security_email(user)
    except TwofaError:
        return None


def notify_reset(admin: Admin, user: str, address: str | None) -> None:
    """Tell the user their 2FA was reset (if switched on); a failure only warns."""
    if not address:
        return
    import os
    import pwd

    from pam_twofa.errors import TwofaError
    from pam_twofa.mail import mailer, notify

    try:
        policy = admin.policy
    except TwofaError as exc:
        click.echo(f"{PROG}: warning: no reset notice: {exc.message}", err=True)
        return
    if not (policy.notifications.reset_by_admin and mailer.configured(policy.smtp)):
        return
    try:
        by: str | None = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        by = None
    if notify.reset_by_admin(policy, user, address, now=admin.clock.now(), by=by):
        click.echo(f"{user}: notice sent to {mailer.mask(address)}.")
    else:
        click.echo(f"{PROG}: warning: the reset notice to {mailer.mask(address)} "
                   "could not be sent", err=True)


COMMANDS = (mail_test, email)
