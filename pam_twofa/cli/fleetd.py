"""``twofa-fleetd --policy FILE [--socket PATH]``: the host's fleet-store daemon.

A thin face over ``pam_twofa.fleet.daemon``: reads ``store.postgresql`` from the
policy and serves until stopped (systemd: pam-twofa-fleetd.service; by hand it
runs in the foreground). See twofa-fleetd(8).
"""

from __future__ import annotations

import click

from pam_twofa.cli.common import run
from pam_twofa.errors import PolicyError
from pam_twofa.paths import DEFAULT_POLICY, DEFAULT_STATE_DIR, Paths

PROG = "twofa-fleetd"
DEFAULT_CACHE = DEFAULT_STATE_DIR + "/fleet-enrolled.json"
DEFAULT_OFFLINE_DIR = DEFAULT_STATE_DIR + "/fleet-offline"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--policy", default=DEFAULT_POLICY, show_default=True,
              type=click.Path(dir_okay=False), help="Policy file (store.postgresql).")
@click.option("--socket", "socket_path", default=None, type=click.Path(dir_okay=False),
              help="Socket to serve [default: the policy's store.postgresql.socket].")
@click.option("--cache", default=DEFAULT_CACHE, show_default=True,
              type=click.Path(dir_okay=False),
              help="File keeping the names of enrolled users for offline answers.")
@click.option("--offline-dir", default=DEFAULT_OFFLINE_DIR, show_default=True,
              type=click.Path(file_okay=False),
              help="Directory of cached recovery-code hashes (offline: recovery-codes).")
@click.version_option(package_name="pam-twofa", prog_name=PROG)
def main(policy: str, socket_path: str | None, cache: str, offline_dir: str) -> None:
    """Serve the fleet database to the PAM module over a root-only Unix socket."""

    def body() -> None:
        from pam_twofa import policyfile
        from pam_twofa.fleet import daemon, offline

        # read once at start, strictly; no compiled cache (that is the module's, in its
        # state dir, which a daemon started from a test or by hand must not write to)
        pol = policyfile.load(Paths(policy=policy, policy_explicit=True), use_cache=False)
        pg = pol.store.postgresql
        if pol.store.backend != "postgresql" or not pg.dsn:
            raise PolicyError("store.backend is not postgresql (or store.postgresql.dsn is "
                              "missing): nothing to serve", policy)
        # offline: deny still reports what an earlier recovery-codes run used offline
        glass = offline.BreakGlass(offline_dir, pg.offline == "recovery-codes",
                                   pol.lockout.max_failures)
        daemon.run(pg.dsn, float(pg.timeout_seconds), socket_path or pg.socket, cache,
                   glass=glass)

    run(PROG, body)


if __name__ == "__main__":
    main()
