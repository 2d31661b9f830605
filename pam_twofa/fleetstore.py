"""The fleet store for logins: ``Store`` operations answered by ``twofa-fleetd``.

A host with ``store.backend: postgresql`` logs users in through this class. Each
operation is one request to the host's daemon (``fleetclient``), which runs one
SECURITY DEFINER function in the fleet database: the database checks the code,
the replay and the lockout, so the secret never reaches this host at login and
a code used on one host is refused on every other. The answers are mapped to the
same ``LoginView``/``Verdict`` shapes ``FileStore`` returns, so ``core`` decides
alike on both backends.

When the database (or the daemon) cannot answer in time, an operation raises
``FleetUnavailable`` carrying what the daemon knows of the user (``enrolled``:
true/false from its list, None when nobody knows); the core's offline rule
decides (see ``core``). Operations the fleet cannot do yet raise ``FleetError``,
never a silent success. Loads only ``fleetclient`` (``_socket``, ``time``) and the
login types: no database driver, no ``json``, no ``socket`` module.
"""

from __future__ import annotations

from pam_twofa import fleetclient
from pam_twofa.errors import FleetError, FleetUnavailable
from pam_twofa.login import (
    MSG_EMPTY,
    MSG_REPLAY,
    MSG_SUSPENDED,
    MSG_WRONG,
    LoginView,
    format_time,
    validate_user_name,
)
from pam_twofa.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.emergency import Issued
    from pam_twofa.policy import Policy
    from pam_twofa.trust import Binding
    from pam_twofa.verify import Verdict

SLACK = 0.25  # what the client waits beyond the daemon's own deadline
MAX_ANSWER = 1024  # what twofa-fleetd passes on (its "a" arguments)
BCRYPT_SLACK = 2.0  # an offline check: up to ~10 bcrypt hashes (~50 ms each) on the host
MSG_OFFLINE_LOCKED = ("Too many wrong codes: no more tries on this host until the fleet "
                      "database can be reached again.")


