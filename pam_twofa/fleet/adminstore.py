"""``twofa-admin`` on the fleet: the admin operations over ``store.postgresql.admin_dsn``.

With ``store.backend: postgresql`` the admin commands act on the fleet database
through a ``twofa_admin`` role (``twofa_api.admin_*`` functions), never on this
host's state directory: status, unlock, reset, enroll (the secret is made here and
shown here; the database keeps it), recovery codes (made here, stored as the
database's MACs), trusted devices of every host, the security email, the report's
rows. Each operation is one function call, so one transaction. Reading or writing
a whole state has no meaning there and raises ``FleetError``.
"""

from __future__ import annotations

from pam_twofa.errors import FleetError
from pam_twofa.login import validate_user_name
from pam_twofa.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any

    from pam_twofa.policy import Policy
    from pam_twofa.state import UserState


def _unavailable(what: str) -> FleetError:
    return FleetError(f"{what} is not available with the fleet store: the database "
                      "keeps no whole states (README 'Fleet store')")


class FleetAdminStore(Store):
    """The fleet database as ``twofa-admin`` sees it (one connection, opened lazily)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None

    def _call(self, sql: str, *args: Any) -> Any:
        if self._conn is None:
            from pam_twofa.fleet import admin

            self._conn = admin.connect(self.dsn)  # unreachable: FleetUnavailable
        with self._conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()[0] if cur.description else None

    def status(self, user: str, now: float) -> dict[str, Any]:
        st = self._call("SELECT twofa_api.status(%s)", validate_user_name(user))
        until = st.get("locked_until")
        locked = isinstance(until, (int, float)) and until > now
        return {"enrolled": st.get("enrolled") is True, "failures": st.get("failures", 0),
                "locked": locked, "locked_until": until if locked else None,
                # the fleet keeps no suspension time: "since" reads as "now" when suspended
                "suspended_since": now if st.get("suspended") is True else None,
                "first_seen": st.get("first_seen"),
                "recovery_codes_left": st.get("recovery_codes", 0)}

    def unlock(self, user: str) -> bool:
        return bool(self._call("SELECT twofa_api.admin_unlock(%s)", validate_user_name(user)))

    def reset(self, user: str) -> bool:
        return bool(self._call("SELECT twofa_api.admin_reset(%s)", validate_user_name(user)))

    def users(self) -> list[str]:
        if self._conn is None:
            self._call("SELECT 1")
        with self._conn.cursor() as cur:
            cur.execute("SELECT twofa_api.enrolled_users()")
            return sorted(r[0] for r in cur.fetchall())

    def load(self, user: str) -> UserState | None:
        raise _unavailable("reading a whole state")

    def update(self, user: str) -> AbstractContextManager[UserState]:
        raise _unavailable("changing a whole state")

    def delete(self, user: str) -> bool:
        return self.reset(user)

    def provision(self, user: str, secret: str, policy: Policy, now: float,
                  codes: list[str], *, replace: bool = True, digits: int | None = None,
                  period: int | None = None, algorithm: str | None = None,
                  ) -> dict[str, Any] | None:
        from pam_twofa import recovery, totp

        normal = [recovery.normalize(c) for c in codes]
        if None in normal:  # made here or read from a checked file: never expected
            raise FleetError("a recovery code is not 8-10 digits")
        out = self._call("SELECT twofa_api.admin_enroll(%s, %s, %s, %s, %s, %s, %s)",
                         validate_user_name(user), totp.b32decode(secret),
                         digits or policy.totp.digits, period or policy.totp.period,
                         algorithm or policy.totp.algorithm, normal, replace)
        if out["result"] == "enrolled":
            return None
        if out["result"] != "ok":
            raise FleetError(f"the fleet database refused the enrollment: {out['result']}")
        return {k: out.get(k) for k in ("devices_revoked", "emergency_code_revoked",
                                        "email_pending_dropped", "email_kept")}

    def reset_recovery_codes(self, user: str) -> list[str] | None:
        from pam_twofa import recovery

        codes = recovery.new_codes()
        stored = self._call("SELECT twofa_api.admin_recovery_codes(%s, %s)",
                            validate_user_name(user), codes)
        return None if stored is None else codes

    def devices(self, user: str, now: float) -> list[dict[str, Any]]:
        """Every host's devices of ``user`` (each row names its ``host``)."""
        rows: list[dict[str, Any]] = self._call("SELECT twofa_api.admin_devices(%s)",
                                                validate_user_name(user))
        return rows

    def revoke_devices(self, user: str, device_id: str | None) -> list[str] | None:
        validate_user_name(user)
        if not self._call("SELECT twofa_api.status(%s)", user).get("enrolled"):
            return None
        ids = [r["id"] for r in self.devices(user, 0) if device_id in (None, r["id"])]
        self._call("SELECT twofa_api.admin_revoke_devices(%s, %s)", user, device_id)
        return ids

    def set_email(self, user: str, address: str | None) -> bool:
        if address is not None:
            from pam_twofa.mail import mailer

            address = mailer.check_address(address)
        return bool(self._call("SELECT twofa_api.admin_set_email(%s, %s)",
                               validate_user_name(user), address))

    def security_email(self, user: str) -> str | None:
        address: str | None = self._call("SELECT twofa_api.admin_email(%s)",
                                          validate_user_name(user))
        return address

    def standings(self, now: float) -> dict[str, dict[str, Any]]:
        """One query for every user (``twofa_api.admin_report``); locks as the
        database's clock sees them."""
        self._call("SELECT 1")
        with self._conn.cursor() as cur:
            cur.execute("SELECT * FROM twofa_api.admin_report()")
            return {name: {"enrolled": enrolled, "first_seen": first, "locked_until": until,
                           "suspended": suspended, "last_success": last}
                    for name, enrolled, first, until, suspended, last in cur.fetchall()}
