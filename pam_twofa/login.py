"""The shared vocabulary of a login: request, decision, conversation, notices, messages.

Features (trust, emergency, inline, verify) and the faces import these from here,
never from ``core``: core imports features, features never import core, so there is
no cycle. Also here, because the login needs them and nothing heavier should come
with them: the ``Clock`` (time passed in; ``clock`` re-exports it for the tools),
the user's ``Account`` from NSS (``lookup``) and the user-name rule
(``validate_user_name``), which every store and face applies before a name becomes
a path or a key. One module rather than four: each module a login loads costs it
~0.1 ms inside pam_python (tests/test_login_imports.py pins the count).
"""

from __future__ import annotations

import os
import time

from pam_twofa.errors import InvalidUserName
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pam_twofa.policy import Policy
    from pam_twofa.verify import Verdict

CODE_PROMPT = "Verification code: "
MSG_WRONG = "Wrong verification code."
MSG_UNAVAILABLE = "Two-factor authentication is unavailable; contact your administrator."
MSG_REPLAY = "That code was already used; wait for the next one."
MSG_EMPTY = "No verification code was entered."
MSG_SUSPENDED = ("Two-factor authentication is suspended for your account after too many "
                 "wrong codes; ask your administrator to unlock it.")
MSG_BUSY = "Another login to your account is in progress; try again in a moment."
MSG_CLOCK = "The server clock may be off; tell your administrator."
MSG_OFFLINE = ("Two-factor authentication is unavailable: the fleet database cannot be "
               "reached. Try again later or contact your administrator.")

class Clock:
    """The source of "now" (seconds since the epoch, UTC): the core never reads the
    system clock itself. What the last clock check measured is not the clock's
    business: it comes to the core as a ``ClockHint``."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FixedClock(Clock):
    """A clock that only moves when told to: for tests and tools."""

    def __init__(self, now: float) -> None:
        self._now = float(now)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def sleep(self, seconds: float) -> None:
        self._now += seconds


def format_time(epoch: float) -> str:
    """A local time for messages: ``2026-12-01 14:05:00 UTC``-style, no datetime import."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


# Every file made from a name (the longest is the temp file ".NAME.json.tmp") must
# fit NAME_MAX (255 bytes), with room to spare; a name whose file cannot exist would
# fail as an internal error (which failmode safe turns into PAM_IGNORE).
MAX_NAME_BYTES = 228


def validate_user_name(name: str) -> str:
    """Return ``name`` if it can safely become a file name (or a row key), else raise.

    Refused: empty, over ``MAX_NAME_BYTES`` (228) bytes, ``/``, NUL or any control
    character, and a leading dot (``.``/``..`` and our own temp files).
    """
    if not isinstance(name, str) or not name:
        raise InvalidUserName("empty user name")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidUserName("user name is not valid UTF-8") from None
    if len(raw) > MAX_NAME_BYTES:
        raise InvalidUserName(f"user name longer than {MAX_NAME_BYTES} bytes")
    if "/" in name or name.startswith("."):
        raise InvalidUserName("user name with '/' or a leading '.'")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InvalidUserName("user name with a control character")
    return name


class Account(Record):
    """A user known to NSS, with the names of every group it belongs to."""

    name: str
    uid: int
    gid: int
    home: str
    groups: frozenset[str]


def lookup(name: str) -> Account | None:
    """The account called ``name``, or None when NSS does not know it.

    Only the user's own groups are looked up (``os.getgrouplist``), never every
    group on the system: a policy listing 10,000 groups costs the same as one.
    """
    import grp
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except (KeyError, ValueError, OverflowError):
        return None
    try:
        gids = os.getgrouplist(name, pw.pw_gid)
    except OSError:
        gids = [pw.pw_gid]
    groups = set()
    for gid in gids:
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except (KeyError, OverflowError):
            continue
    return Account(
        name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, home=pw.pw_dir, groups=frozenset(groups)
    )


def email_held_until(policy: Policy, changed_at: float | None, now: float) -> float | None:
    """When emergency codes by mail come back after the user changed the address, or
    None (the rule for the login, the service and the tools alike).

    Whoever runs code as the user and knows one TOTP code could otherwise name their
    own address and keep a way in; the hold gives the owner (told at the old address)
    ``after_email_change_hours`` to notice.
    """
    if changed_at is None:
        return None
    until = changed_at + policy.emergency.after_email_change_hours * 3600.0
    return until if now < until else None


def offers_email(policy: Policy, has_email: bool) -> bool:
    """Whether the code prompt may offer an emergency code by mail (before the hold):
    a verified address, the switch on and a server named. No mail module loads."""
    return bool(has_email and policy.emergency.enabled and policy.smtp.sends())


