"""Issue 15 item 4: ``twofa-admin doctor --root`` on a host tree (tests/doctor_support.py:
Debian's PAM files and this machine's sshd_config, set up right): PAM stacks, state,
policy and services (sshd's side: test_doctor_sshd_cli.py). Each test breaks one
thing, checks that doctor names it (check, severity, file:line) and exits 1, then fixes
it and checks that doctor finds nothing (exit 0)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from pam_twofa import clockstatus
from tests.doctor_support import (
    GOOD_SSHD,
    GUARD,
    MODULE,
    Host,
    clean,
    host,
    listening,
    named,
    only,
    problems,
    run_admin,
)
from tests.harness.procs import LogSocket

__all__ = ["host"]  # the fixture (tests/doctor_support.py)


def test_the_good_host_has_nothing_to_report(host: Host) -> None:
    rc, found = host.doctor()
    assert (rc, found) == (0, [])
    text = run_admin("doctor", "--root", str(host.root))
    assert text.returncode == 0 and "doctor: nothing wrong found" in text.stdout


# ---------------------------------------------------------------- PAM stacks
def test_unguarded_module_in_a_setuid_stack_is_critical(host: Host) -> None:
    su = host.pam / "su"
    host.enable("su", (MODULE,))
    f = only(host, "pam-unguarded-setuid", "critical")
    assert f["file"] == str(su) and f["line"] == host.line_of(su, MODULE)
    assert "su is setuid root" in str(f["message"]) and GUARD in str(f["fix"])
    su.write_text(su.read_text().replace(MODULE, GUARD + "\n" + MODULE))
    clean(host)


def test_unguarded_module_elsewhere_is_a_warning(host: Host) -> None:
    login = host.pam / "login"
    host.enable("login", (MODULE,))
    f = only(host, "pam-unguarded", "warning")
    assert f["where"] == f"{login}:{host.line_of(login, MODULE)}"
    login.write_text(login.read_text().replace(MODULE, GUARD + "\n" + MODULE))
    clean(host)


@pytest.mark.parametrize(("control", "check"), [("sufficient", "pam-sufficient"),
                                                ("optional", "pam-optional")])
def test_sufficient_or_optional_control(host: Host, control: str, check: str) -> None:
    sshd = host.pam / "sshd"
    bad = MODULE.replace("required", control)
    sshd.write_text(sshd.read_text().replace(MODULE, bad))
    f = only(host, check, "error")
    assert f["where"] == f"{sshd}:{host.line_of(sshd, bad)}"
    sshd.write_text(sshd.read_text().replace(bad, MODULE))
    clean(host)


def test_sufficient_before_the_password_is_critical(host: Host) -> None:
    """The code alone would log in."""
    sudo = host.pam / "sudo"
    bad = MODULE.replace("required", "sufficient")
    sudo.write_text(sudo.read_text().replace("@include common-auth",
                                             f"{GUARD}\n{bad}\n@include common-auth"))
    rc, found = host.doctor()
    assert rc == 1
    assert [f["severity"] for f in named(found, "pam-sufficient")] == ["critical"]
    assert named(found, "pam-before-password")[0]["severity"] == "error"


def test_module_before_the_password_step(host: Host) -> None:
    sshd = host.pam / "sshd"
    text = sshd.read_text().replace(f"{GUARD}\n{MODULE}\n", "")
    sshd.write_text(text.replace("@include common-auth", f"{GUARD}\n{MODULE}\n"
                                 "@include common-auth"))
    f = only(host, "pam-before-password", "error")
    assert f["line"] == host.line_of(sshd, MODULE)
    # single_prompt=ask goes there on purpose (it only splits the answer) ...
    sshd.write_text(sshd.read_text().replace(MODULE, MODULE + " single_prompt=ask"))
    # ... but alone it checks no code: the password alone logs in
    f = only(host, "pam-single-prompt-no-verify", "critical")
    assert f["line"] == host.line_of(sshd, MODULE + " single_prompt=ask")
    assert "single_prompt=verify" in str(f["fix"])
    text = sshd.read_text()
    sshd.write_text(text.replace("@include common-auth\n", "@include common-auth\n"
                                 f"{GUARD}\n{MODULE} single_prompt=verify\n", 1))
    clean(host)  # the pair, in order: no finding (not "runs 2 times" either)
    sshd.write_text(text.replace(f"{GUARD}\n{MODULE} single_prompt=ask\n", "", 1).replace(
        "@include common-auth\n", "@include common-auth\n"
        f"{GUARD}\n{MODULE} single_prompt=verify\n{GUARD}\n{MODULE} single_prompt=ask\n", 1))
    rc, found = host.doctor()  # ask after verify: no pair (and the code asked twice)
    assert rc == 1 and {(f["check"], f["severity"]) for f in problems(found)} == {
        ("pam-single-prompt-no-verify", "critical"), ("pam-twice", "warning")}


def test_no_requisite_after_the_password_step(host: Host) -> None:
    """A wrong code after a wrong password is counted (issue 11)."""
    sshd = host.pam / "sshd"
    text = sshd.read_text().replace(f"@include common-auth\n{GUARD}",
                                    f"auth required pam_unix.so\n{GUARD}")
    sshd.write_text(text)
    f = only(host, "pam-no-requisite", "warning")
    assert f["line"] == host.line_of(sshd, MODULE) and "requisite" in str(f["fix"])
    sshd.write_text(text.replace("auth required pam_unix.so", "auth requisite pam_unix.so"))
    clean(host)


def test_no_password_step_outside_sshd(host: Host) -> None:
    login = host.pam / "login"
    login.write_text(login.read_text().replace(
        "@include common-auth", f"{GUARD}\n{MODULE}\nauth required pam_permit.so"))
    f = only(host, "pam-no-password-step", "error")
    assert f["file"] == str(login)
    login.write_text(login.read_text().replace(f"{GUARD}\n{MODULE}\nauth required pam_permit.so",
                                               f"@include common-auth\n{GUARD}\n{MODULE}"))
    clean(host)


def test_module_that_never_runs_after_a_right_password(host: Host) -> None:
    sshd = host.pam / "sshd"
    text = sshd.read_text()
    sshd.write_text(text.replace("@include common-auth", "auth sufficient pam_unix.so\n"
                                 "auth requisite pam_deny.so"))
    f = only(host, "pam-never-runs", "error")
    assert "ends the stack on success" in str(f["message"])
    sshd.write_text(text)
    clean(host)


def test_twice_in_one_stack_and_a_screen_locker(host: Host) -> None:
    common = host.pam / "common-auth"
    original = common.read_text()
    host.enable("common-auth", after="auth\trequired\t\t\tpam_permit.so")
    rc, found = host.doctor()
    assert rc == 1 and {f["check"] for f in problems(found)} == {"pam-twice"}
    assert "runs 2 times" in str(named(found, "pam-twice")[0]["message"])
    common.write_text(original)
    (host.pam / "i3lock").write_text(f"@include common-auth\n{GUARD}\n{MODULE}\n")
    only(host, "pam-screen-locker", "warning")
    (host.pam / "i3lock").unlink()
    clean(host)


def test_missing_include(host: Host) -> None:
    sshd = host.pam / "sshd"
    text = sshd.read_text()
    sshd.write_text(text.replace("@include common-account", "@include common-gone"))
    f = only(host, "pam-stack", "error")
    assert f"{sshd}:{host.line_of(sshd, '@include common-gone')}: includes common-gone, " \
        "which does not exist" in str(f["message"])
    sshd.write_text(text)
    clean(host)


# ---------------------------------------------------------------- state, policy, services
def test_state_directory_modes_and_owner(host: Host) -> None:
    users = host.state / "users"
    users.chmod(0o755)
    f = only(host, "state-dir", "error")
    assert f["file"] == str(users) and "mode 755" in str(f["message"])
    users.chmod(0o700)
    (users / "alice.json").chmod(0o644)
    assert only(host, "state-dir", "error")["file"] == str(users / "alice.json")
    (users / "alice.json").chmod(0o600)
    os.chown(users / "alice.json", 4242, 4242)
    assert "owned by uid 4242" in str(only(host, "state-dir", "error")["message"])
    os.chown(users / "alice.json", 0, 0)
    (users / "bob.json").symlink_to("/etc/shadow")
    assert "symbolic link" in str(only(host, "state-dir", "error")["message"])
    (users / "bob.json").unlink()
    clean(host)


def test_invalid_policy_names_each_line(host: Host) -> None:
    host.policy.write_text("mandatory:\n  scope: admins\n  colour: blue\nlockout: {x: 1}\n")
    rc, found = host.doctor()
    lines = sorted((f["line"], f["severity"]) for f in named(found, "policy"))
    assert rc == 1 and lines == [(3, "error"), (4, "error")]
    assert all(f["file"] == str(host.policy) for f in named(found, "policy"))
    host.policy.write_text("mandatory: {scope: admins}\n")
    clean(host)


def test_policy_writable_by_others(host: Host) -> None:
    host.policy.chmod(0o666)
    assert "writable by group or others" in str(only(host, "policy", "error")["message"])
    host.policy.chmod(0o644)
    clean(host)


def test_no_log_socket(host: Host) -> None:
    host.log.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(host.root / "dev" / "log")
    f = only(host, "log-socket", "error")
    assert f["file"] == str(host.root / "dev" / "log")
    host.log = LogSocket(host.root / "dev" / "log")
    clean(host)


def test_enrollment_socket_not_listening(host: Host) -> None:
    host.enroll.close()  # the file stays, nothing listens
    f = only(host, "enroll-socket", "warning")
    assert "Connection refused" in str(f["message"])
    os.unlink(host.root / "run/pam-twofa/enroll.sock")
    host.enroll = listening(host.root / "run/pam-twofa/enroll.sock")
    clean(host)


def test_clock_check_missing_stale_or_off(host: Host) -> None:
    os.unlink(host.state / "clock.json")
    rc, found = host.doctor()
    assert rc == 0 and [f["severity"] for f in named(found, "clock")] == ["info"]
    host.clock(time.time() - 3 * 86400)
    assert "stale" in str(only(host, "clock", "warning")["message"])
    host.clock(time.time(), clockstatus.OFFSET, offset=42.0)
    assert "+42.000 s" in str(only(host, "clock", "error")["message"])
    host.clock(time.time())
    clean(host)


def test_doctor_options_point_at_other_paths(host: Host, tmp_path: Path) -> None:
    """--pam-dir, --sshd-config and the admin's --policy replace the --root defaults."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "sshd_config").write_text(GOOD_SSHD.replace("UsePAM yes", "UsePAM no"))
    policy = other / "policy.yaml"
    policy.write_text("mandatory: {scope: bogus}\n")
    policy.chmod(0o644)
    _, found = host.doctor("--sshd-config", str(other / "sshd_config"),
                           admin=("--policy", str(policy)))
    assert sorted(f["check"] for f in problems(found)) == ["policy", "sshd-usepam"]
    assert named(found, "policy")[0]["file"] == str(policy)


def test_mail_sends_a_test_message_only_when_asked(host: Host) -> None:
    from tests.harness.smtpd import MailServer, closed_port

    def policy(port: int) -> None:
        host.policy.write_text("mandatory: {scope: admins}\nsmtp:\n  host: 127.0.0.1\n"
                               f"  port: {port}\n  security: none\n"
                               "  from: twofa@test.example\n  timeout_seconds: 5\n")

    with MailServer(None, "none") as srv:
        policy(srv.port)
        clean(host)
        assert srv.received == []  # without --mail nothing is sent
        rc, found = host.doctor("--mail", "root@test.example")
        assert rc == 0 and named(found, "mail")[0]["severity"] == "info"
        got = srv.wait(1)[0]
        assert got.message["Subject"] == "pam-twofa test mail (twofa-admin doctor)"
    policy(closed_port())
    f = only(host, "mail", "error", "--mail", "root@test.example")
    assert "connect" in str(f["message"])
    host.policy.write_text("mandatory: {scope: admins}\n")
    assert "not configured" in str(only(host, "mail", "error", "--mail", "x@y.z")["message"])
