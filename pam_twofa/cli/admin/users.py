"""``twofa-admin enroll``, ``status``, ``reset`` and ``unlock``: one user's 2FA."""

from __future__ import annotations

import click

from pam_twofa import enrollment
from pam_twofa.cli.admin.context import PROG, Admin, pass_admin
from pam_twofa.cli.common import print_json, run, when
from pam_twofa.errors import NotEnrolled
from pam_twofa.store import validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def enroll_user(admin: Admin, user: str, secret: str | None,
                make_codes: bool = False) -> dict[str, Any]:
    """Provision ``user`` with a new (or given) secret; replaces any old one.

    A re-enrollment revokes what the old secret vouched for (``enrollment.activate``)
    and the old recovery codes; ``make_codes`` makes ten new ones, shown once.
    """
    validate_user_name(user)
    secret = enrollment.check_secret(secret) if secret else None
    from pam_twofa import recovery, totp

    secret = secret or totp.random_secret()
    policy = admin.policy
    codes = recovery.new_codes() if make_codes else []
    summary = admin.store.provision(user, secret, policy, admin.clock.now(), codes)
    assert summary is not None  # replace=True
    admin.audit("enroll", user, devices_revoked=summary["devices_revoked"],
                recovery_codes=len(codes))
    return {"user": user, "account": enrollment.label(user, policy), "secret": secret,
            "uri": enrollment.uri(user, secret, policy), "recovery_codes": codes,
            "revoked": enrollment.revoked(summary)}


def read_secret_file(path: str) -> str:
    """The secret on the first line of ``path`` (``-``: standard input)."""
    from pam_twofa.errors import UsageError

    try:
        if path == "-":
            text = click.get_text_stream("stdin").readline(4096)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.readline(4096)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the secret from {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    secret = text.strip()
    if not secret:
        raise UsageError(f"no secret in {'standard input' if path == '-' else path}")
    return secret


@click.command()
@click.argument("user")
@click.option("--secret", help="Use this base32 secret (>= 128 bits) instead of a new one; "
                               "visible to other users in ps: prefer --secret-file.")
@click.option("--secret-file", type=click.Path(dir_okay=False, allow_dash=True),
              help="Read the base32 secret from the first line of this file ('-': stdin).")
@click.option("--recovery-codes", "make_codes", is_flag=True,
              help="Also make ten recovery codes and print them (once).")
@click.option("--json", "as_json", is_flag=True,
              help="Print {user, account, secret, uri, recovery_codes, revoked} as JSON.")
@click.option("--png", type=click.Path(dir_okay=False), help="Also write the QR code as PNG.")
@click.option("--qr", "qr_mode", type=click.Choice(["auto", "utf8", "ascii", "none"]),
              default="auto", show_default=True, help="How to draw the QR code.")
@pass_admin
def enroll(admin: Admin, user: str, secret: str | None, secret_file: str | None,
           make_codes: bool, as_json: bool, png: str | None, qr_mode: str) -> None:
    """Enroll USER (admin provisioning): print the QR code, secret and otpauth URI."""

    def body() -> None:
        from pam_twofa.cli.show import show_secret, write_png
        from pam_twofa.errors import UsageError

        given = secret
        if secret is not None and secret_file is not None:
            raise UsageError("give --secret or --secret-file, not both")
        if secret is not None:
            click.echo(f"{PROG}: warning: --secret is visible to other users (ps, /proc); "
                       "use --secret-file FILE or --secret-file - (stdin).", err=True)
        if secret_file is not None:
            given = read_secret_file(secret_file)
        png_fd = None
        if png:  # opened first: a refused path changes nothing
            from pam_twofa.enroll import qr

            png_fd = qr.open_png(png)
        try:
            result = enroll_user(admin, user, given, make_codes)
        except BaseException:
            if png_fd is not None and png:
                import contextlib
                import os

                os.close(png_fd)
                with contextlib.suppress(OSError):
                    os.unlink(png)  # the empty file we made
            raise
        if as_json:
            if png:
                write_png(png, result["uri"], png_fd)
            print_json(result)
            return
        show_secret(result["account"], result["secret"], result["uri"], qr_mode=qr_mode,
                    png=png, png_fd=png_fd)
        for line in result["revoked"]:
            click.echo(line)
        codes = result["recovery_codes"]
        if codes:
            from pam_twofa.recovery import groups

            click.echo("Recovery codes (each works once instead of a code; hand them over "
                       "safely, they are not shown again):")
            for code in codes:
                click.echo(f"    {groups(code)}")
        else:
            click.echo(f"No recovery codes were made: {user} has none. Make them with "
                       f"'{PROG} recovery-codes {user}' (or enroll with --recovery-codes).")

    run(PROG, body)


def user_status(admin: Admin, user: str) -> dict[str, Any]:
    validate_user_name(user)
    info = admin.store.status(user, admin.clock.now())
    return {"user": user, **info}


@click.command()
@click.argument("user", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_admin
def status(admin: Admin, user: str | None, as_json: bool) -> None:
    """Show USER's 2FA state, or every user's with state."""

    def body() -> None:
        users = [user] if user is not None else admin.store.users()
        rows = [user_status(admin, name) for name in users]
        if as_json:
            from pam_twofa.rollout.hostchecks import warnings

            print_json(rows[0] if user is not None else rows)
            for warning in warnings(admin.paths):  # stdout stays one JSON document
                click.echo(f"Warning: {warning}", err=True)
            return
        click.echo(f"{'USER':<20} {'ENROLLED':<9} {'FAILURES':<9} LOCKED UNTIL")
        for row in rows:
            locked = ("suspended (twofa-admin unlock)" if row["suspended_since"] is not None
                      else when(row["locked_until"]))
            click.echo(f"{row['user']:<20} {'yes' if row['enrolled'] else 'no':<9} "
                       f"{row['failures']:<9} {locked}")
        from pam_twofa.accounts import root_names

        roots = root_names()
        if len(roots) > 1:  # toor & co: one identity for the policy, one grace period
            click.echo(f"Accounts with uid 0: {', '.join(roots)} (the policy treats each "
                       "as root; each enrolls on its own)")
        from pam_twofa.clockstatus import read  # the last twofa-clockcheck, if any

        clock = read(admin.paths.clock_status)
        if clock is not None:
            click.echo(f"Clock: {clock.describe()}")
        from pam_twofa.rollout.hostchecks import warnings

        for warning in warnings(admin.paths):
            click.echo(f"Warning: {warning}")

    run(PROG, body)


@click.command()
@click.argument("user")
@pass_admin
def reset(admin: Admin, user: str) -> None:
    """Remove USER's 2FA entirely (secret, recovery codes, devices, lock)."""

    def body() -> None:
        validate_user_name(user)
        from pam_twofa.cli.admin.mail import email_of, notify_reset

        address = email_of(admin, user)  # read before the state goes, for the notice
        if not admin.store.reset(user):
            raise NotEnrolled(f"{user} has no 2FA state")
        admin.audit("reset", user)
        click.echo(f"{user}: 2FA reset; the user must enroll again.")
        notify_reset(admin, user, address)

    run(PROG, body)


@click.command()
@click.argument("user")
@pass_admin
def unlock(admin: Admin, user: str) -> None:
    """Lift USER's lock and forget the wrong codes counted so far."""

    def body() -> None:
        validate_user_name(user)
        if not admin.store.unlock(user):
            raise NotEnrolled(f"{user} has no 2FA state")
        admin.audit("unlock", user)
        click.echo(f"{user}: unlocked.")

    run(PROG, body)


COMMANDS = (enroll, status, reset, unlock)
