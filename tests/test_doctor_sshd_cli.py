"""Issue 15 item 4, sshd's side: ``twofa-admin doctor --root`` on this machine's
sshd_config with pam-twofa in the sshd stack (tests/doctor_support.py), each sshd_config
mistake broken then fixed, and the ssh service's PATH."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.doctor_support import GOOD_SSHD, GUARD, MODULE, Host, clean, host, named, only

__all__ = ["host"]  # the fixture


def test_usepam_no(host: Host) -> None:
    host.dropin.write_text(GOOD_SSHD.replace("UsePAM yes", "UsePAM no"))
    f = only(host, "sshd-usepam", "error")
    assert f["where"] == f"{host.dropin}:1"
    host.dropin.write_text(GOOD_SSHD)
    clean(host)


@pytest.mark.parametrize("keyword", ["KbdInteractiveAuthentication",
                                     "ChallengeResponseAuthentication"])
def test_keyboard_interactive_off(host: Host, keyword: str) -> None:
    host.dropin.write_text(GOOD_SSHD.replace("KbdInteractiveAuthentication yes",
                                             f"{keyword} no"))
    f = only(host, "sshd-kbdinteractive", "error")
    assert f["where"] == f"{host.dropin}:2"
    host.dropin.write_text(GOOD_SSHD.replace("KbdInteractiveAuthentication yes",
                                             f"{keyword} yes"))
    clean(host)


def test_debians_own_kbdinteractive_no_counts_without_the_dropin(host: Host) -> None:
    """Debian's sshd_config says 'KbdInteractiveAuthentication no' after its Include."""
    main = host.ssh / "sshd_config"
    host.dropin.write_text(GOOD_SSHD.replace("KbdInteractiveAuthentication yes\n", ""))
    f = only(host, "sshd-kbdinteractive", "error")
    assert f["where"] == f"{main}:{host.line_of(main, 'KbdInteractiveAuthentication no')}"


def test_password_authentication_beside_keyboard_interactive(host: Host) -> None:
    host.dropin.write_text(GOOD_SSHD.replace("PasswordAuthentication no",
                                             "PasswordAuthentication yes")
                           .replace("AuthenticationMethods keyboard-interactive\n", ""))
    rc, found = host.doctor()
    f = named(found, "sshd-password-auth")[0]
    assert (rc, f["severity"], f["where"]) == (1, "error", f"{host.dropin}:3")
    assert "answers pam-twofa's hidden code prompt with the password" in str(f["message"])
    # AuthenticationMethods that never uses the password method makes it harmless
    host.dropin.write_text(GOOD_SSHD.replace("PasswordAuthentication no",
                                             "PasswordAuthentication yes"))
    clean(host)


def test_password_authentication_by_default(host: Host) -> None:
    """Nothing says PasswordAuthentication: sshd's default is yes."""
    host.dropin.write_text(GOOD_SSHD.replace("PasswordAuthentication no\n", "")
                           .replace("AuthenticationMethods keyboard-interactive\n", ""))
    rc, found = host.doctor()
    f = named(found, "sshd-password-auth")[0]
    assert (rc, f["severity"]) == (1, "error")
    assert f["where"] == str(host.ssh / "sshd_config") and "default" in str(f["message"])


def key_code_stack(host: Host, args: str = "") -> Path:
    sshd = host.pam / "sshd"
    text = sshd.read_text().replace(f"@include common-auth\n{GUARD}\n{MODULE}",
                                    f"{GUARD}\n{MODULE}{args}\nauth required pam_permit.so")
    sshd.write_text(text)
    return sshd


def test_key_code_stack_without_require_publickey_is_critical(host: Host) -> None:
    host.dropin.write_text(GOOD_SSHD.replace("keyboard-interactive",
                                             "publickey,keyboard-interactive"))
    sshd = key_code_stack(host)
    f = only(host, "pam-keycode-no-require-publickey", "critical")
    assert f["where"] == f"{sshd}:{host.line_of(sshd, MODULE)}"
    key_code_stack_fixed = sshd.read_text().replace(MODULE, MODULE + " require_publickey")
    sshd.write_text(key_code_stack_fixed)
    clean(host)


