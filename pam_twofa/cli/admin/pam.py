"""``twofa-admin pam enable|disable|status``: pam-twofa into one service's stack, safely.

A thin face over ``pam_twofa.hostconf`` (which a login never imports): it edits
``--pam-dir`` (default /etc/pam.d) and prints what it did; refusals come back as
``PamConfigError`` with file:line and leave exit codes to ``common.run``.
"""

from __future__ import annotations

import click

from pam_twofa.cli.admin.context import PROG
from pam_twofa.cli.common import ExitCode, print_json, run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PAM_DIR = "/etc/pam.d"
MODULE_HELP = "pam_python module on the line (checkout: /abs/path/pam_twofa/pam_entry.py)."
GUARD_HELP = "Guard module before it (checkout: /abs/path/build/pam_twofa_guard.so)."


def pam_dir_option(f: F) -> F:
    return click.option("--pam-dir", default=DEFAULT_PAM_DIR, show_default=True,
                        metavar="DIR", type=click.Path(file_okay=False),
                        help="PAM service directory.")(f)


def module_options(f: F) -> F:
    from pam_twofa.hostconf.pamstack import DEFAULT_GUARD, DEFAULT_MODULE

    f = click.option("--guard", default=DEFAULT_GUARD, show_default=True, metavar="PATH",
                     help=GUARD_HELP)(f)
    return click.option("--module", default=DEFAULT_MODULE, show_default=True,
                        metavar="PATH", help=MODULE_HELP)(f)


def say(service: str, message: str, warnings: list[str]) -> None:
    for text in message.splitlines():
        click.echo(f"{service}: {text}" if service else text)
    for warning in warnings:
        click.echo(f"{PROG}: warning: {warning}", err=True)


@click.group("pam")
def pam_group() -> None:
    """Put pam-twofa into a PAM service's stack the safe way, or take it out."""


@pam_group.command("enable")
@click.argument("service")
@pam_dir_option
@module_options
@click.option("--module-args", default="", metavar="ARGS",
              help="Module arguments for the line, e.g. 'policy=FILE debug'.")
def pam_enable(service: str, pam_dir: str, module: str, guard: str, module_args: str) -> None:
    """Add the guard and module lines after SERVICE's password step."""

    def body() -> None:
        from pam_twofa.hostconf.pamedit import enable

        done = enable(pam_dir, service, module=module, guard=guard, args=module_args)
        say(service, done.message, done.warnings)

    run(PROG, body)


@pam_group.command("disable")
@click.argument("service", required=False)
@click.option("--all", "every", is_flag=True, help="Every service file in --pam-dir.")
@pam_dir_option
@module_options
def pam_disable(service: str | None, every: bool, pam_dir: str, module: str,
                guard: str) -> None:
    """Remove the lines 'pam enable' added to SERVICE (or to every service: --all)."""

    def body() -> None:
        from pam_twofa.errors import UsageError
        from pam_twofa.hostconf.pamedit import disable, disable_all

        if (service is None) == (not every):
            raise UsageError("give a SERVICE or --all (not both)")
        if service is not None:
            done = disable(pam_dir, service, module=module, guard=guard)
            say(service, done.message, done.warnings)
            return
        outcomes = disable_all(pam_dir, module=module, guard=guard)
        if not any(o.changed for o in outcomes):
            click.echo(f"no service file in {pam_dir} has lines of twofa-admin pam")
        for done in outcomes:
            say(done.service, done.message, done.warnings)

    run(PROG, body)


@pam_group.command("status")
@pam_dir_option
@module_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def pam_status(pam_dir: str, module: str, guard: str, as_json: bool) -> None:
    """Show for each service whether pam-twofa is in its auth stack, and how."""

    def body() -> None:
        from pam_twofa.hostconf.pamstatus import status

        rows = status(pam_dir, module=module, guard=guard)
        if as_json:
            print_json(rows)
        else:
            for row in rows:
                click.echo(summary(row))
                for text in row["errors"]:
                    click.echo(f"  error: {text}")
                for text in row["warnings"]:
                    click.echo(f"  {'' if text.startswith('CRITICAL') else 'warning: '}{text}")
        if any(row["critical"] for row in rows):
            raise SystemExit(ExitCode.FAILED)

    run(PROG, body)


def summary(row: dict[str, object]) -> str:
    entries = row["entries"]
    assert isinstance(entries, list)
    if not entries:
        return f"{row['service']}: off"
    parts = [f"{e['where']} '{e['control']}' {'guarded' if e['guarded'] else 'NO GUARD'}"
             f" ({e['written_by']})" for e in entries]
    return f"{row['service']}: on: " + "; ".join(parts)


COMMANDS = (pam_group,)
