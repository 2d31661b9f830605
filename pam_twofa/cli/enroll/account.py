"""``twofa-enroll`` itself, ``status``, ``recovery-codes`` and ``disable``.

Bare ``twofa-enroll`` enrolls (or re-enrolls): ``enroll`` is the whole flow,
called by the group in ``main``.
"""

from __future__ import annotations

import click

from pam_twofa.cli.common import print_json, run, when
from pam_twofa.cli.enroll.client import PROG, Client, pass_client
from pam_twofa.errors import ServiceRefused

CONFIRM_TRIES = 3


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


@click.command()
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
        elif info.get("suspended"):  # the fleet store keeps no date
            rows.append(("Suspended", "after too many wrong codes; ask your administrator"))
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


@click.command("recovery-codes")
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


@click.command()
@pass_client
def disable(client: Client) -> None:
    """Turn 2FA off (only where the policy allows it); needs a current code."""

    def body() -> None:
        code = ask_code_if_needed(client, "disable")
        client.ask("disable", code=code)
        click.echo("Two-factor authentication is off.")

    run(PROG, body)


COMMANDS = (status, recovery_codes, disable)