def test_key_code_stack_without_publickey_first(host: Host) -> None:
    key_code_stack(host, " require_publickey")
    f = only(host, "sshd-keycode-methods", "error")  # 'keyboard-interactive' alone
    assert f["where"] == f"{host.dropin}:4"
    host.dropin.write_text(GOOD_SSHD.replace("keyboard-interactive",
                                             "publickey,keyboard-interactive:pam"))
    clean(host)
    host.dropin.write_text(GOOD_SSHD.replace("AuthenticationMethods keyboard-interactive\n",
                                             ""))  # 'any': a key alone logs in
    assert only(host, "sshd-keycode-methods", "error")["where"] == str(
        host.ssh / "sshd_config")


def test_a_match_block_overriding_the_methods_is_named(host: Host) -> None:
    key_code_stack(host, " require_publickey")
    host.dropin.write_text(GOOD_SSHD.replace("keyboard-interactive",
                                             "publickey,keyboard-interactive")
                           + "Match Address 10.0.0.0/8\n  AuthenticationMethods "
                           "keyboard-interactive\n")
    f = only(host, "sshd-keycode-methods", "error")
    assert f["where"] == f"{host.dropin}:6"
    assert str(f["message"]).startswith("for connections matching 'Match Address 10.0.0.0/8'")


def test_an_included_file_is_read_in_place(host: Host) -> None:
    (host.ssh / "sshd_config.d" / "00-first.conf").write_text("UsePAM no\n")
    f = only(host, "sshd-usepam", "error")
    assert f["where"] == f"{host.ssh / 'sshd_config.d' / '00-first.conf'}:1"


def test_a_key_alone_skips_the_code_with_the_password_stack(host: Host) -> None:
    host.dropin.write_text(GOOD_SSHD.replace("keyboard-interactive",
                                             "publickey keyboard-interactive"))
    assert only(host, "sshd-key-skips-code", "warning")["where"] == f"{host.dropin}:4"
    host.dropin.write_text(GOOD_SSHD.replace("AuthenticationMethods keyboard-interactive",
                                             "PubkeyAuthentication no"))
    clean(host)  # no key method at all: every login runs the stack


# ---------------------------------------------------------------- the ssh service's PATH
def fake_python(host: Host, directory: str) -> None:
    path = host.root / directory.lstrip("/") / "python3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


def test_another_python_first_on_the_default_path(host: Host) -> None:
    fake_python(host, "/usr/local/bin")
    f = only(host, "ssh-path-python", "warning")  # guarded: only a warning
    assert "/usr/local/bin/python3" in str(f["message"])
    sshd = host.pam / "sshd"
    sshd.write_text(sshd.read_text().replace(GUARD + "\n", ""))
    rc, found = host.doctor()
    assert rc == 1 and named(found, "ssh-path-python")[0]["severity"] == "error"
    os.unlink(host.root / "usr/local/bin/python3")
    fake_python(host, "/usr/bin")
    _, found = host.doctor()
    assert named(found, "ssh-path-python") == []


def test_path_from_a_unit_dropin_and_etc_default(host: Host) -> None:
    fake_python(host, "/opt/py/bin")
    dropin = host.root / "etc/systemd/system/ssh.service.d/path.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nEnvironment=\"PATH=/opt/py/bin:/usr/bin:/bin\" LANG=C\n")
    f = only(host, "ssh-path-python", "warning")
    assert f["where"] == "/etc/systemd/system/ssh.service.d/path.conf:2"
    unit = host.root / "lib/systemd/system/ssh.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nEnvironmentFile=-/etc/default/ssh\nExecStart=/usr/sbin/sshd\n")
    default = host.root / "etc/default/ssh"
    default.parent.mkdir(parents=True)
    default.write_text("SSHD_OPTS=\nexport PATH=/usr/bin:/bin\n")  # EnvironmentFile wins
    clean(host)




def test_path_from_etc_default_ssh_without_a_unit(host: Host) -> None:
    fake_python(host, "/opt/py/bin")
    default = host.root / "etc/default/ssh"
    default.parent.mkdir(parents=True)
    default.write_text("# sourced by /etc/init.d/ssh\nexport PATH=/opt/py/bin:/usr/bin\n")
    assert only(host, "ssh-path-python", "warning")["where"] == "/etc/default/ssh:2"
    default.write_text("PATH=/usr/bin:/opt/py/bin\n")
    clean(host)
