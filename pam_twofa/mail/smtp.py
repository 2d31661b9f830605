"""The SMTP exchange behind ``mailer.send``, and the credentials it logs in with.

One deadline for all of smtplib.
Loaded only when a mail is sent (it imports smtplib, ssl and socket). Name
resolution runs in a helper thread joined with the time left; every socket
operation is re-armed with the time left; a watchdog timer shuts the socket down
at the deadline, which wakes a read blocked on a black-holed or trickling server.
Every failure leaves as ``MailError`` with its kind.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import socket
import ssl
import threading
import time

from pam_twofa.errors import MailError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from email.message import EmailMessage
    from typing import Any

    from pam_twofa.mail.mailer import Server


def resolve(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """getaddrinfo has no timeout of its own: run it in a daemon thread and wait at
    most ``timeout`` (a resolver stuck longer is abandoned)."""
    result: list[Any] = []

    def work() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=work, daemon=True, name="twofa-resolve")
    thread.start()
    thread.join(max(timeout, 0))
    if not result:
        raise MailError("timeout", f"resolving {host} took over the timeout")
    if isinstance(result[0], OSError):
        raise MailError("resolve", f"cannot resolve {host}: {result[0]}")
    return list(result[0])


class Session:
    """One SMTP exchange against a deadline; maps every failure to a kind."""

    def __init__(self, server: Server, deadline: float, helo: str) -> None:
        self.server = server
        self.deadline = deadline
        self.helo = helo  # our name (``mailer.hostname``): smtplib's getfqdn() asks DNS

    def left(self) -> float:
        """Seconds until the deadline; ``MailError(timeout)`` when none are left."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.timeout()
        return left

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def timeout(self) -> MailError:
        srv = self.server
        return MailError("timeout", f"{srv.host}:{srv.port} did not answer within "
                                    f"{srv.timeout:g} s")

    def context(self) -> ssl.SSLContext:
        """Always verifying: system CAs, or ``ca_file``; never a disabled check."""
        try:
            ctx = ssl.create_default_context(cafile=self.server.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise MailError("tls", f"cannot load ca_file {self.server.ca_file}: {exc}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def deliver(self, msg: EmailMessage) -> None:
        srv = self.server
        addrs = resolve(srv.host, srv.port, self.left())
        ctx = self.context() if srv.security != "none" else None
        client = Client(self, addrs, ctx)
        watchdog = threading.Timer(self.left(), client.abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            self._exchange(client, msg)
        except MailError as exc:
            if client.aborted and exc.kind != "timeout":
                raise self.timeout() from None
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError("auth", f"{srv.host} refused the login: {_reply(exc)}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailError("rejected", f"{srv.host} refused the recipient: "
                                        f"{_refused(exc)}") from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise MailError("rejected", f"{srv.host} refused the message: "
                                        f"{_reply(exc)}") from None
        except TimeoutError:
            raise self.timeout() from None
        except ssl.SSLError as exc:  # also CertificateError
            if client.aborted or self.over():
                raise self.timeout() from None
            raise MailError("tls", f"TLS with {srv.host} failed: {exc}") from None
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:
            # smtplib turns a read timeout into "Connection unexpectedly closed".
            if client.aborted or isinstance(exc.__context__, TimeoutError) or self.over():
                raise self.timeout() from None
            raise MailError("connect", f"{srv.host}:{srv.port}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            raise MailError("rejected", f"{srv.host}: {_reply(exc)}") from None
        except smtplib.SMTPException as exc:
            raise MailError("rejected", f"{srv.host}: {exc}") from None
        finally:
            watchdog.cancel()
            client.close()

    def _exchange(self, client: Client, msg: EmailMessage) -> None:
        srv = self.server
        code, banner = client.connect(srv.host, srv.port)
        if code != 220:
            raise MailError("connect", f"{srv.host} greeted with {code} {_text(banner)}")
        client.ehlo()
        if srv.security == "starttls":
            client.secure()
        if srv.username:
            self._login(client)
        client.send_message(msg)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()  # the message was accepted; a lost goodbye does not matter

    def _login(self, client: Client) -> None:
        srv = self.server
        user = srv.username or ""
        if srv.security == "none":
            raise MailError("auth", "refusing to send credentials without TLS (security: none)")
        if srv.auth == "xoauth2":
            token = run_token_command(srv.token_command or "", self.left())
            initial = f"user={user}\x01auth=Bearer {token}\x01\x01"
            # On failure the server sends a 334 JSON challenge; the answer is empty.
            client.auth("XOAUTH2", lambda challenge=None: "" if challenge else initial)
            return
        if not srv.password_file:
            raise MailError("auth", "smtp.username is set but smtp.password_file is not")
        password = read_secret_file(srv.password_file)
        try:
            client.login(user, password)
        except smtplib.SMTPNotSupportedError:
            raise MailError("auth", f"{srv.host} offers no AUTH") from None
        except smtplib.SMTPResponseException:
            raise
        except smtplib.SMTPException as exc:  # no common mechanism
            raise MailError("auth", f"{srv.host}: {exc}") from None


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _refused(exc: smtplib.SMTPRecipientsRefused) -> str:
    return "; ".join(f"{code} {_text(err)}" for code, err in exc.recipients.values())


class Client(smtplib.SMTP):
    """smtplib.SMTP that connects to the resolved addresses and re-arms every socket
    operation with the session's time left."""

    def __init__(self, session: Session, addrs: list[tuple[Any, ...]],
                 ctx: ssl.SSLContext | None) -> None:
        # local_hostname given: smtplib would otherwise call getfqdn() (DNS, no timeout).
        super().__init__(local_hostname=session.helo, timeout=session.server.timeout)
        self.session = session
        self.addrs = addrs
        self.ctx = ctx
        self.aborted = False
        self._live: socket.socket | None = None  # the socket a watchdog must shut down
        self._lock = threading.Lock()

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        error: OSError | None = None
        for family, kind, proto, _name, addr in self.addrs:
            sock = socket.socket(family, kind, proto)
            self._track(sock)
            try:
                sock.settimeout(self.session.left())
                sock.connect(addr)
                break
            except OSError as exc:
                sock.close()
                if isinstance(exc, TimeoutError) or self.aborted:
                    raise
                error = exc
        else:
            raise error or OSError(f"no address for {host}")
        if self.session.server.security == "ssl":
            return self._wrap(sock)
        return sock

    def _wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        assert self.ctx is not None
        tls = self.ctx.wrap_socket(sock, server_hostname=self.session.server.host,
                                   do_handshake_on_connect=False)
        self._track(tls)
        tls.settimeout(self.session.left())
        tls.do_handshake()
        return tls

    def secure(self) -> None:
        """STARTTLS, required: a server that does not offer it is refused (no downgrade)."""
        if not self.has_extn("starttls"):
            raise MailError("tls", f"{self.session.server.host} does not offer STARTTLS")
        code, reply = self.docmd("STARTTLS")
        if code != 220:
            raise MailError("tls", f"STARTTLS refused: {code} {_text(reply)}")
        assert self.sock is not None
        self.sock = self._wrap(self.sock)
        self.file = None
        self.helo_resp = self.ehlo_resp = None
        self.esmtp_features = {}
        self.does_esmtp = False
        self.ehlo()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._live = sock
            if self.aborted:
                _shutdown(sock)

    def _arm(self) -> None:
        left = self.session.left()
        if self.sock is not None:
            self.sock.settimeout(left)

    def putcmd(self, cmd: str, args: str = "") -> None:
        self._arm()
        super().putcmd(cmd, args)

    def getreply(self) -> tuple[int, bytes]:
        self._arm()
        return super().getreply()

    def send(self, s: Any) -> None:
        self._arm()
        super().send(s)

    def abort(self) -> None:
        """From the watchdog: shut the live socket down to wake any blocked call."""
        with self._lock:
            self.aborted = True
            if self._live is not None:
                _shutdown(self._live)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket call, also on an SSLSocket: no TLS teardown from this thread.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


# Credentials: root-only files and programs named in the policy.

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
