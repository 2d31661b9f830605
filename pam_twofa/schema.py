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
    NotificationPolicy,
    Policy,
    SmtpPolicy,
    StorePolicy,
    TotpPolicy,
    TrustPolicy,
    build,
)
from pam_twofa.validators import (
    Bool,
    Check,
    Choice,
    Conninfo,
    Int,
    Invalid,
    Names,
    Nested,
    Networks,
    Num,
    Overrides,
    Str,
    cidr,
    server,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

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
        "networks": Names((), "CIDRs where trust may be offered (empty: anywhere)", cidr),
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
    "store": (StorePolicy, {
        "backend": Choice("file", ("file", "postgresql"),
                          "where user state lives: file (this host's state directory) or "
                          "postgresql (the fleet database, through twofa-fleetd)"),
        "postgresql": Nested({
            "dsn": Conninfo(None, "libpq conninfo twofa-fleetd connects with as this host's "
                             "role (client certificate; no password inline), e.g. "
                             "'host=db1,db2 dbname=twofa user=HOST sslmode=verify-full "
                             "target_session_attrs=read-write'"),
            "admin_dsn": Conninfo(None, "libpq conninfo of a twofa_admin role, for twofa-admin"),
            "socket": Str("/run/pam-twofa/fleetd.sock",
                          "Unix socket where twofa-fleetd serves the module"),
            "timeout_seconds": Num(2, 1, 30, "longest wait for the database; a login "
                                             "gets the offline answer after it"),
            "offline": Choice("deny", ("deny", "recovery-codes"),
                              "database unreachable: deny refuses enrolled and required "
                              "users (others log in with their password); "
                              "recovery-codes also lets a user who logged in on this host "
                              "use a recovery code, checked against hashes twofa-fleetd "
                              "cached (log reason=offline)"),
        }, "the fleet database (backend postgresql)"),
    }),
    "clock": (ClockPolicy, {
        "servers": Names(DEFAULT_NTP_SERVERS,
                         "NTP servers, HOST or HOST:PORT; the median offset decides "
                         "(empty: the host's own, else pool.ntp.org)", server, ordered=True),
        "max_offset_seconds": Num(10, 0, 3600, "largest offset counted as in sync"),
        "timeout_seconds": Num(5, 1, 60, "timeout of each NTP query"),
    }),
}
RENAMED = {("smtp", "from"): "sender"}
FAILMODE = Choice("secure", ("secure", "safe"),
                  "on an internal error: secure refuses the login, safe ignores the module")
EXEMPT_NETWORKS = Networks("networks (CIDR) whose clients are not asked for a code, whoever "
                           "they are (a lock or a suspension still refuses); log "
                           "reason=exempt-network")
