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
    from typing import Any


class MandatoryPolicy(Record):
    scope: str
    admin_groups: frozenset[str]
    users: frozenset[str]
    groups: frozenset[str]
    exempt_users: frozenset[str]
    exempt_groups: frozenset[str]

    def requires(self, user: str, uid: int, groups: frozenset[str]) -> bool:
        """Whether the policy makes 2FA mandatory for this user."""
        if user in self.exempt_users or not groups.isdisjoint(self.exempt_groups):
            return False
        if self.scope == "all":
            return True
        if self.scope == "admins":
            return uid == 0 or not groups.isdisjoint(self.admin_groups)
        if self.scope == "selected":
            return user in self.users or not groups.isdisjoint(self.groups)
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


class TrustPolicy(Record):
    enabled: bool
    days: int
    max_per_user: int
    networks: frozenset[str]
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


class EmergencyPolicy(Record):
    enabled: bool
    code_digits: int
    ttl_seconds: int
    max_sends_per_hour: int


class NotificationPolicy(Record):
    emergency_code_used: bool
    device_trusted: bool
    locked_out: bool
    reset_by_admin: bool


class ClockPolicy(Record):
    servers: tuple[str, ...]
    max_offset_seconds: float
    timeout_seconds: float


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
    failmode: str


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
}


def build(plain: dict[str, Any]) -> Policy:
    """Records from validated data keyed by field names (no checks here)."""
    sections: dict[str, Any] = {name: cls(**plain[name]) for name, cls in SECTIONS.items()}
    return Policy(failmode=plain["failmode"], **sections)


def defaults() -> Policy:
    """The policy when no file is given: every key at its default."""
    from pam_twofa import schema

    return build(schema.validate({})[0])
