"""``twofa-admin policy check``: validate a policy file, every error as file:line."""

from __future__ import annotations

import click

from pam_twofa.cli.admin.context import PROG, Admin, pass_admin
from pam_twofa.cli.common import ExitCode, run
from pam_twofa.errors import PolicyError


@click.group("policy")
def policy_group() -> None:
    """Check the policy file."""


@policy_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@pass_admin
def policy_check(admin: Admin, file: str | None) -> None:
    """Validate FILE (default: --policy); print each error as file:line."""

    def body() -> None:
        from pam_twofa import policyfile

        paths = admin.paths if file is None else admin.paths.replace(policy=file,
                                                                     policy_explicit=True)
        try:
            policyfile.load(paths, use_cache=False)
        except PolicyError as exc:
            errors = getattr(exc, "errors", [exc])
            for error in errors:
                click.echo(error.message, err=True)
            raise SystemExit(ExitCode.CONFIG) from None
        import os

        if os.path.exists(paths.policy):
            click.echo(f"{paths.policy}: OK")
        else:
            click.echo(f"{paths.policy}: not present; the built-in defaults apply")

    run(PROG, body)


COMMANDS = (policy_group,)