class FleetStore(Store):
    """The login operations over the host's ``twofa-fleetd`` socket.

    ``timeout`` is ``store.postgresql.timeout_seconds``: the daemon answers
    ``offline`` within it, the client waits ``SLACK`` more for the socket itself.
    A successful code check's one-time grant is kept for ``add_trusted`` (the
    database trusts a device only with a grant this host was issued).
    """

    def __init__(self, socket_path: str, timeout: float) -> None:
        self.socket_path = socket_path
        self.timeout = timeout + SLACK
        self._grants: dict[str, str] = {}
        self._break_glass: set[str] = set()  # offline, and the daemon has their hashes

    def _ask(self, op: str, user: str, *args: Any, enrolled: bool | None = None,
             slack: float = 0.0) -> dict[str, Any]:
        """The daemon's answer to ``op``; offline raises ``FleetUnavailable`` with
        ``enrolled`` (given: the caller knows the user is; else the daemon's word)."""
        validate_user_name(user)
        answer: dict[str, Any] = getattr(fleetclient, op)(self.socket_path,
                                                          self.timeout + slack, user, *args)
        if answer.get("result") == "offline":
            said = answer.get("enrolled")
            glass = answer.get("recovery_codes") is True
            if glass:  # the next check_code of this user is the break-glass one
                self._break_glass.add(user)
            raise FleetUnavailable("the fleet database cannot be reached",
                                   enrolled if enrolled is not None
                                   else said if type(said) is bool else None, glass)
        return answer

    # --- the login ---

    def view(self, user: str, now: float, binding: Binding | None = None) -> LoginView | None:
        st = self._ask("status", user)
        if not st.get("enrolled") and st.get("first_seen") is None:
            return None
        # ``trusted``: this host has a live device of the user; skip_trusted then asks
        # the database whether one matches this binding (and records its use).
        # ``email``: whether an address is set (never the address: that comes only
        # with a code to mail); ``email_changed_at`` starts the core's hold.
        return LoginView(enrolled=st.get("enrolled") is True, digits=_int(st.get("digits"), 6),
                         email=st.get("email") is True,
                         email_changed_at=_num(st.get("email_changed_at")),
                         first_seen=_num(st.get("first_seen")),
                         locked_until=_num(st.get("locked_until")) or 0.0,
                         suspended=st.get("suspended") is True,
                         trusted=binding is not None and _int(st.get("devices"), 0) > 0)

    def grace_start(self, user: str, now: float, count_enrollment: bool = False) -> float:
        first = _num(self._ask("first_seen", user).get("first_seen"))
        if first is None:
            raise FleetError("twofa-fleetd sent no first_seen")
        return first

    def check_code(self, user: str, answer: str, policy: Policy, now: float,
                   binding: Binding | None = None) -> Verdict:
        from pam_twofa.verify import Verdict

        # No code is that long: a longer answer (the daemon takes 1,024 characters) is
        # a wrong answer, counted, never a refused request.
        if user in self._break_glass:  # told offline: the daemon's cache may decide
            self._break_glass.discard(user)
            got = self._ask("offline_check", user, answer[:MAX_ANSWER], enrolled=True,
                            slack=BCRYPT_SLACK)
            if got.get("offline") is True:
                return offline_verdict(got)
        else:
            got = self._ask("check_code", user, answer[:MAX_ANSWER], enrolled=True)
        result = got.get("result")
        if result == "ok":
            verdict = Verdict("ok")
            grant = got.get("grant")
            if type(grant) is str:
                self._grants[user] = grant
            # The core reached the code prompt: no live device of this host matched
            # the binding (view found none, or skip_trusted found none that matched).
            verdict.offer_trust = binding is not None
            return verdict
        if result == "recovery-code":
            verdict = Verdict("recovery-code")
            verdict.left = _int(got.get("left"), 0)
            return verdict
        if result == "replay":
            return Verdict("replay", MSG_REPLAY)
        if result == "no-answer":
            return Verdict("empty", MSG_EMPTY)
        if result == "bad-code":
            return failure(got, "bad-code", MSG_WRONG)
        return refusal(got)

    def skip_trusted(self, user: str, binding: Binding, now: float,
                     ) -> tuple[str, float] | None:
        if binding.ip is None:
            return None
        got = self._ask("skip_device", user, binding.service, binding.ip, binding.key,
                        enrolled=True)
        if got.get("trusted") is not True or type(got.get("id")) is not str:
            return None
        return str(got["id"]), _num(got.get("expires")) or now

    def add_trusted(self, user: str, binding: Binding, policy: Policy, now: float,
                    ) -> tuple[dict[str, Any], str | None] | None:
        grant = self._grants.pop(user, None)
        if grant is None or binding.ip is None:
            return None
        got = self._ask("add_device", user, grant, binding.service, binding.ip, binding.key,
                        enrolled=True)
        if got.get("result") != "ok" or type(got.get("id")) is not str:
            return None  # locked since, reset, or the grant was refused
        expires = _num(got.get("expires")) or now
        record = {"id": got["id"], "created": _num(got.get("created")) or now,
                  "expires": expires, "ip": binding.ip, "key": binding.key,
                  "service": binding.service, "last_used": now}
        email = got.get("email")
        return record, email if type(email) is str else None

    def emergency_reserve(self, user: str, policy: Policy, now: float) -> Verdict | Issued:
        from pam_twofa import emergency

        # The database makes the code (its digits and ttl are the fleet's settings),
        # keeps a MAC of it bound to this host, and counts the send fleet-wide.
        got = self._ask("emergency_begin", user, enrolled=True)
        result, code, address = got.get("result"), got.get("code"), got.get("email")
        if result == "ok" and type(code) is str and code.isdigit() and type(address) is str:
            ttl = _int(got.get("ttl_seconds"), policy.emergency.ttl_seconds)  # (schema 1)
            return emergency.Issued(code=code, address=address, ttl=ttl)
        if result in ("not-enrolled", "no-email", "email-changed"):
            return emergency.refused(str(result), _num(got.get("until")))
        if result == "send-limit":
            return emergency.refused("mail-send-limit")
        return refusal(got)

    def emergency_check(self, user: str, answer: str, policy: Policy, now: float) -> Verdict:
        from pam_twofa import emergency
        from pam_twofa.verify import Verdict

        got = self._ask("emergency_check", user, answer[:MAX_ANSWER], enrolled=True)
        result = got.get("result")
        if result == "emergency-code":  # used up; the address: the notice that it was
            verdict = Verdict("emergency-code")
            email = got.get("email")
            verdict.email = email if type(email) is str else None
            return verdict
        if result == "no-answer":
            return Verdict("empty", emergency.MSG_EMPTY)
        if result == "bad-emergency-code":
            return failure(got, "bad-emergency-code", emergency.MSG_BAD)
        if result == "not-enrolled":
            return emergency.refused("not-enrolled")
        return refusal(got)

    def enroll_inline(self, user: str, secret: str, answer: str, policy: Policy,
                      now: float) -> tuple[str, list[str]]:
        raise FleetError("inline enrollment is not available with the fleet store: "
                         "enroll with twofa-enroll or twofa-admin")

    def status(self, user: str, now: float) -> dict[str, Any]:
        st = self._ask("status", user)
        until = _num(st.get("locked_until"))
        return {"enrolled": st.get("enrolled") is True, "failures": _int(st.get("failures"), 0),
                "locked": until is not None and until > now, "locked_until": until,
                "suspended": st.get("suspended") is True,
                "first_seen": _num(st.get("first_seen")),
                "recovery_codes_left": _int(st.get("recovery_codes"), 0),
                "trusted_devices": _int(st.get("devices"), 0)}


