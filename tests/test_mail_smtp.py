"""The mailer against a real SMTP server (aiosmtpd on loopback) with a per-run CA:
STARTTLS and implicit TLS, AUTH PLAIN/LOGIN, XOAUTH2 from a token_command, and every
failure kind, including the deadline against black-holed and trickling servers."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa.errors import UsageError
from pam_twofa.mail import mailer
from pam_twofa.policy import SmtpPolicy
from tests.harness.pamenv import PamEnv
from tests.harness.smtpd import CertAuthority, MailServer, black_hole, closed_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TIMEOUT = 2  # smtp.timeout_seconds in these tests
SLACK = 2.0  # the bound: refused within timeout_seconds + 2 s
TO = "alice@example.com"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "smtp-password"
    path.write_text("hunter2\n")
    path.chmod(0o600)
    return path


def smtp(ca: CertAuthority, **changes: object) -> mailer.Server:
    values: dict[str, object] = {
        "provider": "custom", "host": "localhost", "port": None, "security": "starttls",
        "username": None, "password_file": None, "auth": "password", "token_command": None,
        "ca_file": str(ca.ca_file), "sender": "twofa@test.example", "timeout_seconds": TIMEOUT,
    }
    values.update(changes)
    return mailer.server(SmtpPolicy(**values))  # type: ignore[arg-type]


def fails(server: mailer.Server, to: str = TO) -> mailer.MailError:
    with pytest.raises(mailer.MailError) as info:
        mailer.send(server, to, "test", "body")
    return info.value


@pytest.fixture
def starttls(ca: CertAuthority) -> Iterator[MailServer]:
    with MailServer(ca.server_context(), "starttls", users={"bob": "hunter2"}) as srv:
        yield srv


# ----------------------------------------------------------------------------- success
@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_tls_modes_with_auth_plain(ca: CertAuthority, password_file: Path, mode: str) -> None:
    with MailServer(ca.server_context(), mode, users={"bob": "hunter2"}) as srv:
        mailer.send(smtp(ca, port=srv.port, security=mode, username="bob",
                         password_file=str(password_file)), TO, "Hello", "line one\n")
        got = srv.wait(1)[0]
    assert got.tls is True
    assert got.login == "bob"
    assert got.rcpt_tos == [TO]
    assert got.mail_from == "twofa@test.example"
    msg = got.message
    for header in ("Date", "Message-ID", "From", "To", "Subject"):
        assert msg[header], header
    assert msg["From"] == "twofa@test.example" and msg["To"] == TO
    assert msg["Subject"] == "Hello"
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith(">")
    assert msg.get_content_type() == "text/plain"
    assert got.body.rstrip("\r\n") == "line one"


def test_auth_login_mechanism(ca: CertAuthority, password_file: Path) -> None:
    with MailServer(ca.server_context(), "starttls", users={"bob": "hunter2"},
                    mechanisms_excluded=("PLAIN",)) as srv:
        mailer.send(smtp(ca, port=srv.port, username="bob", password_file=str(password_file)),
                    TO, "s", "b")
        assert srv.wait(1)[0].login == "bob"


def test_xoauth2_token_command(ca: CertAuthority, tmp_path: Path) -> None:
    command = tmp_path / "token"
    command.write_text("#!/bin/sh\necho tok-123\n")
    command.chmod(0o700)
    with MailServer(ca.server_context(), "starttls", tokens={"bob@example.com": "tok-123"}) as srv:
        server = smtp(ca, port=srv.port, username="bob@example.com", auth="xoauth2",
                      token_command=str(command))
        mailer.send(server, TO, "s", "b")
        assert srv.wait(1)[0].login == "bob@example.com"
        command.write_text("#!/bin/sh\necho wrong-token\n")
        assert fails(server).kind == "auth"
        command.chmod(0o755)  # readable by others: refused before it runs
        err = fails(server)
        assert err.kind == "auth" and "mode 755" in err.message
        assert len(srv.received) == 1


def test_providers_fill_host_port_and_starttls() -> None:
    base = {"host": None, "port": None, "security": "none", "username": None,
            "password_file": None, "auth": "password", "token_command": None,
            "ca_file": None, "sender": None, "timeout_seconds": 10}
    gmail = mailer.server(SmtpPolicy(provider="gmail", **base))  # type: ignore[arg-type]
    outlook = mailer.server(SmtpPolicy(provider="outlook", **base))  # type: ignore[arg-type]
    assert (gmail.host, gmail.port, gmail.security) == ("smtp.gmail.com", 587, "starttls")
    assert (outlook.host, outlook.port, outlook.security) == ("smtp.office365.com", 587,
                                                              "starttls")
    assert gmail.sender == f"pam-twofa@{mailer.hostname()}"
    assert not mailer.configured(SmtpPolicy(provider="custom", **base))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- failure kinds
def test_untrusted_certificate_is_refused(tmp_path: Path, password_file: Path,
                                          ca: CertAuthority) -> None:
    other = CertAuthority(tmp_path)  # the server's CA is not the one we trust
    for mode in ("starttls", "ssl"):
        with MailServer(other.server_context(), mode, users={"bob": "hunter2"}) as srv:
            err = fails(smtp(ca, port=srv.port, security=mode, username="bob",
                             password_file=str(password_file)))
            assert err.kind == "tls", err
            assert "CERTIFICATE_VERIFY_FAILED" in err.message
            assert srv.received == []


def test_certificate_for_another_name_is_refused(ca: CertAuthority) -> None:
    with MailServer(ca.server_context("mail.example.org"), "starttls") as srv:
        err = fails(smtp(ca, port=srv.port))
        assert err.kind == "tls" and "match" in err.message.lower(), err
        assert srv.received == []


def test_no_starttls_offered_is_refused(ca: CertAuthority) -> None:
    with MailServer(None, "none") as srv:
        err = fails(smtp(ca, port=srv.port))
        assert err.kind == "tls" and "STARTTLS" in err.message
        mailer.send(smtp(ca, port=srv.port, security="none"), TO, "s", "b")  # plain allowed
        assert len(srv.wait(1)) == 1


def test_no_credentials_without_tls(ca: CertAuthority, password_file: Path) -> None:
    with MailServer(None, "none") as srv:
        err = fails(smtp(ca, port=srv.port, security="none", username="bob",
                         password_file=str(password_file)))
        assert err.kind == "auth" and "without TLS" in err.message


def test_wrong_password_and_unsafe_password_file(starttls: MailServer,
                                                 ca: CertAuthority, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    wrong.chmod(0o600)
    err = fails(smtp(ca, port=starttls.port, username="bob", password_file=str(wrong)))
    assert err.kind == "auth" and "535" in err.message
    wrong.write_text("hunter2\n")
    wrong.chmod(0o640)  # group-readable: refused, never sent
    err = fails(smtp(ca, port=starttls.port, username="bob", password_file=str(wrong)))
    assert err.kind == "auth" and "mode 640" in err.message
    assert starttls.received == []


def test_rejected_recipient(starttls: MailServer, ca: CertAuthority,
                            password_file: Path) -> None:
    err = fails(smtp(ca, port=starttls.port, username="bob", password_file=str(password_file)),
                to="reject-me@example.com")
    assert err.kind == "rejected" and "550" in err.message


def test_closed_port_is_connect(ca: CertAuthority) -> None:
    started = time.monotonic()
    err = fails(smtp(ca, port=closed_port()))
    assert err.kind == "connect", err
    assert time.monotonic() - started < TIMEOUT + SLACK


def test_black_hole_times_out_within_bound(ca: CertAuthority) -> None:
    with black_hole() as port:
        started = time.monotonic()
        err = fails(smtp(ca, port=port))
        elapsed = time.monotonic() - started
    assert err.kind == "timeout", err
    assert TIMEOUT - 0.2 <= elapsed < TIMEOUT + SLACK, elapsed


def test_trickling_server_cannot_stretch_the_deadline(ca: CertAuthority) -> None:
    """One byte every 0.3 s: each read succeeds, so only a total deadline stops it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            for byte in b"220-" + b"x" * 200:
                if stop.wait(0.3):
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return

    worker = threading.Thread(target=trickle, daemon=True)
    worker.start()
    try:
        started = time.monotonic()
        err = fails(smtp(ca, port=listener.getsockname()[1]))
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
        worker.join(5)
    assert err.kind == "timeout", err
    assert elapsed < TIMEOUT + SLACK, elapsed


