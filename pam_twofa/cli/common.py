"""What every CLI shares: named exit codes and the one place errors are caught.

Commands are plain functions that raise ``TwofaError``; ``run`` maps the error
to a message on stderr and its exit code, once, for every command.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum

import click

from pam_twofa.errors import PolicyErrors, TwofaError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class ExitCode(IntEnum):
    """Exit codes (sysexits.h where one fits)."""

    OK = 0
    FAILED = 1  # the command ran; the answer is "no" (e.g. a service refused)
    USAGE = 2  # bad command line (click's own code too)
    NOT_FOUND = 67  # EX_NOUSER: unknown or not-enrolled user
    SOFTWARE = 70  # EX_SOFTWARE: a bug
    STATE = 74  # EX_IOERR: state directory or file unusable
    NOPERM = 77  # EX_NOPERM
    CONFIG = 78  # EX_CONFIG: the policy is invalid


def exit_code(exc: BaseException) -> ExitCode:
    if isinstance(exc, TwofaError):
        return ExitCode[exc.exit_name]
    if isinstance(exc, PermissionError):
        return ExitCode.NOPERM
    return ExitCode.SOFTWARE


def run(prog: str, func: Callable[[], Any]) -> None:
    """Run a command body; map every expected error to stderr and an exit code."""
    try:
        func()
    except PolicyErrors as exc:
        for error in exc.errors:
            click.echo(f"{prog}: {error.message}", err=True)
        sys.exit(ExitCode.CONFIG)
    except TwofaError as exc:
        click.echo(f"{prog}: error: {exc.message}", err=True)
        sys.exit(exit_code(exc))
    except OSError as exc:
        click.echo(f"{prog}: error: {exc}", err=True)
        sys.exit(exit_code(exc))
    except (click.Abort, EOFError):  # Ctrl-D (or Ctrl-C) at a prompt, as click tools say it
        click.echo("Aborted.", err=True)
        sys.exit(ExitCode.FAILED)
    except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:  # a bug: one line and a distinct code, not a traceback
        click.echo(f"{prog}: internal error (please report): {type(exc).__name__}: {exc}",
                   err=True)
        sys.exit(ExitCode.SOFTWARE)


def invoke(group: click.Group, prog: str) -> None:
    """Run a click group as ``prog``; a domain error raised outside a command body
    (while building the context) gets the same treatment as inside one."""
    try:
        group(prog_name=prog)
    except TwofaError as exc:
        click.echo(f"{prog}: error: {exc.message}", err=True)
        sys.exit(exit_code(exc))


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def when(epoch: float | None) -> str:
    """A time for people, or ``-``."""
    if not epoch:
        return "-"
    from pam_twofa.clock import format_time

    return format_time(epoch)