class LoginView(Record):
    """A user as a login sees them before asking anything: no secret, code or hash."""

    enrolled: bool = False
    digits: int = 6  # the code length (single-prompt mode splits the answer with it)
    email: bool = False  # a verified security email is set
    email_changed_at: float | None = None  # emergency codes are held for a while after
    first_seen: float | None = None  # the grace period's start
    enrolled_at: float | None = None
    locked_until: float = 0  # the end of the last lock (past: not locked)
    suspended: bool = False  # lockout.max_consecutive_failures reached: until unlocked
    trusted: bool = False  # a live trusted-device record matches the binding given


class Outcome:
    """What a decision means for PAM (plain strings: an Enum costs ~0.2 ms a login)."""

    SUCCESS = "success"  # the second factor was proven
    IGNORE = "ignored"  # this module has no say (not in scope, or in grace)
    REFUSE = "refused"  # the login must fail


class Decision(Record):
    outcome: str  # an Outcome value
    reason: str  # stable token for the log line
    fields: tuple[tuple[str, Any], ...] = ()  # extra log fields, never secrets


class Conversation:
    """How the core talks to the user; the PAM face wraps pamh.conversation."""

    def ask(self, prompt: str, echo: bool = False) -> str | None:
        """The user's answer, or None when there is none (no terminal, error)."""
        raise NotImplementedError

    def info(self, text: str) -> None:
        """A message to the user (suppressed under PAM_SILENT)."""

    def error(self, text: str) -> None:
        """An error message to the user (suppressed under PAM_SILENT)."""


def client_of(ssh_connection: str | None, rhost: str | None) -> str | None:
    """The client's address as given: the first field of SSH_CONNECTION (which sshd
    puts in the PAM environment: the peer of the TCP connection), else PAM_RHOST
    (what the program says; under sshd with UseDNS it may be a name)."""
    if ssh_connection:
        return ssh_connection.split(" ", 1)[0]
    return rhost


_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def ip_address(text: str | None) -> tuple[str, int] | None:
    """(canonical text, value in the IPv6 space) of an IP address, else None.

    Strict (inet_pton): no DNS name, no shorthand like 10.1, no leading zeros, no
    zone index. A v4-mapped IPv6 address is the IPv4 address (the text too).
    """
    if not text:
        return None
    import _socket

    text = text.strip()
    family = _socket.AF_INET6 if ":" in text else _socket.AF_INET
    try:
        packed = _socket.inet_pton(family, text)
    except (OSError, ValueError):
        return None
    if family == _socket.AF_INET:
        packed = _V4_MAPPED + packed
    if packed[:12] == _V4_MAPPED:
        shown = str(_socket.inet_ntop(_socket.AF_INET, packed[12:]))
    else:
        shown = str(_socket.inet_ntop(_socket.AF_INET6, packed))
    return shown, int.from_bytes(packed, "big")


class Request(Record):
    user: str
    account: Account | None  # None: NSS does not know the user
    conversation: Conversation
    service: str = ""
    rhost: str | None = None
    ssh_connection: str | None = None  # "client_ip client_port server_ip server_port"
    ssh_auth_info: str | None = None  # SSH_AUTH_INFO_0: completed methods
    code: str | None = None  # already given (single-prompt mode): do not ask

    def client(self) -> str | None:
        """The client's address as given (``client_of``): for notices and rules."""
        return client_of(self.ssh_connection, self.rhost)


class Notifier:
    """Where the decision's notices go: mail to the security email in production
    (``notify.MailNotifier``), a recorder in tests. This base sends nothing.

    ``event`` is one of ``EVENTS``; ``facts`` are the keyword arguments of the
    matching ``notify`` function (client, now, until, device). Returns whether a
    notice went out; never raises (a notice must not fail a login).
    """

    EVENTS = ("locked_out", "suspended", "device_trusted", "emergency_code_used")

    def notice(self, event: str, user: str, address: str, **facts: Any) -> bool:
        return False

    def send_code(self, user: str, address: str, code: str, *, minutes: int,
                  client: str | None, now: float) -> tuple[bool, str]:
        """Mail an emergency code: (True, the address masked for the user) when sent,
        else (False, the failure's reason token, ``mail-timeout``, ...). Never raises."""
        return False, "mail-not-configured"


def lock_notices(request: Request, user: str, verdict: Verdict, notifier: Notifier,
                 now: float) -> tuple[tuple[str, Any], ...]:
    """Tell the owner that a wrong answer locked or suspended them; the log field."""
    if not (verdict.locked is not None or verdict.suspended) or not verdict.email:
        return ()
    client = request.client()
    if verdict.suspended:
        sent = notifier.notice("suspended", user, verdict.email, client=client, now=now)
    else:
        sent = notifier.notice("locked_out", user, verdict.email, client=client, now=now,
                               until=verdict.locked or now)
    return (("notified", "yes" if sent else "no"),)


class ClockHint:
    """What the last clock check measured, for the hint "server clock may be off".

    Production reads twofa-clockcheck's status file (``clockstatus.FileHint``), and
    only on a refused code; this base knows nothing. Never widens a window.
    """

    def offset_beyond(self, covered: float, now: float) -> float | None:
        """The measured offset if it is over ``covered`` seconds, else None."""
        return None
