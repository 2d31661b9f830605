"""Sending one plain-text mail over SMTP, bounded by one deadline, failing clearly.

Used by emergency codes, address verification and notifications. Every failure is
a ``MailError`` whose ``kind`` says what went wrong: ``resolve`` (no address for the
host), ``connect`` (refused, unreachable, closed early), ``tls`` (no STARTTLS, or a
certificate that does not verify), ``auth`` (credentials refused or unusable),
``rejected`` (sender, recipient or message refused) or ``timeout``.

The whole exchange shares one deadline of ``smtp.timeout_seconds``: name resolution
runs in a helper thread joined with the time left, every socket operation gets the
time left as its timeout, and a watchdog shuts the socket down when the deadline
passes, so a black-holed or trickling server cannot stretch a login. TLS is always
verified (``ssl.create_default_context``); credentials are never sent without TLS.
Secrets come from a root-only ``password_file`` or ``token_command``, never from the
policy. smtplib, ssl and email load only when a mail is actually sent.
"""

from __future__ import annotations

import os

from pam_twofa.errors import MailError as MailError  # re-exported: callers catch mailer.MailError
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from email.message import EmailMessage

    from pam_twofa.policy import SmtpPolicy

PROVIDERS = {"gmail": "smtp.gmail.com", "outlook": "smtp.office365.com"}
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
MAX_ADDRESS = 254


class Server(Record):
    """Where and how to send, with the provider presets applied."""

    host: str
    port: int
    security: str  # starttls | ssl | none
    username: str | None
    password_file: str | None
    auth: str  # password | xoauth2
    token_command: str | None
    ca_file: str | None
    sender: str
    timeout: float


def configured(smtp: SmtpPolicy) -> bool:
    """Whether the policy names a server to send through (``SmtpPolicy.sends``: the
    login asks the policy, without this module)."""
    return smtp.sends()


def server(smtp: SmtpPolicy) -> Server:
    """The policy's ``smtp`` section with gmail/outlook presets filled in."""
    if smtp.provider in PROVIDERS:
        host: str | None = smtp.host or PROVIDERS[smtp.provider]
        security = "starttls"
        port = smtp.port or 587
    else:
        host = smtp.host
        security = smtp.security
        port = smtp.port or DEFAULT_PORTS[security]
    if not host:
        from pam_twofa.errors import PolicyError

        raise PolicyError("no SMTP server is configured: set smtp.host (or smtp.provider)")
    return Server(host=host, port=port, security=security, username=smtp.username,
                  password_file=smtp.password_file, auth=smtp.auth,
                  token_command=smtp.token_command, ca_file=smtp.ca_file,
                  sender=smtp.sender or f"pam-twofa@{hostname()}",
                  timeout=float(smtp.timeout_seconds))


def hostname() -> str:
    """This host's name without DNS (``socket.getfqdn`` may hang on a dead resolver)."""
    name = os.uname().nodename
    ok = name and name.isascii() and name.isprintable() and " " not in name
    return name if ok and not name.startswith(".") else "localhost"


def check_address(address: str) -> str:
    """A plausible single mailbox ``local@domain``; refuses anything that could
    inject a header or a second recipient, and every control or format character
    (C0, DEL, C1, bidi and zero-width marks: ``str.isprintable`` is false for all of
    them). A dotless domain (``user@localhost``, a site's own mail host) is fine."""
    from pam_twofa.errors import UsageError

    text = address.strip() if isinstance(address, str) else ""
    local, at, domain = text.rpartition("@")
    bad = (not at or not local or not domain or len(text) > MAX_ADDRESS
           or not text.isprintable()
           or any(c.isspace() or c in ',;<>()[]\\"' for c in text)
           or "@" in local or domain.startswith(".") or domain.endswith(".")
           or ".." in domain)
    if bad:
        raise UsageError(f"not a valid email address: {address!r}")
    return text


def mask(address: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: enough to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def message(server: Server, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text message with Date, Message-ID, From, To and Subject."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    msg = EmailMessage()
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=hostname())  # domain given: no DNS lookup
    msg["From"] = server.sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def send(server: Server, to: str, subject: str, body: str) -> None:
    """Send one message, or raise ``MailError`` within ``server.timeout`` (+ scheduling)."""
    import time

    from pam_twofa.mail import smtp

    deadline = time.monotonic() + server.timeout
    msg = message(server, check_address(to), subject, body)
    smtp.Session(server, deadline, hostname()).deliver(msg)
