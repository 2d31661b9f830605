"""Issue 11 finding 8 (last bullet): ``smtp.password_file`` and ``token_command`` are
trusted only if nobody but root (or the file's owner) can change a directory above
them. A real SMTP server (aiosmtpd) and the real mailer: an unsafe path is refused
before any credential is sent and before the command runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pam_twofa.mail import mailer
from tests.harness.smtpd import CertAuthority, MailServer
from tests.test_mail_smtp import fails, smtp

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

OTHER_UID = 4242  # not root: a local user


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("ca"))


def secret_in(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "smtp-password"
    path.write_text("hunter2\n")
    path.chmod(0o600)  # the file itself is root's and root-only: only its parents differ
    return path


def token_in(directory: Path, marker: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "token"
    path.write_text(f"#!/bin/sh\ntouch {marker}\necho tok-123\n")
    path.chmod(0o700)
    return path


def unsafe_dirs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Directory trees a local user can change, and the refusal each must give."""
    owned = tmp_path / "owned"
    owned.mkdir()
    os.chown(owned, OTHER_UID, OTHER_UID)
    group_w = tmp_path / "group-w"
    group_w.mkdir()
    group_w.chmod(0o775)
    user_sticky = tmp_path / "user-sticky"  # sticky but not root's: its owner swaps files
    user_sticky.mkdir()
    user_sticky.chmod(0o1777)
    os.chown(user_sticky, OTHER_UID, OTHER_UID)
    via_link = tmp_path / "link"
    via_link.symlink_to(owned)  # a root-owned link into the user's directory
    return {
        "owned by a user": (owned / "sub", f"{owned} is owned by uid {OTHER_UID}"),
        "group-writable": (group_w / "sub", f"{group_w} is writable by group or others"),
        "user's sticky": (user_sticky / "sub", f"{user_sticky} is owned by uid {OTHER_UID}"),
        "symlinked": (via_link / "sub2", f"{owned} is owned by uid {OTHER_UID}"),
    }


def test_password_file_parents(ca: CertAuthority, tmp_path: Path) -> None:
    with MailServer(ca.server_context(), "starttls", users={"bob": "hunter2"}) as srv:
        for name, (directory, needle) in unsafe_dirs(tmp_path).items():
            err = fails(smtp(ca, port=srv.port, username="bob",
                             password_file=str(secret_in(directory))))
            assert err.kind == "auth" and "password_file" in err.message, (name, err.message)
            assert needle in err.message, (name, err.message)
        assert srv.received == []
        # a root-owned sticky directory (like /tmp) and root's own directories are fine
        sticky = tmp_path / "root-sticky"
        sticky.mkdir()
        sticky.chmod(0o1777)
        ok = secret_in(sticky / "private")
        (sticky / "private").chmod(0o700)
        mailer.send(smtp(ca, port=srv.port, username="bob", password_file=str(ok)),
                    "alice@example.com", "s", "b")
        assert len(srv.wait(1)) == 1


def test_token_command_parents(ca: CertAuthority, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with MailServer(ca.server_context(), "starttls",
                    tokens={"bob@example.com": "tok-123"}) as srv:
        for name, (directory, needle) in unsafe_dirs(tmp_path).items():
            command = token_in(directory, marker)
            err = fails(smtp(ca, port=srv.port, username="bob@example.com", auth="xoauth2",
                             token_command=str(command)))
            assert err.kind == "auth" and "token_command" in err.message, (name, err.message)
            assert needle in err.message, (name, err.message)
            assert not marker.exists(), name  # refused before it ran
        # a root-only link in a safe place that leads into a user's directory
        safe = tmp_path / "safe"
        safe.mkdir(mode=0o700)
        link = safe / "token"
        link.symlink_to(token_in(tmp_path / "owned" / "bin", marker))
        err = fails(smtp(ca, port=srv.port, username="bob@example.com", auth="xoauth2",
                         token_command=str(link)))
        assert f"{tmp_path / 'owned'} is owned by uid {OTHER_UID}" in err.message, err.message
        assert not marker.exists()
        good = token_in(safe / "bin", marker)
        mailer.send(smtp(ca, port=srv.port, username="bob@example.com", auth="xoauth2",
                         token_command=str(good)), "alice@example.com", "s", "b")
        assert marker.exists() and len(srv.wait(1)) == 1
