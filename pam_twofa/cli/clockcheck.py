"""``twofa-clockcheck``: is the server clock close enough for TOTP? Run hourly by a timer.

Exit 0 in sync, 1 offset over the limit or automatic time sync off, 2 no server
answered (other codes: ``common.ExitCode``). The result is kept in the state dir
for ``twofa-admin status`` and the PAM module. Under systemd, output lines carry
journald priority prefixes (``<3>`` …): systemd sets ``JOURNAL_STREAM`` to the
device and inode of the stream it connects to the journal, and the prefixes are
added only when stdout is that stream (the variable describes stdout, it
configures nothing).
"""

from __future__ import annotations

import os
import sys

import click

from pam_twofa import clockstatus, fsutil
from pam_twofa.cli.common import print_json, run
from pam_twofa.errors import UsageError
from pam_twofa.paths import DEFAULT_POLICY, DEFAULT_STATE_DIR, Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pam_twofa.timecheck.check import Report

PROG = "twofa-clockcheck"
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6


def journal_prefixes() -> bool:
    """True when stdout is the journal stream systemd set up for this service."""
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:+.6f} s"


def lines(report: Report) -> list[tuple[int, str]]:
    """The human report as (syslog priority, text) lines."""
    from pam_twofa.clockstatus import IN_SYNC, NO_ANSWER, OFFSET, SYNC_OFF

    out: list[tuple[int, str]] = []
    for a in report.answers:
        if a.error is not None:
            out.append((WARNING, f"server {a.server}: {a.error}"))
        else:
            out.append((INFO, f"server {a.server}: offset {_seconds(a.offset)}, "
                              f"delay {a.delay or 0:.6f} s, stratum {a.stratum}"))
    sync = report.sync
    if sync.ntp == "unknown":
        out.append((NOTICE, f"automatic time sync: unknown ({sync.why})"))
    else:
        via = " (chronyd)" if sync.via == "chronyc" else ""
        out.append((INFO if sync.ntp == "on" else WARNING,
                    f"automatic time sync: {sync.ntp}{via}, synchronized: {sync.synchronized}"))
    chosen, verdict, limit = report.chosen, report.verdict, report.max_offset
    if verdict == NO_ANSWER:
        names = ", ".join(a.server for a in report.answers)
        out.append((ERR, f"no NTP server answered ({names}); clock not checked"))
        return out
    assert chosen is not None and chosen.offset is not None
    where = f"offset {chosen.offset:+.3f} s from {chosen.server} (limit {limit:g} s)"
    if verdict == OFFSET:
        out.append((ERR, f"clock OFF: {where}; TOTP codes will be refused, fix the "
                         "server's time sync"))
    elif verdict == SYNC_OFF:
        out.append((WARNING, f"automatic time sync is off ({where}); turn it on: "
                             "timedatectl set-ntp true"))
    else:
        assert verdict == IN_SYNC
        out.append((INFO, f"in sync: {where}"))
    return out


def _servers(ctx: click.Context, param: click.Parameter,
             value: tuple[str, ...]) -> tuple[str, ...]:
    from pam_twofa.timecheck.check import split_server

    for server in value:
        try:
            split_server(server)
        except UsageError as exc:
            raise click.BadParameter(exc.message) from None
    return value


def clockcheck(paths: Paths, servers: tuple[str, ...], max_offset: float | None,
               timeout: float | None, as_json: bool) -> int:
    """Check, print, keep the result; the exit code for the verdict."""
    from pam_twofa.timecheck import check as cc

    need_policy = not servers or max_offset is None or timeout is None
    policy = None
    if need_policy:
        from pam_twofa import policyfile

        policy = policyfile.load(paths).clock
    if not servers:
        servers = policy.servers if policy and policy.servers else cc.host_servers()
    if max_offset is None:
        max_offset = policy.max_offset_seconds if policy else 10.0
    if timeout is None:
        timeout = policy.timeout_seconds if policy else 5.0
    report = cc.check(servers, float(max_offset), float(timeout))
    if as_json:
        print_json(report.as_plain())
    else:
        prefix = journal_prefixes()
        for priority, text in lines(report):
            click.echo(f"<{priority}>{text}" if prefix else text)
    fsutil.ensure_dir(paths.state_dir)
    clockstatus.write(paths.clock_status, report.as_plain())
    return report.exit_code


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", "servers", multiple=True, metavar="HOST[:PORT]", callback=_servers,
              help="NTP server to ask (repeatable; default: the policy's, else the "
                   "host's configured ones, else pool.ntp.org).")
@click.option("--max-offset", type=click.FloatRange(0, 3600), metavar="SECONDS",
              help="Largest offset counted as in sync (default: policy, 10).")
@click.option("--timeout", type=click.FloatRange(0.1, 60), metavar="SECONDS",
              help="Timeout of the whole check (default: policy, 5).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--policy", default=DEFAULT_POLICY, show_default=True,
              type=click.Path(dir_okay=False), help="Policy file.")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True,
              type=click.Path(file_okay=False), help="State directory (clock.json).")
@click.version_option(package_name="pam-twofa", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, servers: tuple[str, ...], max_offset: float | None,
        timeout: float | None, as_json: bool, policy: str, state_dir: str) -> None:
    """Check the server clock against NTP servers; exit 0 in sync, 1 off, 2 no answer."""
    explicit = ctx.get_parameter_source("policy") is not click.core.ParameterSource.DEFAULT
    paths = Paths(policy=policy, policy_explicit=explicit,
                  state_dir=state_dir.rstrip("/") or "/")
    code: list[int] = []
    run(PROG, lambda: code.append(clockcheck(paths, servers, max_offset, timeout, as_json)))
    sys.exit(code[0])


def main() -> None:
    cli(prog_name=PROG)


if __name__ == "__main__":
    main()
