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

from pam_twofa.errors import TwofaError
from pam_twofa.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from email.message import EmailMessage

    from pam_twofa.policy import SmtpPolicy

KINDS = ("resolve", "connect", "tls", "auth", "rejected", "timeout")
PROVIDERS = {"gmail": "smtp.gmail.com", "outlook": "smtp.office365.com"}
DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_ADDRESS = 254


class MailError(TwofaError):
    """A mail could not be sent; ``kind`` is one of ``KINDS``."""

    exit_name = "FAILED"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.reason = f"mail-{kind}"


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

    from pam_twofa import smtpclient

    deadline = time.monotonic() + server.timeout
    msg = message(server, check_address(to), subject, body)
    smtpclient.Session(server, deadline).deliver(msg)


def _check_parents(path: str, what: str) -> None:
    """Every directory above ``path`` is ours or root's and writable by nobody else
    (a sticky root-owned one excepted): else another user could swap the file."""
    from pam_twofa import pathsafety

    def error(message: str) -> MailError:
        return MailError("auth", message)

    pathsafety.check_parents(path, os.geteuid(), what, error)


def read_secret_file(path: str) -> str:
    """The first line of a root-only file (owner = our euid, no group/other bits) in
    directories nobody else can change."""
    import stat

    _check_parents(path, "password_file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise MailError("auth", f"cannot open password_file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        _check_root_only(st, "password_file", path)
        if not stat.S_ISREG(st.st_mode):
            raise MailError("auth", f"password_file {path} is not a regular file")
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    secret = data.decode("utf-8", "replace").split("\n", 1)[0].rstrip("\r")
    if not secret:
        raise MailError("auth", f"password_file {path} is empty")
    return secret


def _check_root_only(st: os.stat_result, what: str, path: str) -> None:
    if st.st_uid != os.geteuid():
        raise MailError("auth", f"{what} {path} is owned by uid {st.st_uid}, "
                                f"not {os.geteuid()}")
    if st.st_mode & 0o077:
        raise MailError("auth", f"{what} {path} has mode {st.st_mode & 0o777:o}: "
                                "it must not be open to group or others")


def run_token_command(command: str, timeout: float) -> str:
    """The OAuth2 access token printed by a root-only command (no shell, bounded)."""
    import shlex
    import subprocess

    argv = shlex.split(command)
    if not argv or not argv[0].startswith("/"):
        raise MailError("auth", "token_command must start with an absolute path")
    try:
        st = os.stat(argv[0])
    except OSError as exc:
        raise MailError("auth", f"token_command {argv[0]}: {exc.strerror}") from None
    _check_root_only(st, "token_command", argv[0])
    _check_parents(argv[0], "token_command")
    _check_parents(os.path.realpath(argv[0]), "token_command")  # where a link leads
    if timeout <= 0:
        raise MailError("timeout", "no time left to run token_command")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False, close_fds=True,
                              env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"})
    except subprocess.TimeoutExpired:
        raise MailError("timeout", f"token_command ran over {timeout:.1f} s") from None
    except OSError as exc:
        raise MailError("auth", f"cannot run token_command: {exc.strerror}") from None
    token = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not token or any(c.isspace() for c in token):
        raise MailError("auth", f"token_command failed (exit {done.returncode})")
    return token
