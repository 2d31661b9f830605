"""The one log sink of pam-twofa: authpriv lines for the PAM module and the CLIs.

Lines go straight to the syslog socket as datagrams. ``syslog.openlog`` is never
called: it is process-wide and would change sshd's or sudo's own log identity.
``logging.handlers`` is not used either: it costs ~3.6 ms per login to import,
more than the module's whole budget. ``_socket`` is the C core of ``socket``
(``socket`` itself costs 2.3 ms for wrappers we do not need).

Lines are stable for fail2ban and greps, e.g.::

    pam_twofa(sshd:auth): user=alice rhost=203.0.113.7 result=refused reason=bad-code

Values are escaped so a hostile user name cannot forge a field or a line; codes
and secrets are never passed here.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import time

AUTHPRIV = 10 << 3
ERR, WARNING, NOTICE, INFO, DEBUG = 3, 4, 5, 6, 7

# Syslog tags of our own programs. The kernel keeps 15 characters of a process name
# (so "twofa-enroll-service" was logged as "twofa-enroll-se") and RFC 3164 readers
# expect short tags: ours are fixed names of at most MAX_TAG characters. The PAM
# module logs under its host program's name (sshd, sudo), as C modules do.
MAX_TAG = 15
TAG_ADMIN = "twofa-admin"  # twofa-admin's audit lines
TAG_ENROLL_SERVICE = "twofa-enrolld"  # twofa-enroll-service (also its unit's identifier)
TAG_CLOCKCHECK = "twofa-clock"  # twofa-clockcheck's unit (SyslogIdentifier=)
TAG_FLEETD = "twofa-fleetd"  # twofa-fleetd's unit (SyslogIdentifier=; it logs to stderr)
TAGS = (TAG_ADMIN, TAG_ENROLL_SERVICE, TAG_CLOCKCHECK, TAG_FLEETD)

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@+:/[]")


def _hex(c: str) -> str:
    """``\\xHH`` for each byte of ``c``; a surrogate-escaped byte (input that was not
    UTF-8) as the byte it stands for."""
    try:
        raw = c.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        raw = c.encode("utf-8", "backslashreplace")
    return "".join(f"\\x{b:02x}" for b in raw)


def escape(value: object) -> str:
    """A value as one token: unsafe characters become ``\\xHH``; empty is ``-``."""
    text = str(value)
    if not text:
        return "-"
    if all(c in _SAFE for c in text):
        return text
    return "".join(c if c in _SAFE else _hex(c) for c in text)


def clean(text: str) -> str:
    """Free text for the end of a line: printable ASCII kept, the rest ``\\xHH``."""
    return "".join(c if " " <= c <= "~" else _hex(c) for c in text)


def _ident() -> str:
    """The host program's name, as C modules' pam_syslog lines carry it."""
    try:
        with open("/proc/self/comm", encoding="utf-8", errors="replace") as f:
            name = f.read().strip()
    except OSError:
        name = ""
    return escape(name) if name else "pam_twofa"


class SyslogSink:
    """Sends authpriv lines to a syslog socket (``/dev/log`` by default).

    Sending never blocks a login for long (0.5 s timeout) and never raises: a
    lost log line is better than a hung or failed login.
    """

    def __init__(self, prefix: str, socket_path: str = "/dev/log", debug: bool = False,
                 tag: str | None = None) -> None:
        """``tag``: one of ``TAGS`` for our programs; None: the host program's name."""
        self.prefix = prefix
        self.socket_path = socket_path
        self.debug_enabled = debug
        self._sock: _socket.socket | None = None
        self._tag = f"{tag or _ident()}[{os.getpid()}]"

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
            sock.settimeout(0.5)
            sock.connect(self.socket_path)
            self._sock = sock
        self._sock.send(data)

    def log(self, priority: int, message: str, **fields: object) -> None:
        """Log ``message`` followed by ``key=value`` fields, escaped."""
        if priority == DEBUG and not self.debug_enabled:
            return
        parts = [f"{k}={escape(v)}" for k, v in fields.items() if v is not None]
        text = " ".join([f"{self.prefix}:", *parts, *([message] if message else [])])
        stamp = time.strftime("%b %d %H:%M:%S")
        line = f"<{AUTHPRIV | priority}>{stamp} {self._tag}: {text}"
        try:
            self._send(line.encode("utf-8", "replace"))
        except OSError:
            self.close()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