# services.NAME: one PAM service's rules (pam_twofa.scope); a key left out (or null)
# is the top-level setting.
SERVICE: dict[str, Check] = {
    "enabled": Bool(True, "false: the module ignores this service, for everyone (PAM_IGNORE, "
                          "log reason=service-disabled)"),
    "mandatory": Overrides("mandatory", "who must use 2FA on this service: keys of mandatory, "
                                        "each replacing the top-level one (null: the "
                                        "top-level mandatory)"),
    "trusted_devices": Bool(None, "whether trusted devices are offered and honoured on this "
                                  "service (null: trusted_devices.enabled)", null=True),
    "exempt_networks": Networks("replaces the top-level exempt_networks on this service "
                                "([]: none; null: the top-level list)", null=True),
}
TOP_LEVEL = ("services", "exempt_networks", "failmode")
# Service names: PAM service file names, which libpam lowers (pam_start), never a path.
SERVICE_NAME = r"[a-z0-9_][a-z0-9_.+-]{0,254}"
NOT_A_SERVICE = {
    "other": "'other' is PAM's fallback file, not a service: a login reports the name "
             "its program asked for",
    **{f"common-{kind}": f"'common-{kind}' is an included file, not a service"
       for kind in ("auth", "account", "password", "session", "session-noninteractive")},
}


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
    store = plain["store"]
    if store["backend"] == "postgresql":
        pg = store["postgresql"]
        if not pg["dsn"]:
            yield "store", "postgresql", "needs dsn with backend: postgresql"
        if plain["failmode"] == "safe":
            yield ("store", "backend", "postgresql is not allowed with failmode: safe (an "
                   "unreachable database must never let everyone in)")
        if plain["enrollment"]["mode"] == "inline":
            yield ("enrollment", "mode", "inline is not available with store.backend: "
                   "postgresql yet (enroll with twofa-admin fleet import)")
        if not (pg["socket"] or "").startswith("/"):
            yield "store", "postgresql", "socket must be an absolute path"


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
        if key not in SCHEMA and key not in TOP_LEVEL:
            known = ", ".join([*SCHEMA, *TOP_LEVEL])
            errors.append((where((str(key),)), f"unknown section {key!r} (known: {known})"))

    def run(check: Check, value: object, path: tuple[str, ...], fallback: Any) -> Any:
        try:
            return check(value)
        except Invalid as exc:
            at = path if exc.index is None else (*path, f"[{exc.index}]")
            errors.append((where(at), f"{'.'.join(path)} {exc}"))
            return fallback

    plain["failmode"] = run(FAILMODE, data.get("failmode", FAILMODE.default), ("failmode",),
                            FAILMODE.default)
    plain["exempt_networks"] = run(EXEMPT_NETWORKS, data.get("exempt_networks"),
                                   ("exempt_networks",), ())
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
            if isinstance(check, Nested):
                values[key], nested = check.check_all(given.get(key), where, (section, key))
                errors.extend(nested)
                continue
            values[key] = (run(check, given[key], (section, key), check.default)
                           if key in given else check.default)
        plain[section] = values
    plain["services"] = _services(data.get("services"), plain["mandatory"], run, where, errors)
    if not errors:
        for section, key, problem in _cross_checks(plain):
            errors.append((where((section, key)), f"{section}.{key} {problem}"))
    for section in SCHEMA:
        plain[section] = {RENAMED.get((section, k), k): v for k, v in plain[section].items()}
    return plain, errors


def defaults() -> Policy:
    """The policy when no file is given: every key at its default."""
    return build(validate({})[0])


def _services(given: object, mandatory: dict[str, Any], run: Callable[..., Any],
              where: Callable[[tuple[str, ...]], int],
              errors: list[tuple[int, str]]) -> dict[str, dict[str, Any]]:
    """``services``: {name: {key: value}}, each name a PAM service file name."""
    import re

    if given is None:
        return {}
    if type(given) is not dict:
        errors.append((where(("services",)), "services must be a mapping of PAM service names"))
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, rules in given.items():
        path = ("services", name)
        if name in NOT_A_SERVICE or not re.fullmatch(SERVICE_NAME, name):
            why = NOT_A_SERVICE.get(name) or (
                f"libpam lowers service names: write {name.lower()}"
                if re.fullmatch(SERVICE_NAME, name.lower()) else
                "not a PAM service file name (letters a-z, digits, and _ . + - after the first)")
            errors.append((where(path), f"services: {name!r}: {why}"))
            continue
        if rules is None:
            rules = {}
        if type(rules) is not dict:
            errors.append((where(path), f"services.{name} must be a mapping"))
            continue
        for key in rules:
            if key not in SERVICE:
                errors.append((where((*path, key)), f"unknown key services.{name}.{key} "
                                                    f"(known: {', '.join(SERVICE)})"))
        values: dict[str, Any] = {}
        for key, check in SERVICE.items():
            if isinstance(check, Overrides):
                values[key] = _overrides(rules.get(key), mandatory, (*path, key), run, where,
                                         errors)
            else:
                values[key] = (run(check, rules[key], (*path, key), check.default)
                               if key in rules else check.default)
        out[name] = values
    return out


def _overrides(given: object, top: dict[str, Any], path: tuple[str, ...],
               run: Callable[..., Any], where: Callable[[tuple[str, ...]], int],
               errors: list[tuple[int, str]]) -> dict[str, Any] | None:
    """The top-level ``mandatory`` with the keys ``given`` replaced; None when not given."""
    if given is None:
        return None
    label = ".".join(path)
    if type(given) is not dict:
        errors.append((where(path), f"{label} must be a mapping (keys of mandatory)"))
        return None
    checks = SCHEMA["mandatory"][1]
    values = dict(top)
    for key in given:
        if key not in checks:
            errors.append((where((*path, key)), f"unknown key {label}.{key} "
                                                f"(known: {', '.join(checks)})"))
        else:
            values[key] = run(checks[key], given[key], (*path, key), checks[key].default)
    return values
