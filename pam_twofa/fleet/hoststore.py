"""The enrollment service's store on a fleet host: ``twofa-enroll`` through the fleet.

``FleetHostStore`` adds to the login's ``FleetStore`` the operations the root
enrollment service runs for its caller (never loaded by a login). Each is a few
requests to the host's ``twofa-fleetd``, each one SECURITY DEFINER function:

- a proof of the second factor (``prove``: the login's ``check_code``, replay and
  lockout counted fleet-wide) gives a one-time grant for this host; re-enrolling,
  new recovery codes, turning 2FA off and naming a security email spend it;
- the new secret goes to this host only (``enroll_begin``), shown once to its
  owner; ``enroll_finish`` activates it and makes the recovery codes in the
  database, in one transaction;
- an address waiting for verification: its mailed code is kept sealed in this
  host's files (``local``, the user's state file there: only ``email_pending`` and
  ``verify_sends``), the address itself in the database, set by ``email_set`` from
  the host that named it. The rules are ``security_email``'s, as on the file store.
"""

from __future__ import annotations

from pam_twofa import fleetclient
from pam_twofa.errors import FleetError, FleetUnavailable
from pam_twofa.fleetstore import MAX_ANSWER, FleetStore
from pam_twofa.login import validate_user_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.filestore import FileStore
    from pam_twofa.policy import Policy

__all__ = ["FleetHostStore"]

PROVEN = ("ok", "recovery")
# the database's words for a proof -> ``enrollment.check_code``'s
RESULTS = {"recovery-code": "recovery", "no-answer": "empty"}
EMAIL_PROBLEMS = {
    "no-pending": "the verification code expired; ask for a new one",
    "not-proven": "the address was named without a code from your app; name it again",
}


