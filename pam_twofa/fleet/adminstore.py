"""``twofa-admin`` on the fleet: the admin operations over ``store.postgresql.admin_dsn``.

With ``store.backend: postgresql`` the admin commands act on the fleet database
through a ``twofa_admin`` role (``twofa_api.admin_*`` functions), never on this
host's state directory. Done here: ``status``, ``unlock``, ``reset`` and the list
of users (the enrolled ones). The others (enroll, trust, email, recovery-codes)
raise ``FleetError`` saying so, never a silent success; ``twofa-admin fleet
import`` and the admin functions cover enrollment meanwhile.
"""

from __future__ import annotations

from pam_twofa.errors import FleetError
from pam_twofa.login import validate_user_name
from pam_twofa.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any

    from pam_twofa.state import UserState


def _unavailable(what: str) -> FleetError:
    return FleetError(f"{what} is not available with the fleet store yet: use the admin "
                      "functions through store.postgresql.admin_dsn (README 'Fleet store')")


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

    def provision(self, user: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        raise _unavailable("twofa-admin enroll")

    def reset_recovery_codes(self, user: str) -> list[str] | None:
        raise _unavailable("twofa-admin recovery-codes")

    def devices(self, user: str, now: float) -> list[dict[str, Any]]:
        raise _unavailable("twofa-admin trust")

    def revoke_devices(self, user: str, device_id: str | None) -> list[str] | None:
        raise _unavailable("twofa-admin trust")
