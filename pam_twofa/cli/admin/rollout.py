"""``twofa-admin report`` and ``twofa-admin doctor``: before and during a roll-out.

Thin faces over ``pam_twofa.rollout`` (which a login never imports): ``report`` lists
the accounts the policy requires and where each stands; ``doctor`` checks the host's
PAM, sshd, state, policy and services and exits 1 when anything is wrong.
"""

from __future__ import annotations

import click

from pam_twofa.cli.admin.context import PROG, Admin, pass_admin
from pam_twofa.cli.common import ExitCode, print_json, run, when

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@click.command("report")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_admin
def report(admin: Admin, as_json: bool) -> None:
    """List every account the policy requires: enrolled, in grace, locked, last login."""

    def body() -> None:
        from pam_twofa.rollout.report import build, summary_line

        result = build(admin.policy, admin.store, admin.clock.now())
        if as_json:
            print_json(result)
            return
        click.echo(f"{'USER':<20} {'UID':>7}  {'STATUS':<28} {'LAST LOGIN':<24} REQUIRED BY")
        for row in result["users"]:
            click.echo(f"{row['user']:<20} {row['uid']:>7}  {describe(row):<28} "
                       f"{when(row['last_login']):<24} {row['required_by']}")
        for note in result["enumeration"]["notes"]:
            click.echo(f"Note: {note}")
        click.echo(summary_line(result["summary"]))

    run(PROG, body)


def describe(row: dict[str, Any]) -> str:
    words = {"enrolled": "enrolled", "grace-over": "grace over: refused",
             "no-grace": "not enrolled: refused", "inline": "enrolls at next login",
             "grace-not-started": "grace starts at next login",
             "state-error": "state unreadable"}
    text = (f"in grace until {when(row['grace_until'])}" if row["status"] == "grace"
            else words.get(row["status"], row["status"]))
    if row["suspended"]:
        text += ", SUSPENDED"
    elif row["locked_until"] is not None:
        text += f", locked until {when(row['locked_until'])}"
    return text


@click.command("doctor")
@click.option("--root", metavar="DIR", type=click.Path(file_okay=False, exists=True),
              help="Read the host's files under DIR (DIR/etc/pam.d, DIR/etc/ssh, the "
                   "policy and state dir): for images and fixtures.")
@click.option("--pam-dir", metavar="DIR", help="PAM service directory [/etc/pam.d].")
@click.option("--sshd-config", metavar="FILE", help="sshd's configuration "
              "[/etc/ssh/sshd_config].")
@click.option("--ssh-service", default="sshd", show_default=True, metavar="NAME",
              help="The PAM service name sshd uses.")
@click.option("--enroll-socket", metavar="PATH",
              help="The enrollment service's socket [/run/pam-twofa/enroll.sock].")
@click.option("--mail", metavar="ADDRESS", help="Also send a test mail to ADDRESS.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_admin
@click.pass_context
def doctor(ctx: click.Context, admin: Admin, root: str | None, pam_dir: str | None,
           sshd_config: str | None, ssh_service: str, enroll_socket: str | None,
           mail: str | None, as_json: bool) -> None:
    """Check this host's pam-twofa set-up; exit 1 when anything is wrong."""

    def body() -> None:
        from pam_twofa.rollout import findings
        from pam_twofa.rollout.doctor import Layout
        from pam_twofa.rollout.doctor import run as run_doctor

        parent = ctx.parent
        assert parent is not None
        explicit = frozenset(
            name for name in ("policy", "state_dir", "log_socket")
            if parent.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT)
        layout = Layout.make(admin.paths, root=root or "", pam_dir=pam_dir,
                             sshd_config=sshd_config, ssh_service=ssh_service,
                             enroll_socket=enroll_socket, explicit=explicit)
        found = run_doctor(layout, admin.clock.now(), mail)
        counts = findings.counts(found)
        if as_json:
            print_json({"ok": not findings.failed(found), "counts": counts,
                        "findings": [f.plain() for f in found]})
        else:
            for f in found:
                where = f" {f.where}:" if f.where else ""
                click.echo(f"{f.severity.upper()}:{where} [{f.check}] {f.message}")
                if f.fix:
                    click.echo(f"    fix: {f.fix}")
            if findings.failed(found):
                click.echo("doctor: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
            else:
                click.echo("doctor: nothing wrong found" + (
                    f" ({counts['info']} info)" if counts["info"] else ""))
        if findings.failed(found):
            raise SystemExit(ExitCode.FAILED)

    run(PROG, body)


COMMANDS = (report, doctor)