class FleetHostStore(FleetStore):
    """``FleetStore`` and the enrollment service's operations; ``local``: this host's
    files, for the sealed verification code of an address being named."""

    def __init__(self, socket_path: str, timeout: float, local: FileStore) -> None:
        super().__init__(socket_path, timeout)
        self.local = local

    def request(self, op: str, user: str, **args: Any) -> dict[str, Any]:
        """The daemon's answer to ``op``; offline raises ``FleetUnavailable``."""
        validate_user_name(user)
        answer = fleetclient.request(self.socket_path, self.timeout, op, user=user, **args)
        if answer.get("result") == "offline":
            raise FleetUnavailable("the fleet database cannot be reached", None)
        return answer

    def prove(self, user: str, proof: str) -> tuple[str, str | None]:
        """(``ok``/``recovery``, a one-time grant of this host) or (a refusal, None)."""
        got = self.request("prove", user, answer=proof[:MAX_ANSWER])
        result = str(got.get("result"))
        result = RESULTS.get(result, result)
        grant = got.get("grant")
        if result not in PROVEN:
            return result, None
        if type(grant) is not str:
            raise FleetError("twofa-fleetd sent no grant for a proven code")
        return result, grant

    def enrolled(self, user: str) -> bool:
        return self.request("account", user).get("enrolled") is True

    def account(self, user: str, policy: Policy, now: float) -> dict[str, Any]:
        from pam_twofa import enrollment
        from pam_twofa.login import email_held_until
        from pam_twofa.mail import security_email

        got = self.request("account", user)
        enrolled = got.get("enrolled") is True
        until, first_seen = _num(got.get("locked_until")), _num(got.get("first_seen"))
        email = got.get("email")
        return {
            "enrolled": enrolled, "enrolled_at": _num(got.get("enrolled_at")),
            "failures": _int(got.get("failures")), "lock_level": _int(got.get("lock_level")),
            "locked": until is not None and until > now, "locked_until": until,
            "suspended": got.get("suspended") is True, "suspended_since": None,
            "last_success": _num(got.get("last_success")), "last_trusted": None,
            "first_seen": first_seen, "recovery_codes_left": _int(got.get("recovery_codes")),
            "trusted_devices": _int(got.get("devices")),
            "grace_until": enrollment.grace_until(policy, enrolled, first_seen),
            "pending": got.get("pending") is True,
            "email": email if type(email) is str else None,  # masked by the database
            "email_pending": security_email.masked(self.local.load(user),
                                                   now)["email_pending"],
            "emergency_held_until": email_held_until(
                policy, _num(got.get("email_changed_at")), now),
        }

    def begin_enrollment(self, user: str, proof: str | None, policy: Policy,
                         now: float) -> tuple[str, str | None]:
        result, grant = "new", None
        if self.enrolled(user):
            if proof is None:
                return "code-needed", None
            result, grant = self.prove(user, proof)
            if result not in PROVEN:
                return result, None
        tp = policy.totp
        got = self.request("enroll_begin", user, grant=grant, digits=tp.digits,
                           period=tp.period, algorithm=tp.algorithm)
        if got.get("result") == "no-grant":  # enrolled meanwhile (elsewhere)
            return "code-needed", None
        secret = got.get("secret")
        if got.get("result") != "ok" or type(secret) is not str:
            raise FleetError(f"twofa-fleetd answered {str(got.get('result'))[:40]!r}")
        return result, secret

    def confirm_enrollment(self, user: str, code: str, policy: Policy, now: float,
                           ) -> tuple[str, list[str], dict[str, Any]]:
        got = self.request("enroll_finish", user, code=code[:MAX_ANSWER])
        if got.get("result") != "ok":
            return str(got.get("result")), [], {}
        codes = got.get("codes")
        if type(codes) is not list or not all(type(c) is str for c in codes):
            raise FleetError("twofa-fleetd sent no recovery codes")
        with self.local.update(user) as st:  # an address named before: name it again
            dropped = st.email_pending is not None
            st.email_pending = None
        kept = got.get("email_kept")
        return "ok", codes, {"devices_revoked": _int(got.get("devices_revoked")),
                             "emergency_code_revoked": got.get("emergency_code_revoked") is True,
                             "email_pending_dropped": dropped,
                             "email_kept": kept if type(kept) is str else None}

    def new_recovery_codes(self, user: str, proof: str, policy: Policy, now: float,
                           ) -> tuple[str, list[str]]:
        result, grant = self.prove(user, proof)
        if grant is None:
            return result, []
        got = self.request("new_recovery_codes", user, grant=grant)
        codes = got.get("codes")
        if got.get("result") != "ok" or type(codes) is not list:
            return str(got.get("result")), []
        return result, [str(c) for c in codes]

    def disable(self, user: str, proof: str, policy: Policy, now: float) -> str:
        result, grant = self.prove(user, proof)
        if grant is None:
            return result
        got = self.request("disable", user, grant=grant)
        return result if got.get("result") == "ok" else str(got.get("result"))

    def devices(self, user: str, now: float) -> list[dict[str, Any]]:
        listed = self.request("devices", user).get("devices")
        return [d for d in listed if type(d) is dict] if type(listed) is list else []

    def revoke_devices(self, user: str, device_id: str | None) -> list[str] | None:
        ids = [str(d.get("id")) for d in self.devices(user, 0.0)]
        if device_id is not None:
            ids = [i for i in ids if i == device_id]
        if not ids:
            return []
        got = self.request("revoke_device", user, id=device_id)
        return ids if _int(got.get("revoked")) else []

    def email_start(self, user: str, address: str, code: str, proof: str | None,
                    policy: Policy, now: float) -> str:
        from pam_twofa.mail import security_email

        enrolled = self.enrolled(user)

        def claim(proof: str | None) -> str:
            result, grant = ("new", None) if proof is None else self.prove(user, proof)
            if result not in ("new", *PROVEN):
                return result
            got = self.request("email_begin", user, grant=grant, address=address,
                               seconds=int(policy.emergency.ttl_seconds))
            if got.get("result") == "no-grant":  # enrolled meanwhile (elsewhere)
                return "code-needed"
            if got.get("result") != "ok":
                raise FleetError(f"twofa-fleetd answered {str(got.get('result'))[:40]!r}")
            return result

        with self.local.update(user) as st:
            return security_email.name_address(st, address, code, proof, policy, now,
                                               enrolled=enrolled, claim=claim)

    def email_confirm(self, user: str, code: str, policy: Policy, now: float,
                      ) -> dict[str, Any]:
        from pam_twofa.login import email_held_until
        from pam_twofa.mail import security_email

        enrolled = self.enrolled(user)
        done: dict[str, Any] = {"problem": None, "old": None, "email": None,
                                "held_until": None}
        # The database is asked under this host's lock: offline raises, and the
        # waiting address stays as it was (no try counted, nothing lost).
        with self.local.update(user) as st:
            done["problem"], address = security_email.settle(st, code, now, enrolled=enrolled)
            if address is None:
                return done
            got = self.request("email_set", user, address=address)
        if got.get("result") != "ok":
            done["problem"] = EMAIL_PROBLEMS.get(str(got.get("result")), "refused")
            return done
        old = got.get("old")
        done.update(old=old if type(old) is str else None, email=address,
                    held_until=email_held_until(policy, _num(got.get("email_changed_at")),
                                                now))
        return done


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and type(value) is not bool else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and type(value) is not bool else 0
