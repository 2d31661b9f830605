"""``doctor``'s fleet checks, only with ``store.backend: postgresql``.

Logins on such a host need ``twofa-fleetd`` (its socket, its unit enabled at boot)
and the daemon's database; the DSNs must hold no password (the policy loader refuses
one: the ``policy`` finding names the line) and should verify the server's
certificate over TCP. ``admin_dsn`` matters only for ``twofa-admin`` on this host.
The policy is read as plain YAML, so these checks still run while it has an error.
"""

from __future__ import annotations

import os
import socket

from pam_twofa.rollout.findings import ERROR, INFO, WARNING, Finding
from pam_twofa.rollout.sshdconf import under

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

UNIT = "pam-twofa-fleetd.service"
UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system")
WANTS = "/etc/systemd/system/multi-user.target.wants"
ASK_SECONDS = 3.0


def postgresql(policy_path: str) -> dict[str, Any] | None:
    """``store.postgresql`` of the policy file when the backend is postgresql, else None."""
    from pam_twofa.rollout.doctor_host import raw_policy

    store = raw_policy(policy_path).get("store")
    if not isinstance(store, dict) or store.get("backend") != "postgresql":
        return None
    pg = store.get("postgresql")
    return pg if isinstance(pg, dict) else {}


def check(policy_path: str, root: str = "") -> list[Finding]:
    pg = postgresql(policy_path)
    if pg is None:
        return []
    return (check_daemon(pg, policy_path, root) + check_unit(root)
            + check_tls(pg, policy_path) + check_admin_dsn(pg, policy_path))


def check_daemon(pg: dict[str, Any], policy_path: str, root: str) -> list[Finding]:
    """The daemon's socket answers, and the daemon reaches the database (a status
    request: offline means it cannot, or it hangs)."""
    from pam_twofa import fleetclient
    from pam_twofa.errors import FleetError

    given = pg.get("socket")
    path = given if isinstance(given, str) else fleetclient.DEFAULT_SOCKET
    fix = ("systemctl enable --now twofa-fleetd (twofa-fleetd --policy FILE in the "
           "foreground to see why)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(under(root, path))
        except OSError as exc:
            return [Finding("fleet", ERROR, f"store.backend is postgresql but the fleet "
                            f"daemon's socket {path} does not answer ({exc.strerror or exc}): "
                            "enrolled and required users are refused", fix, policy_path)]
    try:
        answer = fleetclient.status(under(root, path), ASK_SECONDS, "root")
    except FleetError as exc:
        return [Finding("fleet", INFO, f"cannot ask the fleet daemon: {exc.message} "
                        "(it answers uid 0 only: run doctor as root)", "", policy_path)]
    if answer.get("result") == "offline":
        return [Finding("fleet-database", ERROR, f"the fleet daemon on {path} answers "
                        "'offline': it cannot reach the fleet database; enrolled and "
                        "required users are refused",
                        "see the daemon's log (journalctl -u pam-twofa-fleetd): the DSN, "
                        "the host's certificate, pg_hba.conf, the server", policy_path)]
    return []


def check_unit(root: str) -> list[Finding]:
    """The unit is installed (the .deb) but not enabled: logins fail after a reboot."""
    installed = next((d for d in UNIT_DIRS if os.path.exists(under(root, f"{d}/{UNIT}"))),
                     None)
    if installed is None or os.path.lexists(under(root, f"{WANTS}/{UNIT}")):
        return []
    return [Finding("fleet-unit", WARNING, f"{UNIT} is not enabled: after a reboot no "
                    "fleet daemon runs and enrolled and required users are refused",
                    "systemctl enable --now pam-twofa-fleetd", f"{installed}/{UNIT}")]


def conninfo(dsn: str) -> dict[str, str] | None:
    """The DSN's keywords (libpq's own parser through psycopg2), None if unreadable."""
    try:
        from psycopg2.extensions import parse_dsn
    except ImportError:
        return None
    try:
        return dict(parse_dsn(dsn))
    except Exception:  # a malformed DSN: the daemon's log says why it cannot connect
        return None


def check_tls(pg: dict[str, Any], policy_path: str) -> list[Finding]:
    """Over TCP, ``sslmode=verify-full``: otherwise a machine in the middle can pose as
    the database and answer 'ok' to every code."""
    dsn = pg.get("dsn")
    keys = conninfo(dsn) if isinstance(dsn, str) else None
    if keys is None:
        return []
    hosts = [h for h in (keys.get("host") or "").split(",") if h]
    tcp = bool(keys.get("hostaddr")) or any(not h.startswith(("/", "@")) for h in hosts)
    mode = keys.get("sslmode", "prefer")
    if not tcp or mode == "verify-full":
        return []
    return [Finding("fleet-tls", WARNING, f"store.postgresql.dsn reaches the database "
                    f"over TCP with sslmode={mode}: the server's certificate is not "
                    "verified (a machine in the middle could accept every code)",
                    "add sslmode=verify-full sslrootcert=FILE to the dsn", policy_path)]


def check_admin_dsn(pg: dict[str, Any], policy_path: str) -> list[Finding]:
    if pg.get("admin_dsn"):
        return []
    return [Finding("fleet-admin-dsn", INFO, "no store.postgresql.admin_dsn: logins work; "
                    "twofa-admin status, enroll, reset, unlock, trust, email, "
                    "recovery-codes and report refuse on this host",
                    "set admin_dsn (a twofa_admin role) on the hosts admins work from",
                    policy_path)]
