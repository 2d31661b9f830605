"""What ``twofa-admin fleet`` does to the database: init, add a host, import, status.

Runs with an admin DSN (a role that may create roles: the database owner with
CREATEROLE, or a superuser) for ``init`` and ``add-host``; ``import`` and ``status``
need only a member of ``twofa_admin``. psycopg2 (python3-psycopg2) loads here only.
"""

from __future__ import annotations

import re
from importlib import resources

from pam_twofa.errors import FleetConflict, FleetError, FleetUnavailable, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.policy import Policy
    from pam_twofa.store import Store

SCHEMA_VERSION = 2
# Role names a host may have: what a certificate CN and pg_hba.conf take without quoting.
HOST_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,62}")
RESERVED = ("pg_", "twofa_", "postgres")
HOST_CONNECTIONS = 8  # per host role (CONNECTION LIMIT)


def connect(dsn: str, timeout: int = 10) -> Any:
    """One autocommit connection; unreachable is ``FleetUnavailable``."""
    try:
        import psycopg2
    except ImportError:
        raise FleetError("python3-psycopg2 is not installed") from None
    try:
        conn = psycopg2.connect(dsn, connect_timeout=max(2, timeout),
                                application_name="twofa-admin")
    except psycopg2.OperationalError as exc:
        raise FleetUnavailable(f"cannot connect to the fleet database: "
                               f"{str(exc).strip()}") from None
    conn.autocommit = True
    return conn


def schema_sql() -> str:
    return resources.files("pam_twofa.fleet").joinpath("schema.sql").read_text("utf-8")


def settings_of(policy: Policy) -> dict[str, int]:
    """The policy values every host must share (the one-row settings table)."""
    lock = policy.lockout
    return {
        "window_steps": policy.totp.window,
        "max_failures": lock.max_failures,
        "interval_seconds": lock.interval_seconds,
        "lock_seconds": lock.lock_seconds,
        "max_lock_seconds": lock.max_lock_seconds,
        "max_consecutive_failures": getattr(lock, "max_consecutive_failures", 100),
        "trust_days": policy.trusted_devices.days,
        "trust_max_per_user": policy.trusted_devices.max_per_user,
        "pending_seconds": policy.enrollment.pending_ttl_seconds,
        "emergency_digits": policy.emergency.code_digits,
        "emergency_ttl_seconds": policy.emergency.ttl_seconds,
        "max_sends_per_hour": policy.emergency.max_sends_per_hour,
        "after_email_change_hours": policy.emergency.after_email_change_hours,
        # break-glass: hosts may cache recovery-code hashes for 30 days after a login
        "offline_days": 30 if policy.store.postgresql.offline == "recovery-codes" else 0,
    }


def current_version(conn: Any) -> int | None:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('twofa.schema_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT version FROM twofa.schema_version")
        row = cur.fetchone()
        return int(row[0]) if row else None


def init(conn: Any, settings: dict[str, int]) -> tuple[int | None, int]:
    """Create or upgrade schema, functions and roles in one transaction.

    Returns (version before, version now). A newer schema than ours is refused:
    an older pam-twofa must not rewrite functions a newer one relies on.
    """
    import psycopg2

    before = current_version(conn)
    if before is not None and before > SCHEMA_VERSION:
        raise FleetConflict(f"the fleet database has schema version {before}; this "
                            f"pam-twofa knows {SCHEMA_VERSION}: upgrade pam-twofa first")
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('pam-twofa fleet init'))")
            cur.execute(schema_sql())
            cur.execute("INSERT INTO twofa.schema_version (one, version) VALUES (true, %s) "
                        "ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                        (SCHEMA_VERSION,))
            cur.execute("UPDATE twofa.settings SET "
                        + ", ".join(f"{k} = %({k})s" for k in settings), settings)
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise FleetError(f"fleet init failed: {str(exc).strip()}") from None
    finally:
        conn.autocommit = True
    return before, SCHEMA_VERSION


def check_host_name(name: str) -> str:
    if not HOST_NAME.fullmatch(name) or name.startswith(RESERVED):
        raise UsageError(f"bad host name {name!r}: lower-case letters, digits, '_', '.', "
                         "'-' (at most 63), not starting with pg_ or twofa_")
    return name


def add_host(conn: Any, name: str) -> bool:
    """A LOGIN role ``name`` in ``twofa_host`` (no password: it logs in by certificate).

    Returns False when the host was there already (nothing changed).
    """
    import psycopg2
    from psycopg2 import sql

    check_host_name(name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            exists = cur.fetchone() is not None
            if exists:
                cur.execute("SELECT pg_has_role(%s, 'twofa_host', 'MEMBER')", (name,))
                if not cur.fetchone()[0]:
                    raise FleetConflict(f"role {name!r} exists and is not a pam-twofa host")
            else:
                cur.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE twofa_host")
                            .format(sql.Identifier(name)))
            # A host needs one connection (a few while replacing a hung one): a
            # compromised host cannot take the server's connection slots, nor hold it
            # busy with long statements.
            cur.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT %s").format(
                sql.Identifier(name)), (HOST_CONNECTIONS,))
            cur.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = '10s'").format(
                sql.Identifier(name)))
            cur.execute("INSERT INTO twofa.hosts (name) VALUES (%s) ON CONFLICT DO NOTHING "
                        "RETURNING 1", (name,))
            added = cur.fetchone() is not None
    except psycopg2.Error as exc:
        raise FleetError(f"fleet add-host failed: {str(exc).strip()}") from None
    return added or not exists


def import_users(conn: Any, store: Store, *, force: bool = False) -> dict[str, list[str]]:
    """Every enrolled user of ``store`` into the fleet, by outcome.

    Outcomes: added, same (that secret already), replaced (with ``force``), conflict
    (another secret; nothing changed), no-recovery-codes (had some: their scrypt
    hashes cannot become the fleet's MACs, so they need new ones).
    """
    import psycopg2

    from pam_twofa import totp

    result: dict[str, list[str]] = {k: [] for k in
                                    ("added", "same", "replaced", "conflict",
                                     "no-recovery-codes")}
    try:
        with conn.cursor() as cur:
            for user in store.users():
                state = store.load(user)
                if state is None or not state.enrolled or state.secret is None:
                    continue
                cur.execute("SELECT twofa_api.admin_import(%s, %s, %s, %s, %s, %s, %s, %s)",
                            (user, totp.b32decode(state.secret), state.digits, state.period,
                             state.algorithm, state.last_step, state.email, force))
                result[cur.fetchone()[0]].append(user)
                if state.recovery_codes:
                    result["no-recovery-codes"].append(user)
    except psycopg2.Error as exc:
        raise FleetError(f"fleet import failed: {str(exc).strip()}") from None
    return result


def status(conn: Any) -> dict[str, Any]:
    """Schema version, hosts and user counts (through ``twofa_api.admin_status``)."""
    import psycopg2

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT twofa_api.admin_status()")
            value: dict[str, Any] = cur.fetchone()[0]
    except psycopg2.Error as exc:
        raise FleetError(f"fleet status failed: {str(exc).strip()}") from None
    return value