def failure(got: dict[str, Any], reason: str, message: str) -> Verdict:
    """A counted wrong answer as ``verify.failed`` words it: failures, lock, suspension."""
    from pam_twofa.verify import wrong

    email = got.get("email_address")
    return wrong(reason, message, _int(got.get("failures"), 0),
                 email if type(email) is str else None, got.get("suspended") is True,
                 _num(got.get("locked_until")))


def offline_verdict(got: dict[str, Any]) -> Verdict:
    """An answer of the daemon's break-glass cache (``offline``: true)."""
    from pam_twofa.verify import Verdict

    result = got.get("result")
    if result == "recovery-code":
        verdict = Verdict("recovery-code")
        verdict.left = _int(got.get("left"), 0)
    elif result == "bad-code":
        verdict = failure(got, "bad-code", MSG_WRONG)
        if got.get("offline_locked") is True:
            verdict.message = f"{MSG_WRONG} {MSG_OFFLINE_LOCKED}"
            verdict.fields += (("offline_locked", "yes"),)
    elif result == "locked" and _num(got.get("locked_until")) is not None:
        verdict = refusal(got)  # the database's lock, as it was when last heard
    elif result == "locked":
        verdict = Verdict("locked", MSG_OFFLINE_LOCKED)
    elif result == "no-answer":
        verdict = Verdict("empty", MSG_EMPTY)
    else:
        raise FleetError(f"twofa-fleetd answered {str(result)[:40]!r} offline")
    verdict.offline = True
    return verdict


def refusal(got: dict[str, Any]) -> Verdict:
    """``locked``, ``suspended``, ``not-enrolled``: as ``verify.refusal`` says them."""
    from pam_twofa.verify import Verdict

    result = got.get("result")
    if result == "suspended":
        return Verdict("suspended", MSG_SUSPENDED)
    if result == "locked":
        until = _num(got.get("locked_until")) or 0.0
        return Verdict("locked", f"Too many wrong codes: locked until {format_time(until)}.",
                       (("locked_until", int(until)),))
    if result == "not-enrolled":
        return Verdict("not-enrolled")
    raise FleetError(f"twofa-fleetd answered {str(result)[:40]!r}")


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and type(value) is not bool else None


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and type(value) is not bool else default
