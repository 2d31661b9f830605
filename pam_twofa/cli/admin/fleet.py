"""``twofa-admin fleet init|add-host|import|status``: the fleet database (PostgreSQL).

A thin face over ``pam_twofa.fleet.admin``. ``--dsn`` is a libpq conninfo string
(no password inline: a client certificate or ~/.pgpass); without it, the policy's
``store.postgresql.admin_dsn``. ``init`` and ``add-host`` need a role that may
create roles; ``import`` and ``status`` a member of ``twofa_admin``.
"""

from __future__ import annotations

import click

from pam_twofa.cli.admin.context import PROG, Admin, pass_admin
from pam_twofa.cli.common import print_json, run, when
from pam_twofa.errors import FleetConflict, FleetUnavailable, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DSN_HELP = "libpq conninfo of the fleet database [default: store.postgresql.admin_dsn]."


def _conn(admin: Admin, dsn: str | None) -> Any:
    from pam_twofa.fleet import admin as fleet

    dsn = dsn or admin.policy.store.postgresql.admin_dsn
    if not dsn:
        raise UsageError("no --dsn, and the policy sets no store.postgresql.admin_dsn")
    return fleet.connect(dsn)


@click.group("fleet")
def fleet_group() -> None:
    """Set up and inspect the fleet database (store.backend: postgresql)."""


@fleet_group.command("init")
@click.option("--dsn", help=DSN_HELP)
@pass_admin
def fleet_init(admin: Admin, dsn: str | None) -> None:
    """Create or upgrade the schema, functions and roles; copy the policy's window,
    lockout, trust and emergency settings into the database (idempotent)."""

    def body() -> None:
        from pam_twofa.fleet import admin as fleet

        conn = _conn(admin, dsn)
        before, now = fleet.init(conn, fleet.settings_of(admin.policy))
        if before is None:
            click.echo(f"Fleet schema version {now} created.")
        elif before < now:
            click.echo(f"Fleet schema upgraded from version {before} to {now}.")
        else:
            click.echo(f"Fleet schema version {now} is current; functions and settings "
                       "refreshed.")
        admin.audit("fleet-init", "", version=now)

    run(PROG, body)


@fleet_group.command("add-host")
@click.argument("name")
@click.option("--dsn", help=DSN_HELP)
@pass_admin
def fleet_add_host(admin: Admin, name: str, dsn: str | None) -> None:
    """Make NAME a host role (it logs in with a client certificate whose CN is NAME)."""

    def body() -> None:
        from pam_twofa.fleet import admin as fleet

        conn = _conn(admin, dsn)
        added = fleet.add_host(conn, name)
        db = conn.info.dbname
        click.echo(f"Host {name}: {'added' if added else 'already there'}. Still to do:")
        click.echo(f"  1. a client certificate with CN={name}, signed by the CA in the "
                   "server's ssl_ca_file, installed on the host (key 0600, root);")
        click.echo(f"  2. pg_hba.conf on the server:  hostssl {db} {name} HOST-ADDRESS/32 "
                   "cert  (then SELECT pg_reload_conf());")
        click.echo("  3. on the host, the policy's store.postgresql.dsn, e.g.")
        click.echo(f"     host=DB-HOSTS dbname={db} user={name} sslmode=verify-full "
                   "sslcert=/etc/pam-twofa/fleet.crt sslkey=/etc/pam-twofa/fleet.key "
                   "sslrootcert=/etc/pam-twofa/fleet-ca.crt target_session_attrs=read-write")
        click.echo("  4. systemctl enable --now pam-twofa-fleetd.service")
        admin.audit("fleet-add-host", "", host=name)

    run(PROG, body)


@fleet_group.command("import")
@click.option("--dsn", help=DSN_HELP)
@click.option("--force", is_flag=True,
              help="Replace the secret of users already in the fleet with another one.")
@pass_admin
def fleet_import(admin: Admin, dsn: str | None, force: bool) -> None:
    """Copy this host's enrolled users (state directory) into the fleet."""

    def body() -> None:
        from pam_twofa.fleet import admin as fleet

        result = fleet.import_users(_conn(admin, dsn), admin.files, force=force)
        for key in ("added", "same", "replaced"):
            click.echo(f"{key}: {len(result[key])}")
        if result["no-recovery-codes"]:
            click.echo("recovery codes not carried over (give them new ones): "
                       + ", ".join(result["no-recovery-codes"]))
        admin.audit("fleet-import", "", added=len(result["added"]),
                    replaced=len(result["replaced"]), conflicts=len(result["conflict"]))
        if result["conflict"]:
            raise FleetConflict("in the fleet with another secret (left as they are; "
                                "--force replaces them): " + ", ".join(result["conflict"]))

    run(PROG, body)


@fleet_group.command("status")
@click.option("--dsn", help=DSN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_admin
def fleet_status(admin: Admin, dsn: str | None, as_json: bool) -> None:
    """Reachable? Schema version, hosts (last seen) and user counts."""

    def body() -> None:
        from pam_twofa.fleet import admin as fleet

        try:
            value = fleet.status(_conn(admin, dsn))
        except FleetUnavailable:
            if as_json:  # a monitoring script reads the answer; the exit status says it too
                print_json({"reachable": False})
            else:
                click.echo("Database: unreachable")
            raise
        value["reachable"] = True
        if as_json:
            print_json(value)
            return
        click.echo(f"Database: reachable, schema version {value['version']} "
                   f"(this pam-twofa: {fleet.SCHEMA_VERSION})")
        click.echo(f"Users: {value['users']} ({value['enrolled']} enrolled, "
                   f"{value['locked']} locked or suspended)")
        click.echo(f"Hosts: {len(value['hosts'])}")
        for host in value["hosts"]:
            click.echo(f"  {host['name']:<32} last seen {when(host['last_seen'])}")

    run(PROG, body)


COMMANDS = (fleet_group,)
