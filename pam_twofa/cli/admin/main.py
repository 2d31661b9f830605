"""``twofa-admin``: root's tool over the same core, store and log as the module.

The click group and the one list of its command modules: a new command family is
a module exposing ``COMMANDS`` and one entry in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import click

from pam_twofa.cli.admin import enroll, fleet, mail, pam, policy, rollout, trust, users
from pam_twofa.cli.admin.context import PROG, Admin
from pam_twofa.cli.common import invoke
from pam_twofa.paths import DEFAULT_LOG_SOCKET, DEFAULT_POLICY, DEFAULT_STATE_DIR, Paths

COMMAND_MODULES = (users, enroll, mail, policy, pam, trust, rollout, fleet)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--policy", "policy", default=DEFAULT_POLICY, show_default=True,
              type=click.Path(dir_okay=False), help="Policy file.")
@click.option("--state-dir", default=DEFAULT_STATE_DIR, show_default=True,
              type=click.Path(file_okay=False), help="State directory.")
@click.option("--log-socket", default=DEFAULT_LOG_SOCKET, show_default=True,
              type=click.Path(dir_okay=False), help="Syslog socket (as the module's log_socket=).")
@click.version_option(package_name="pam-twofa", prog_name=PROG)
@click.pass_context
def cli(ctx: click.Context, policy: str, state_dir: str, log_socket: str) -> None:
    """Administer pam-twofa: enroll users, show status, reset and unlock."""
    explicit = ctx.get_parameter_source("policy") is not click.core.ParameterSource.DEFAULT
    ctx.obj = Admin(Paths(policy=policy, policy_explicit=explicit,
                          state_dir=state_dir.rstrip("/") or "/", log_socket=log_socket))


for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    invoke(cli, PROG)
