"""``twofa-admin recovery-codes`` and ``twofa-admin import-google-authenticator``."""

from __future__ import annotations

import click

from pam_twofa import enrollment, recovery
from pam_twofa.cli.admin.context import PROG, Admin, pass_admin
from pam_twofa.cli.common import print_json, run
from pam_twofa.errors import NotEnrolled, UsageError
from pam_twofa.store import validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@click.command("recovery-codes")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True, help="Print {user, recovery_codes} as JSON.")
@pass_admin
def recovery_codes(admin: Admin, user: str, as_json: bool) -> None:
    """Give enrolled USER ten new recovery codes (the old ones stop working)."""

    def body() -> None:
        codes = regenerate(admin, user)
        if as_json:
            print_json({"user": user, "recovery_codes": codes})
            return
        click.echo(f"{user}: new recovery codes (each works once; hand them over safely):")
        for code in codes:
            click.echo(f"    {recovery.groups(code)}")

    run(PROG, body)


def regenerate(admin: Admin, user: str) -> list[str]:
    validate_user_name(user)
    codes = admin.store.reset_recovery_codes(user)
    if codes is None:
        raise NotEnrolled(f"{user} is not enrolled")
    admin.audit("recovery-codes", user)
    return codes


@click.command("import-google-authenticator")
@click.argument("user")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace USER's existing enrollment.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@pass_admin
def import_google_authenticator(admin: Admin, user: str, file: str, force: bool,
                                as_json: bool) -> None:
    """Enroll USER with the TOTP secret of a google-authenticator-libpam FILE.

    Its scratch codes become USER's recovery codes (hashed). HOTP files and
    malformed files are refused and nothing is written.
    """

    def body() -> None:
        summary = import_file(admin, user, file, force)
        if as_json:
            print_json(summary)
            return
        click.echo(f"{user}: imported the TOTP secret of {file} (period {summary['period']} s) "
                   f"and {summary['recovery_codes']} scratch code(s) as recovery codes.")
        for line in summary["revoked"]:
            click.echo(line)
        for line in summary["not_carried_over"]:
            click.echo(f"  {line}")
        for line in summary["warnings"]:
            click.echo(f"{PROG}: warning: {line}", err=True)
        click.echo(f"The old file still holds the secret and scratch codes in plain text; "
                   f"remove it: rm {file}")

    run(PROG, body)


def import_file(admin: Admin, user: str, path: str, force: bool) -> dict[str, Any]:
    import pwd

    from pam_twofa.enroll import googleauth

    validate_user_name(user)
    try:
        owner = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise UsageError(f"{user} has no passwd entry: cannot check that {path} is "
                         "theirs") from None
    parsed = googleauth.read(path, owner)  # everything is checked before anything is written
    policy = admin.policy
    info, warnings = googleauth.notes(parsed, policy)
    summary = admin.store.provision(user, parsed.secret, policy, admin.clock.now(),
                                    list(parsed.scratch_codes), replace=force, digits=6,
                                    period=parsed.period, algorithm="SHA1")
    if summary is None:
        raise UsageError(f"{user} is enrolled already; --force replaces the enrollment")
    admin.audit("import-google-authenticator", user, recovery_codes=len(parsed.scratch_codes),
                devices_revoked=summary["devices_revoked"])
    return {"user": user, "period": parsed.period, "digits": 6, "algorithm": "SHA1",
            "recovery_codes": len(parsed.scratch_codes), "not_carried_over": info,
            "warnings": warnings, "old_file": path, "revoked": enrollment.revoked(summary)}


COMMANDS = (recovery_codes, import_google_authenticator)
