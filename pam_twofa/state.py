"""One user's state record and its versioned JSON schema.

The loader is strict: a file that does not match the schema is ``CorruptState``
(never silently "not enrolled", which would skip the second factor), and a file
from a newer schema version is refused rather than rewritten in an older shape.
An older version is migrated on load (``MIGRATIONS``) and written back in the
current shape by the next update.
"""

from __future__ import annotations

from pam_twofa.errors import CorruptState
from pam_twofa.totp import ALGORITHMS, b32decode

SCHEMA_VERSION = 2

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _is_int(v: object) -> bool:
    return type(v) is int


def _is_num(v: object) -> bool:
    return type(v) in (int, float) and v == v  # not NaN


def _opt(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or check(v)


def _is_str(v: object) -> bool:
    return type(v) is str


def _is_bool(v: object) -> bool:
    return type(v) is bool


def _is_num_list(v: object) -> bool:
    return type(v) is list and all(_is_num(x) for x in v)


def _is_str_list(v: object) -> bool:
    return type(v) is list and all(_is_str(x) for x in v)


def _is_dict_list(v: object) -> bool:
    return type(v) is list and all(type(x) is dict for x in v)


# field -> (type check, default factory). Add fields here; bump SCHEMA_VERSION
# only for changes an older reader must not misread.
FIELDS: dict[str, tuple[Callable[[object], bool], Callable[[], Any]]] = {
    "enrolled": (_is_bool, lambda: False),
    "secret": (_opt(_is_str), lambda: None),
    "digits": (_is_int, lambda: 6),
    "period": (_is_int, lambda: 30),
    "algorithm": (_is_str, lambda: "SHA1"),
    "enrolled_at": (_opt(_is_num), lambda: None),
    "last_step": (_is_int, lambda: -1),
    "failures": (_is_int, lambda: 0),
    "recent_failures": (_is_num_list, list),
    "lock_level": (_is_int, lambda: 0),
    "locked_until": (_is_num, lambda: 0),
    "first_seen": (_opt(_is_num), lambda: None),
    "last_success": (_opt(_is_num), lambda: None),  # last login with a code
    "last_trusted": (_opt(_is_num), lambda: None),  # last login from a trusted device
    "suspended": (_opt(_is_num), lambda: None),  # when max_consecutive_failures was hit
    "recovery_codes": (_is_str_list, list),
    "devices": (_is_dict_list, list),
    "email": (_opt(_is_str), lambda: None),
    "pending": (_opt(lambda v: type(v) is dict), lambda: None),
    "emergency": (_opt(lambda v: type(v) is dict), lambda: None),
    "sends": (_is_num_list, list),
    "email_pending": (_opt(lambda v: type(v) is dict), lambda: None),  # unverified address
    # Added without a version bump: a file from before has neither and reads as "no
    # verification mails yet" and "address never changed by the user" (the defaults).
    "verify_sends": (_is_num_list, list),  # verification mails (own hourly budget)
    "email_changed_at": (_opt(_is_num), lambda: None),  # user changed the address: hold
}


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 binds each trusted device to the PAM service it was trusted on.

    A version 1 record has no service. Trust needs the client's IP, which in
    practice only sshd gives, so such a record is kept but honoured on ``sshd``
    only (never on every service, as before: issue 11 finding 8).
    """
    devices = data.get("devices")
    if type(devices) is list:
        data["devices"] = [{**d, "service": d.get("service") or "sshd"}
                           if type(d) is dict else d for d in devices]
    return {**data, "version": 2}


# version -> the step to the next version
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}


class UserState:
    """Mutable state of one user, changed only inside ``Store.update``."""

    enrolled: bool
    secret: str | None
    digits: int
    period: int
    algorithm: str
    enrolled_at: float | None
    last_step: int
    failures: int
    recent_failures: list[float]
    lock_level: int
    locked_until: float
    first_seen: float | None
    last_success: float | None
    last_trusted: float | None
    suspended: float | None
    recovery_codes: list[str]
    devices: list[dict[str, Any]]
    email: str | None
    pending: dict[str, Any] | None
    emergency: dict[str, Any] | None
    sends: list[float]
    email_pending: dict[str, Any] | None
    verify_sends: list[float]
    email_changed_at: float | None

    def __init__(self, user: str) -> None:
        self.user = user
        for name, (_check, default) in FIELDS.items():
            setattr(self, name, default())

    @classmethod
    def from_plain(cls, user: str, data: object) -> UserState:
        """Build from decoded JSON, refusing anything off-schema."""
        if type(data) is not dict:
            raise CorruptState(f"state of {user!r} is not a JSON object")
        version = data.get("version")
        while type(version) is int and version in MIGRATIONS:
            data = MIGRATIONS[version](data)
            version = data.get("version")
        if version != SCHEMA_VERSION:
            raise CorruptState(f"state of {user!r} has schema version {version!r}, "
                               f"this pam-twofa reads {SCHEMA_VERSION}")
        if data.get("user") != user:
            raise CorruptState(f"state file of {user!r} names another user")
        state = cls(user)
        for key, value in data.items():
            if key in ("version", "user"):
                continue
            spec = FIELDS.get(key)
            if spec is None:
                raise CorruptState(f"state of {user!r} has unknown field {key!r}")
            if not spec[0](value):
                raise CorruptState(f"state of {user!r} has a bad value for {key!r}")
            setattr(state, key, value)
        if state.enrolled and not state.secret:
            raise CorruptState(f"state of {user!r} is enrolled without a secret")
        if state.secret is not None:
            try:
                b32decode(state.secret)
            except ValueError:
                raise CorruptState(f"state of {user!r} has a secret that is not base32") from None
        if not (6 <= state.digits <= 10 and 1 <= state.period <= 3600
                and state.algorithm in ALGORITHMS):
            raise CorruptState(f"state of {user!r} has bad TOTP parameters")
        return state

    def to_plain(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": SCHEMA_VERSION, "user": self.user}
        for name in FIELDS:
            data[name] = getattr(self, name)
        return data
