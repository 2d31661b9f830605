"""``twofa-enroll``: a user turns 2FA on or off for themselves.

It holds no privilege: every change goes through the root enrollment service
(``pam_twofa.enrollsvc``), which knows the caller by the kernel's account of
the socket peer. Bare ``twofa-enroll`` enrolls (or re-enrolls); ``status``,
``recovery-codes`` and ``disable`` are subcommands. Other features add theirs
in their own ``pam_twofa/cli/enroll_<noun>.py`` onto ``cli`` and one import
line at the bottom of this file; they call the service with ``ask()``.
"""

from __future__ import annotations

import click

from pam_twofa import enrollsvc
from pam_twofa.cli.common import invoke, print_json, run, when
from pam_twofa.errors import TwofaError
from pam_twofa.paths import DEFAULT_SOCKET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PROG = "twofa-enroll"
CONFIRM_TRIES = 3
_EXITS = {"bad-code": "NOPERM", "replay": "NOPERM", "locked": "NOPERM", "code-needed": "NOPERM",
          "not-allowed": "NOPERM", "not-enrolled": "NOT_FOUND", "unknown-user": "NOT_FOUND",
          "no-pending": "FAILED", "busy": "FAILED"}


class ServiceRefused(TwofaError):
    """The service said no; ``reason`` is its error token."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.exit_name = _EXITS.get(reason, "FAILED")


class Client:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        """Call ``op``; the result, or ``ServiceRefused``."""
        try:
            response = enrollsvc.call(self.socket_path, op, **args)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ServiceRefused("unavailable", not_running(self.socket_path)) from None
        except OSError as exc:
            raise ServiceRefused("unavailable", f"cannot reach the enrollment service at "
                                 f"{self.socket_path}: {exc.strerror or exc}") from None
        if not response.pop("ok"):
            raise ServiceRefused(str(response.get("error")), str(response.get("message")))
        return response


def not_running(socket_path: str) -> str:
    """What a user needs to hear when nobody listens on the socket: who can fix it, how."""
    return (f"the enrollment service is not running (nothing listens on {socket_path}).\n"
            "Ask your administrator to start it: 'systemctl start pam-twofa-enroll.socket',\n"
            "or, on a host without systemd, run 'twofa-enroll-service' as root.")


pass_client = click.make_pass_decorator(Client)


def show_recovery_codes(codes: list[str]) -> None:
    from pam_twofa.recovery import groups

    click.echo("Recovery codes: each works once instead of a code from the app. Keep them")
    click.echo("somewhere safe; they are not shown again.")
    for code in codes:
        click.echo(f"    {groups(code)}")


def enroll(client: Client, png: str | None, qr_mode: str, if_needed: bool) -> None:
    """The whole "Enable now" flow: secret, QR, first code, recovery codes."""
    try:
        status = client.ask("status")
    except ServiceRefused as exc:
        if if_needed and exc.reason in ("unavailable", "unknown-user"):
            return  # from a profile script: no service, no noise
        raise
    if if_needed:
        if status["enrolled"] or not status["required"]:
            return
        click.echo("Two-factor authentication is required for your account"
                   + (f" from {when(status['grace_until'])}." if status["grace_until"] else "."))
        if not click.confirm("Set it up now?", default=True):
            click.echo("Run 'twofa-enroll' when you are ready.")
            return
    code = None
    if status["enrolled"]:
        click.echo("Two-factor authentication is on already; enrolling again replaces your "
                   "secret and recovery codes.")
        code = click.prompt("Current code from your app (or a recovery code)")
    started = client.ask("begin", code=code)
    from pam_twofa.cli.show import show_secret

    click.echo("Scan this QR code with your authenticator app, or add the account and "
               "secret key by hand:")
    show_secret(started["account"], started["secret"], started["uri"], qr_mode=qr_mode,
                png=png)
    for attempt in range(1, CONFIRM_TRIES + 1):
        answer = click.prompt("Enter the code from your app to finish enrollment")
        try:
            done = client.ask("confirm", code=answer)
            break
        except ServiceRefused as exc:
            if exc.reason != "bad-code" or attempt == CONFIRM_TRIES:
                raise
            click.echo(f"{PROG}: {exc.message}; try again.", err=True)
    click.echo("Two-factor authentication is on.")
    for line in done.get("revoked") or ():  # a re-enrollment: what went, what stayed
        click.echo(line)
    show_recovery_codes(done["recovery_codes"])


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
        run(PROG, lambda: enroll(ctx.obj, png, qr_mode, if_needed))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_client
def status(client: Client, as_json: bool) -> None:
    """Show whether 2FA is on, locks, and how many recovery codes are left."""

    def body() -> None:
        info = client.ask("status")
        if as_json:
            print_json(info)
            return
        rows = [
            ("User", info["user"]),
            ("2FA", "on" if info["enrolled"] else "off"),
            ("Required", "yes" if info["required"] else "no"),
        ]
        if info["enrolled"]:
            rows += [("Since", when(info["enrolled_at"])),
                     ("Recovery codes left", str(info["recovery_codes_left"])),
                     ("Last login with a code", when(info["last_success"])),
                     ("Last trusted-device login", when(info.get("last_trusted")))]
        elif info["grace_until"]:
            rows.append(("Required from", when(info["grace_until"])))
        if info["pending"]:
            rows.append(("Enrollment", "started, waiting for the first code"))
        if info.get("suspended_since") is not None:
            rows.append(("Suspended since", when(info["suspended_since"])
                         + " (after too many wrong codes; ask your administrator)"))
        if info["locked"]:
            rows.append(("Locked until", when(info["locked_until"])))
        if info.get("email") or info.get("email_pending"):
            rows.append(("Security email", info.get("email") or "none"))
        if info.get("email_pending"):
            rows.append(("Waiting for verification", info["email_pending"]))
        if info.get("emergency_held_until"):  # the address changed lately
            rows.append(("Emergency codes paused", f"until {when(info['emergency_held_until'])}"))
        for label, value in rows:
            click.echo(f"{label + ':':<24} {value}")

    run(PROG, body)


def ask_code_if_needed(client: Client, op: str, err: bool = False) -> str:
    """Ask the service whether ``op`` could go ahead, then prompt for the code.

    The service refuses what it would refuse anyway (not enrolled, required by the
    policy) before it looks at a code, so the user is not asked for one (nor has a
    right one used up) for nothing; ``code-needed`` means "go ahead and ask".
    """
    try:
        client.ask(op)
    except ServiceRefused as exc:
        if exc.reason != "code-needed":
            raise
    else:  # pragma: no cover - the service never acts without a code
        raise ServiceRefused("bad-response", f"the service did {op} without a code")
    return str(click.prompt("Current code from your app (or a recovery code)", err=err))


@cli.command("recovery-codes")
@click.option("--json", "as_json", is_flag=True, help="Print the codes as a JSON list.")
@pass_client
def recovery_codes(client: Client, as_json: bool) -> None:
    """Make ten new recovery codes (the old ones stop working); needs a current code."""

    def body() -> None:
        code = ask_code_if_needed(client, "recovery-codes", err=as_json)
        codes = client.ask("recovery-codes", code=code)["recovery_codes"]
        if as_json:
            print_json(codes)
        else:
            show_recovery_codes(codes)

    run(PROG, body)


@cli.command()
@pass_client
def disable(client: Client) -> None:
    """Turn 2FA off (only where the policy allows it); needs a current code."""

    def body() -> None:
        code = ask_code_if_needed(client, "disable")
        client.ask("disable", code=code)
        click.echo("Two-factor authentication is off.")

    run(PROG, body)


def main() -> None:
    invoke(cli, PROG)


from pam_twofa.cli import (  # noqa: E402
    enroll_devices,  # noqa: F401
    enroll_email,  # noqa: F401
)

if __name__ == "__main__":
    # Under ``python -m`` this file is ``__main__``, a second copy of the module: the
    # subcommand files decorate the imported ``pam_twofa.cli.enroll.cli``, so run that.
    from pam_twofa.cli.enroll import main as imported_main

    imported_main()