def test_addresses() -> None:
    assert mailer.check_address(" alice@example.com ") == "alice@example.com"
    assert mailer.check_address("a@b") == "a@b"  # a dotless domain (issue 12 item 10)
    for bad in ("alice", "@example.com", "alice@", "a@.b", "a b@example.com",
                "a@example.com\nBcc: x@y.z", "a@example.com,b@example.com", "<a@example.com>"):
        with pytest.raises(UsageError):
            mailer.check_address(bad)
    assert mailer.mask("alice@example.com") == "a***@example.com"


# ----------------------------------------------------------------------------- twofa-admin
def test_admin_mail_test_reports_each_kind(pam_env: PamEnv, ca: CertAuthority,
                                           password_file: Path) -> None:
    hosts = pam_env.root / "hosts"
    hosts.write_text("127.0.0.1 mail.test\n")
    env = {"NSS_WRAPPER_HOSTS": os.fspath(hosts)}

    def policy(host: str, port: int, **extra: str) -> None:
        keys = {"host": host, "port": str(port), "ca_file": str(ca.ca_file),
                "timeout_seconds": str(TIMEOUT), "from": "twofa@test.example", **extra}
        pam_env.write_policy("smtp:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items()))

    def mail_test() -> dict[str, object]:
        done = pam_env.admin("mail-test", TO, "--json", env=env)
        report: dict[str, object] = json.loads(done.stdout)
        assert done.returncode == (0 if report["ok"] else 1), done
        return report

    with MailServer(ca.server_context("mail.test"), "starttls", users={"bob": "hunter2"}) as srv:
        policy("mail.test", srv.port, username="bob", password_file=str(password_file))
        assert mail_test()["ok"] is True
        assert srv.wait(1)[0].message["Subject"] == "pam-twofa test mail"
        done = pam_env.admin("mail-test", TO, env=env)
        assert done.returncode == 0 and f"sent to {TO} via mail.test:{srv.port}" in done.stdout
        policy("nope.test", srv.port)
        assert mail_test()["kind"] == "resolve"
        policy("mail.test", srv.port, username="bob", password_file=str(password_file),
               ca_file="/etc/ssl/certs/ca-certificates.crt")
        assert mail_test()["kind"] == "tls"
        policy("mail.test", srv.port, username="eve", password_file=str(password_file))
        assert mail_test()["kind"] == "auth"
    policy("mail.test", closed_port())
    assert mail_test()["kind"] == "connect"
    with black_hole() as port:
        policy("mail.test", port)
        report = mail_test()
        assert report["kind"] == "timeout"
        assert isinstance(report["seconds"], float) and report["seconds"] < TIMEOUT + SLACK
        done = pam_env.admin("mail-test", TO, env=env)
        assert done.returncode == 1 and "failure: timeout" in done.stderr
