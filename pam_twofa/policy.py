"""The policy: who must use 2FA and how, as frozen records.

This is the part of the policy on every login: the records and ``build``, which
turns validated data (from ``schema.validate``, or the compiled cache) into
them. The schema, its validators and the YAML reader load only when the policy
file changed (``policyfile``). To add a section: its record here and in
``SECTIONS`` and a ``Policy`` field, its keys in ``schema.SCHEMA``.
"""

from __future__ import annotations

from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any


class NameSet:
    """A set of names that stays one newline-joined string until it is asked.

    An enrolled user's login never consults the scope lists, and a policy
    listing 10,000 names would cost ~1.2 ms a login to rebuild as a frozenset
    from the compiled cache; the joined string costs ~0.01 ms.
    """

    __slots__ = ("_set", "text")

    def __init__(self, names: Iterable[str] | str = ()) -> None:
        if isinstance(names, str):
            self.text = names
            self._set: frozenset[str] | None = None
        else:
            self._set = frozenset(names)
            self.text = "\n".join(sorted(self._set))

    def names(self) -> frozenset[str]:
        if self._set is None:
            self._set = frozenset(self.text.split("\n")) if self.text else frozenset()
        return self._set

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def isdisjoint(self, other: Iterable[str]) -> bool:
        return self.names().isdisjoint(other)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.names()))

    def __len__(self) -> int:
        return len(self.names())

    def __bool__(self) -> bool:
        return bool(self.text)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NameSet):
            return self.text == other.text
        if isinstance(other, (set, frozenset)):
            return self.names() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"NameSet({sorted(self.names())!r})"


# An exempt network, compiled (``schema.Networks``): its text, and its address and
# prefix length in the IPv6 space, an IPv4 network as its v4-mapped form
# (10.0.0.0/8 is (..., 0xffff0a000000, 104)): a login matches with int arithmetic.
Network = tuple[str, int, int]


class MandatoryPolicy(Record):
    scope: str
    admin_groups: NameSet
    users: NameSet
    groups: NameSet
    exempt_users: NameSet
    exempt_groups: NameSet

    def requires(self, user: str, uid: int, groups: frozenset[str]) -> bool:
        """Whether the policy makes 2FA mandatory for this user.

        Decided by uid for uid 0: every uid-0 account (root, toor, ...) is root, so
        ``users: [root]`` covers toor too, and only ``exempt_users: [root]`` exempts
        a uid-0 account (exempting the name toor alone does not).
        """
        who = "root" if uid == 0 else user
        if who in self.exempt_users or not self.exempt_groups.isdisjoint(groups):
            return False
        if self.scope == "all":
            return True
        if self.scope == "admins":
            return uid == 0 or not self.admin_groups.isdisjoint(groups)
        if self.scope == "selected":
            return (who in self.users or user in self.users
                    or not self.groups.isdisjoint(groups))
        return False


class EnrollmentPolicy(Record):
    grace_days: int
    mode: str
    pending_ttl_seconds: int


class TotpPolicy(Record):
    issuer: str | None
    digits: int
    period: int
    algorithm: str
    window: int


class LockoutPolicy(Record):
    max_failures: int
    interval_seconds: int
    lock_seconds: int
    max_lock_seconds: int
    max_consecutive_failures: int


class TrustPolicy(Record):
    enabled: bool
    days: int
    max_per_user: int
    networks: NameSet
    require_key: bool


class SmtpPolicy(Record):
    provider: str
    host: str | None
    port: int | None
    security: str
    username: str | None
    password_file: str | None
    auth: str
    token_command: str | None
    ca_file: str | None
    sender: str | None
    timeout_seconds: int

    def sends(self) -> bool:
        """Whether a server is named to send through (a preset provider or a host):
        the login decides whether to offer mail without loading the mailer."""
        return bool(self.host) or self.provider != "custom"


class EmergencyPolicy(Record):
    enabled: bool
    code_digits: int
    ttl_seconds: int
    max_sends_per_hour: int
    after_email_change_hours: int


class NotificationPolicy(Record):
    emergency_code_used: bool
    device_trusted: bool
    locked_out: bool
    reset_by_admin: bool


class ClockPolicy(Record):
    servers: tuple[str, ...]
    max_offset_seconds: float
    timeout_seconds: float


class PostgresqlPolicy(Record):
    dsn: str | None
    admin_dsn: str | None
    socket: str
    timeout_seconds: float
    offline: str


class StorePolicy(Record):
    backend: str  # "file" or "postgresql"
    postgresql: PostgresqlPolicy


class ServicePolicy(Record):
    """One PAM service's rules (``services.NAME``); None: the top-level setting."""

    name: str
    enabled: bool
    mandatory: MandatoryPolicy | None
    trusted_devices: bool | None
    exempt_networks: tuple[Network, ...] | None


class Policy(Record):
    mandatory: MandatoryPolicy
    enrollment: EnrollmentPolicy
    totp: TotpPolicy
    lockout: LockoutPolicy
    trusted_devices: TrustPolicy
    smtp: SmtpPolicy
    emergency: EmergencyPolicy
    notifications: NotificationPolicy
    clock: ClockPolicy
    store: StorePolicy
    failmode: str
    exempt_networks: tuple[Network, ...] = ()  # see pam_twofa.scope
    services: tuple[ServicePolicy, ...] = ()  # by name; see pam_twofa.scope


SECTIONS: dict[str, type[Record]] = {
    "mandatory": MandatoryPolicy,
    "enrollment": EnrollmentPolicy,
    "totp": TotpPolicy,
    "lockout": LockoutPolicy,
    "trusted_devices": TrustPolicy,
    "smtp": SmtpPolicy,
    "emergency": EmergencyPolicy,
    "notifications": NotificationPolicy,
    "clock": ClockPolicy,
    "store": StorePolicy,
}
# A field annotated with one of these names holds a nested mapping (a plain dict in
# the compiled cache): ``build`` makes the record.
NESTED: dict[str, type[Record]] = {"PostgresqlPolicy": PostgresqlPolicy}


def _record(cls: type[Record], values: dict[str, Any]) -> Any:
    notes = cls.__annotations__
    return cls(**{k: _field(notes.get(k), v) for k, v in values.items()})


def build(plain: dict[str, Any]) -> Policy:
    """Records from validated data keyed by field names (no checks here).

    The compiled cache stores each ``NameSet`` as its joined text (marshal only
    knows built-in types); a field annotated ``NameSet`` turns it back.
    """
    sections = {name: _record(cls, plain[name]) for name, cls in SECTIONS.items()}
    services = tuple(
        ServicePolicy(**{**values, "name": name, "mandatory": None if values["mandatory"] is None
                         else _record(MandatoryPolicy, values["mandatory"])})
        for name, values in sorted(plain["services"].items()))
    return Policy(failmode=plain["failmode"], exempt_networks=plain["exempt_networks"],
                  services=services, **sections)


def _field(note: object, value: Any) -> Any:
    if note == "NameSet" and isinstance(value, str):
        return NameSet(value)
    if isinstance(value, dict) and isinstance(note, str) and note in NESTED:
        return NESTED[note](**value)
    return value

