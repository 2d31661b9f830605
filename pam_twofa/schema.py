"""The policy schema: every key, its validator, default and meaning, in one table.

``etc/pam-twofa/policy.yaml`` and pam-twofa-policy(5) list the same keys (a test
keeps them in step). ``validate`` returns data keyed by record field names, for
``policy.build``. Not on the login path: only loaded when the policy changed.
"""

from __future__ import annotations

from pam_twofa.policy import (
    ClockPolicy,
    EmergencyPolicy,
    EnrollmentPolicy,
    LockoutPolicy,
    MandatoryPolicy,
    NameSet,
    NotificationPolicy,
    Policy,
    SmtpPolicy,
    TotpPolicy,
    TrustPolicy,
    build,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any


class Invalid(ValueError):
    """A value the schema refuses; the loader adds file and line."""


class Check:
    """One key's validator and default."""

    def __init__(self, default: Any, doc: str) -> None:
        self.default = default
        self.doc = doc

    def __call__(self, value: object) -> Any:
        raise NotImplementedError


class Int(Check):
    def __init__(self, default: int | None, lo: int, hi: int, doc: str, null: bool = False):
        super().__init__(default, doc)
        self.lo, self.hi, self.null = lo, hi, null

    def __call__(self, value: object) -> int | None:
        if value is None and self.null:
            return None
        if type(value) is not int:
            raise Invalid(f"must be a whole number from {self.lo} to {self.hi}")
        if not self.lo <= value <= self.hi:
            raise Invalid(f"must be from {self.lo} to {self.hi}, not {value}")
        return value


class Num(Int):
    def __call__(self, value: object) -> Any:
        if type(value) is float and value == value:
            if not self.lo <= value <= self.hi:
                raise Invalid(f"must be from {self.lo} to {self.hi}, not {value}")
            return value
        return super().__call__(value)


class Bool(Check):
    def __call__(self, value: object) -> bool:
        if type(value) is not bool:
            raise Invalid("must be true or false")
        return value


class Choice(Check):
    def __init__(self, default: str, choices: tuple[str, ...], doc: str) -> None:
        super().__init__(default, doc)
        self.choices = choices

    def __call__(self, value: object) -> str:
        if value not in self.choices or type(value) is not str:
            raise Invalid(f"must be one of {', '.join(self.choices)}, not {value!r}")
        return value


class Str(Check):
    def __call__(self, value: object) -> str | None:
        if value is None:
            return None
        if type(value) is not str or not value or any(ord(c) < 32 for c in value):
            raise Invalid("must be a non-empty one-line string or null")
        return value


class Names(Check):
    """A list of user/group names (or other plain tokens), kept as a ``NameSet``."""

    def __init__(self, default: tuple[str, ...], doc: str,
                 each: Callable[[str], str] | None = None, ordered: bool = False) -> None:
        super().__init__(tuple(default) if ordered else NameSet(default), doc)
        self.each = each
        self.ordered = ordered

    def __call__(self, value: object) -> Any:
        if value is None:
            return () if self.ordered else NameSet()
        if type(value) is not list:
            raise Invalid("must be a list")
        out: dict[str, None] = {}
        for item in value:
            if type(item) is not str or not item or any(c.isspace() or ord(c) < 32 for c in item):
                raise Invalid(f"must list plain names without spaces, not {item!r}")
            out[self.each(item) if self.each else item] = None
        return tuple(out) if self.ordered else NameSet(out)


def _cidr(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise Invalid(f"{text!r} is not an IP network (CIDR)") from None


def _server(text: str) -> str:
    _host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise Invalid(f"{text!r}: bad port")
    return text


_DAY = 86400
# section -> (record, {yaml key: check}); a key's record field is the same name,
# except where RENAMED says otherwise (``from`` is a Python keyword).
# Several servers by default, so that one wrong answer cannot decide (the median does).
DEFAULT_NTP_SERVERS = ("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org", "3.pool.ntp.org")
SCHEMA: dict[str, tuple[type, dict[str, Check]]] = {
    "mandatory": (MandatoryPolicy, {
        "scope": Choice("none", ("none", "admins", "all", "selected"),
                        "who must use 2FA: nobody, admins (admin_groups and root), all, "
                        "or the users and groups listed"),
        "admin_groups": Names(("wheel", "sudo"), "groups whose members are admins"),
        "users": Names((), "users who must use 2FA with scope selected"),
        "groups": Names((), "groups whose members must use 2FA with scope selected"),
        "exempt_users": Names((), "users never required to use 2FA (enrolled ones are "
                                  "still asked)"),
        "exempt_groups": Names((), "groups whose members are never required to use 2FA"),
    }),
    "enrollment": (EnrollmentPolicy, {
        "grace_days": Int(7, 0, 3650, "days a user in scope may log in before enrolling"),
        "mode": Choice("notice", ("notice", "inline", "deny"),
                       "first login of a user in scope who is not enrolled: notice "
                       "(grace period), inline (enroll inside the login), deny"),
        "pending_ttl_seconds": Int(900, 60, 86400, "how long a started enrollment waits "
                                                   "for its confirming code"),
    }),
    "totp": (TotpPolicy, {
        "issuer": Str(None, "issuer shown in the app (null: the host name)"),
        "digits": Int(6, 6, 8, "code length for new enrollments"),
        "period": Int(30, 15, 120, "seconds per code for new enrollments"),
        "algorithm": Choice("SHA1", ("SHA1", "SHA256", "SHA512"),
                            "HMAC hash for new enrollments (most apps only do SHA1)"),
        "window": Int(1, 0, 10, "steps of clock skew accepted either side"),
    }),
    "lockout": (LockoutPolicy, {
        "max_failures": Int(5, 1, 1000, "wrong codes within interval_seconds that lock"),
        "interval_seconds": Int(900, 1, 30 * _DAY, "window in which wrong codes are counted"),
        "lock_seconds": Int(300, 1, 30 * _DAY, "first lock; each later one doubles"),
        "max_lock_seconds": Int(86400, 1, 365 * _DAY, "longest lock"),
        "max_consecutive_failures": Int(100, 1, 100, "wrong codes in a row that suspend "
                                        "2FA until twofa-admin unlock (NIST: at most 100)"),
    }),
    "trusted_devices": (TrustPolicy, {
        "enabled": Bool(False, "offer to trust a device after a right code"),
        "days": Int(30, 1, 365, "how long a device stays trusted"),
        "max_per_user": Int(10, 1, 100, "trusted devices per user; the oldest gives way"),
        "networks": Names((), "CIDRs where trust may be offered (empty: anywhere)", _cidr),
        "require_key": Bool(False, "offer trust only to SSH public-key logins"),
    }),
    "smtp": (SmtpPolicy, {
        "provider": Choice("custom", ("custom", "gmail", "outlook"),
                           "gmail and outlook fill host (smtp.gmail.com, smtp.office365.com), "
                           "port 587 and starttls"),
        "host": Str(None, "SMTP server (null with provider custom: no mail is sent and "
                          "emergency codes are not offered)"),
        "port": Int(None, 1, 65535, "SMTP port (null: 587 for starttls, 465 for ssl, 25)",
                    null=True),
        "security": Choice("starttls", ("starttls", "ssl", "none"),
                           "starttls (required: a server without it is refused), ssl "
                           "(implicit TLS) or none (plain: credentials are never sent); "
                           "certificates are always verified"),
        "username": Str(None, "login name, if the server needs one"),
        "password_file": Str(None, "file whose first line is the password; refused unless "
                                   "owned by root with no group or other access"),
        "auth": Choice("password", ("password", "xoauth2"), "authentication method"),
        "token_command": Str(None, "command printing an OAuth2 access token (auth xoauth2): "
                                   "absolute path, run without a shell within the timeout, "
                                   "owned by root with no group or other access"),
        "ca_file": Str(None, "CA bundle to verify the server (null: system CAs)"),
        "from": Str(None, "sender address (null: pam-twofa@<host>)"),
        "timeout_seconds": Int(10, 1, 120, "time allowed for one whole mail (name lookup, "
                                           "connect, TLS, login, send); a login waiting "
                                           "for mail is refused after it"),
    }),
    "emergency": (EmergencyPolicy, {
        "enabled": Bool(True, "offer emergency codes by email to users with a verified "
                              "address (needs smtp)"),
        "code_digits": Int(8, 6, 12, "digits of an emergency or address verification code"),
        "ttl_seconds": Int(600, 60, 3600, "how long an emergency or verification code is "
                                          "valid; a code works once and the next send "
                                          "voids it"),
        "max_sends_per_hour": Int(3, 1, 100, "code mails per user per hour, counted "
                                             "apart for emergency codes and for address "
                                             "verification (each kind has this budget)"),
        "after_email_change_hours": Int(24, 0, 720, "after a user changes their security "
                                                    "email, emergency codes are not offered "
                                                    "for this long (0: at once)"),
    }),
    "notifications": (NotificationPolicy, {
        "emergency_code_used": Bool(True, "mail the user when an emergency code is used"),
        "device_trusted": Bool(True, "mail the user when a device is trusted"),
        "locked_out": Bool(True, "mail the user when wrong codes lock the account"),
        "reset_by_admin": Bool(True, "mail the user when an admin resets their 2FA"),
    }),
    "clock": (ClockPolicy, {
        "servers": Names(DEFAULT_NTP_SERVERS,
                         "NTP servers, HOST or HOST:PORT; the median offset decides "
                         "(empty: the host's own, else pool.ntp.org)", _server, ordered=True),
        "max_offset_seconds": Num(10, 0, 3600, "largest offset counted as in sync"),
        "timeout_seconds": Num(5, 1, 60, "timeout of each NTP query"),
    }),
}
RENAMED = {("smtp", "from"): "sender"}
FAILMODE = Choice("secure", ("secure", "safe"),
                  "on an internal error: secure refuses the login, safe ignores the module")


def _cross_checks(plain: dict[str, Any]) -> Iterable[tuple[str, str, str]]:
    """(section, key, problem) for rules that involve more than one key."""
    lock = plain["lockout"]
    if lock["max_lock_seconds"] < lock["lock_seconds"]:
        yield "lockout", "max_lock_seconds", "must not be less than lock_seconds"
    smtp = plain["smtp"]
    if smtp["auth"] == "xoauth2" and not smtp["token_command"]:
        yield "smtp", "token_command", "is needed with auth: xoauth2"
    if smtp["auth"] == "xoauth2" and not smtp["username"]:
        yield "smtp", "username", "is needed with auth: xoauth2"
    if smtp["auth"] == "password" and smtp["username"] and not smtp["password_file"]:
        yield "smtp", "password_file", "is needed with a username and auth: password"
    for key in ("password_file", "token_command", "ca_file"):
        if smtp[key] and not smtp[key].startswith("/"):
            yield "smtp", key, "must be an absolute path"


def validate(data: object, where: Callable[[tuple[str, ...]], int] = lambda p: 0,
             ) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """Check raw data against ``SCHEMA``: (data by field name, [(line, problem)]).

    ``where`` maps a key path to its line in the source file (0 if unknown).
    """
    errors: list[tuple[int, str]] = []
    if data is None:
        data = {}
    if type(data) is not dict:
        return {}, [(where(()), "the policy must be a mapping of sections")]
    plain: dict[str, Any] = {}
    for key in data:
        if key not in SCHEMA and key != "failmode":
            known = ", ".join([*SCHEMA, "failmode"])
            errors.append((where((str(key),)), f"unknown section {key!r} (known: {known})"))
    try:
        plain["failmode"] = FAILMODE(data.get("failmode", FAILMODE.default))
    except Invalid as exc:
        errors.append((where(("failmode",)), f"failmode {exc}"))
        plain["failmode"] = FAILMODE.default
    for section, (_cls, checks) in SCHEMA.items():
        given = data.get(section)
        if given is None:
            given = {}
        if type(given) is not dict:
            errors.append((where((section,)), f"{section} must be a mapping"))
            given = {}
        values = {}
        for key in given:
            if key not in checks:
                known = ", ".join(checks)
                errors.append((where((section, str(key))),
                               f"unknown key {section}.{key} (known: {known})"))
        for key, check in checks.items():
            try:
                values[key] = check(given[key]) if key in given else check.default
            except Invalid as exc:
                errors.append((where((section, key)), f"{section}.{key} {exc}"))
                values[key] = check.default
        plain[section] = values
    if not errors:
        for section, key, problem in _cross_checks(plain):
            errors.append((where((section, key)), f"{section}.{key} {problem}"))
    for section in SCHEMA:
        plain[section] = {RENAMED.get((section, k), k): v for k, v in plain[section].items()}
    return plain, errors


def defaults() -> Policy:
    """The policy when no file is given: every key at its default."""
    return build(validate({})[0])
