"""A real SMTP server on loopback for tests: aiosmtpd in a thread, TLS from a per-run CA.

``MailServer`` speaks STARTTLS, implicit TLS or plain SMTP, offers AUTH PLAIN/LOGIN
(checked against ``users``) and XOAUTH2 (a handler ``auth_XOAUTH2`` method checked
against ``tokens``), refuses recipients containing ``reject``, and keeps every
accepted message. ``black_hole()`` is a listening socket that never answers (the
kernel completes the handshake, nobody reads); ``closed_port()`` has no listener.

Ports: the kernel's pick (bind to port 0). A port picked and released may be taken by
someone else (another test run) before the server binds it: ``MailServer`` then starts
again on another; ``closed_port`` keeps its port bound (never listening) so nobody can.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.harness.proctree import free_port

__all__ = ["CertAuthority", "MailServer", "Received", "black_hole", "closed_port", "free_port"]


_HELD: list[socket.socket] = []  # closed_port()'s sockets, bound for the whole run
START_ATTEMPTS = 3


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port whose TCP handshake succeeds and which then never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def closed_port() -> int:
    """A loopback port with no listener (connections are refused): bound by a socket
    that never listens and stays open, so no other process can start listening there."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    login: str | None
    tls: bool

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())


@dataclass
class _Handler:
    tokens: dict[str, str]
    received: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if "reject" in address:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = session.auth_data
        login = data.login if isinstance(data, LoginPassword) else None
        got = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            raw=bytes(envelope.original_content or b""),
            login=login.decode() if isinstance(login, bytes) else login,
            tls=server.transport is not None
            and server.transport.get_extra_info("ssl_object") is not None,
        )
        with self.cond:
            self.received.append(got)
            self.cond.notify_all()
        return "250 2.0.0 accepted"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC-less but documented by Google: base64("user=U^Aauth=Bearer T^A^A")."""
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            text = base64.b64decode(args[1]).decode()
        except ValueError:
            return AuthResult(success=False, handled=False)
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        user = fields.get("user", "")
        if self.tokens.get(user) and fields.get("auth") == f"Bearer {self.tokens[user]}":
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        return AuthResult(success=False, handled=False)


class CertAuthority:
    """A CA made for this test run; ``ca_file`` is what the policy's smtp.ca_file names."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self, *names: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(*(names or ("localhost", "127.0.0.1"))).configure_cert(ctx)
        return ctx


class MailServer:
    """aiosmtpd on 127.0.0.1:<free port>; ``mode`` is starttls, ssl or none."""

    def __init__(self, tls: ssl.SSLContext | None, mode: str = "starttls",
                 users: dict[str, str] | None = None,
                 tokens: dict[str, str] | None = None,
                 mechanisms_excluded: tuple[str, ...] = ()) -> None:
        self.mode = mode
        self.users = dict(users or {})
        self.handler = _Handler(tokens=dict(tokens or {}))
        self.tls = tls
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_required": bool(self.users or self.handler.tokens),
            "auth_exclude_mechanism": list(mechanisms_excluded),
            # aiosmtpd only knows STARTTLS as TLS: with implicit TLS it would hide AUTH.
            "auth_require_tls": mode == "starttls",
        }
        if mode == "starttls":
            kwargs.update(tls_context=tls, require_starttls=True)
        self.server_kwargs = kwargs
        self.port = 0
        self.controller = self._controller()

    def _controller(self) -> Controller:
        """A controller on a newly picked free port (not started)."""
        self.port = free_port()
        return Controller(
            self.handler, hostname="127.0.0.1", port=self.port,
            ssl_context=self.tls if self.mode == "ssl" else None,
            server_kwargs=self.server_kwargs, ready_timeout=10,
        )

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.users.get(user) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def __enter__(self) -> MailServer:
        for attempt in range(START_ATTEMPTS):
            try:
                self.controller.start()
                return self
            except OSError:  # the port was taken after free_port() released it
                if attempt == START_ATTEMPTS - 1:
                    raise
                self.controller = self._controller()
        raise AssertionError("unreachable")

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        with self.handler.cond:
            return list(self.handler.received)

    def wait(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Block until ``count`` messages have arrived (bounded)."""
        deadline = time.monotonic() + timeout
        with self.handler.cond:
            while len(self.handler.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.handler.received)} of {count} mails "
                                         f"arrived within {timeout} s")
                self.handler.cond.wait(left)
            return list(self.handler.received)
