"""``twofa-admin pam enable|disable|status`` through its real entry point
(``python3 -m pam_twofa.cli.admin pam ...``) on copies of Debian 12's own PAM files.

tests/fixtures/pam.d holds byte-for-byte copies of a Debian 12 host's /etc/pam.d files
(login and passwd 1:4.13, util-linux 2.38.1 (su, runuser), openssh-server 1:9.2,
libpam-runtime 1.5.2 with libpam-cap's line in common-auth; sudo and sudo-i from sudo
1.9.13p3): committed, because the machine's own files can be mid-change by other tests
(su, sudo) and sudo need not be installed.
An enabled stack run for real (pamtester under pam_wrapper): test_pamstack_pam.py.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pam_twofa.hostconf import pamstack as ps
from tests.harness.pamenv import ENTRY_MODULE, REPO_ROOT
from tests.pamfiles_support import FIXTURES, PAM_PERMIT, Host

SERVICES = ["sshd", "su", "sudo", "sudo-i", "login", "chsh", "chfn"]
SETUID = {"su", "su-l", "sudo", "sudo-i", "chsh", "chfn", "other", "passwd"}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


# ------------------------------------------------------------------ enable and disable
@pytest.mark.parametrize("service", SERVICES)
def test_enable_goes_after_the_password_step_and_disable_restores_every_byte(
        host: Host, service: str) -> None:
    before = host.read(service)
    st = (host.dir / service).stat()
    out = host.ok("enable", service, "--module-args", "policy=/etc/p.yaml  debug")
    assert f"{service}: enabled" in out and f"{service}.twofa-bak" in out
    after = lines(host.read(service))
    i = after.index("@include common-auth")
    assert after[i + 1:i + 5] == [
        "# pam-twofa: begin (twofa-admin pam)",
        f"auth [success=1 ignore=ignore default=die] {host.guard}",
        f"auth required pam_python.so {host.module} policy=/etc/p.yaml debug",
        "# pam-twofa: end",
    ]
    assert after[:i + 1] + after[i + 5:] == lines(before)
    assert (host.dir / f"{service}.twofa-bak").read_bytes() == before
    new = (host.dir / service).stat()
    assert (new.st_mode, new.st_uid, new.st_gid) == (st.st_mode, st.st_uid, st.st_gid)
    assert "warning" not in out  # common-auth has requisite pam_deny after pam_unix

    again = host.run("enable", service, "--module-args", "policy=/etc/p.yaml debug")
    assert again.returncode == 0 and "already enabled" in again.stdout, again
    assert lines(host.read(service)) == after

    row = host.status()[service]
    assert row["enabled"] and row["managed"] and not row["critical"], row
    assert [(e["control"], e["guarded"], e["written_by"]) for e in row["entries"]] == [
        ("required", True, "twofa-admin")]

    out = host.ok("disable", service)
    assert f"{service}: disabled" in out
    assert host.read(service) == before
    again = host.run("disable", service)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert not host.status()[service]["enabled"]


def test_enable_with_other_arguments_is_refused_not_duplicated(host: Host) -> None:
    host.ok("enable", "sshd")
    enabled = host.read("sshd")
    done = host.run("enable", "sshd", "--module-args", "debug")
    assert done.returncode == 78 and "sshd:5: already enabled with other lines" in done.stderr
    assert host.read("sshd") == enabled


def test_status_of_the_profile_in_common_auth_is_critical_for_setuid_programs(
        host: Host) -> None:
    host.add_profile()
    rows = host.status(module=False)
    on = {name for name, row in rows.items() if row["enabled"]}
    assert on >= {"sshd", "login", "su", "su-l", "sudo", "sudo-i", "chsh", "chfn", "other",
                  "passwd", "common-auth"}
    critical = {name for name, row in rows.items() if row["critical"]}
    assert critical == SETUID, critical
    su = rows["su"]["entries"][0]
    assert su["where"].startswith("common-auth:2") and su["where"].endswith("via su:57")
    assert (su["control"], su["guarded"], su["written_by"]) == (
        "required", False, "pam-auth-update")
    assert "libpam runs those of 'other'" in " ".join(rows["passwd"]["warnings"])
    text = host.run("status", module=False)
    assert text.returncode == 1  # a CRITICAL finding
    assert "CRITICAL: common-auth:" in text.stdout and "sudo is setuid root" in text.stdout
    # the profile's line is not "already there in another shape" for sshd only: it is
    assert "already in this stack" in host.run("enable", "sshd").stderr


def test_a_guarded_block_by_enable_clears_the_critical_finding(host: Host) -> None:
    host.ok("enable", "su")
    rows = host.status()
    assert not rows["su"]["critical"] and not rows["su-l"]["critical"]
    assert rows["su-l"]["entries"][0]["where"] == "su:60 via su-l:2"
    assert rows["sshd"]["enabled"] is False


# ---------------------------------------------------------------------------- refusals
def refused(host: Host, *args: str, code: int = 78) -> str:
    before = host.snapshot()
    done = host.run(*args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert host.snapshot() == before  # nothing written, no backup
    return done.stderr


def edit(host: Host, name: str, old: str, new: str) -> None:
    path = host.dir / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_no_password_step(host: Host) -> None:
    err = refused(host, "enable", "passwd")
    assert f"{host.dir}/passwd: no password step found" in err


def test_a_sufficient_line_by_hand(host: Host) -> None:
    edit(host, "sshd", "@include common-auth\n",
         "@include common-auth\nauth sufficient pam_python.so pam_twofa.py\n")
    err = refused(host, "enable", "sshd")
    assert f"{host.dir}/sshd:5: pam-twofa is already in this stack ('sufficient'" in err
    rows = host.status(module=False)
    assert any("a right code alone" in w for w in rows["sshd"]["warnings"])


def test_a_jump_over_the_insertion_point(host: Host) -> None:
    edit(host, "login", "@include common-auth\n",
         "auth [success=5 default=ignore] pam_localuser.so\n@include common-auth\n")
    err = refused(host, "enable", "login")
    assert f"{host.dir}/login:57: this line jumps 5 lines over" in err


def test_pam_auth_updates_own_block(host: Host) -> None:
    err = refused(host, "enable", "common-auth")
    assert f"{host.dir}/common-auth:19: this is pam-auth-update's block" in err


def test_malformed_lines_are_named(host: Host) -> None:
    edit(host, "chsh", "@include common-auth", "auth bogus pam_unix.so")
    assert f"{host.dir}/chsh:17: unknown control 'bogus'" in refused(host, "enable", "chsh")
    edit(host, "chfn", "@include common-auth", "@include nonexistent")
    assert "chfn:12: includes nonexistent, which does not exist" in refused(
        host, "enable", "chfn")


def test_symlinks_missing_modules_and_bad_arguments(host: Host) -> None:
    (host.dir / "sudo").unlink()
    (host.dir / "sudo").symlink_to("sudo-i")
    assert "is a symbolic link" in refused(host, "enable", "sudo")
    host.guard.unlink()
    assert "pam_twofa_guard.so is not installed" in refused(host, "enable", "sshd")
    shutil.copy(PAM_PERMIT, host.guard)
    assert "unknown or malformed module argument 'polcy=/x'" in refused(
        host, "enable", "sshd", "--module-args", "polcy=/x", code=2)
    assert "do not survive" in refused(host, "enable", "sshd", "--module-args", "debug#x")
    assert "no such PAM service file" in refused(host, "enable", "nosuch")
    assert "bad service name" in refused(host, "enable", "../etc")


def test_an_edited_block_is_not_removed(host: Host) -> None:
    host.ok("enable", "sshd")
    edit(host, "sshd", "# pam-twofa: end", "auth optional pam_echo.so hi\n# pam-twofa: end")
    err = refused(host, "disable", "sshd", code=1)
    assert f"{host.dir}/sshd:8: inside the pam-twofa block" in err
    assert "already enabled" not in refused(host, "enable", "sshd")


# ------------------------------------------------------------------- shapes of files
def test_direct_password_module_with_a_jump_continuations_and_no_requisite(
        host: Host) -> None:
    (host.dir / "svc").write_text(
        "# a comment\n"
        "-auth optional pam_systemd_home.so\n"
        "auth [success=1 \\\n"
        "      default=ignore] pam_unix.so nullok [arg with ]\n"
        "auth requisite pam_deny.so # comment\n"
        "auth required pam_permit.so\n")
    out = host.ok("enable", "svc")
    assert "svc: after svc:5: auth requisite pam_deny.so # comment" in out  # jump target
    assert lines(host.read("svc"))[5:7] == [
        "# pam-twofa: begin (twofa-admin pam)",
        f"auth [success=1 ignore=ignore default=die] {host.guard}"]
    assert "warning" not in out
    bare = b"auth required pam_unix.so \\\n  nullok\f\r\nauth optional pam_echo.so\n"
    (host.dir / "bare").write_bytes(bare)  # \f and \r are no line ends for libpam
    out = host.ok("enable", "bare")
    head, tail = bare.split(b"\r\n")
    assert host.read("bare") == head + b"\r\n" + "".join(
        x + "\n" for x in ["# pam-twofa: begin (twofa-admin pam)",
                           f"auth [success=1 ignore=ignore default=die] {host.guard}",
                           f"auth required pam_python.so {host.module}",
                           "# pam-twofa: end"]).encode() + tail
    assert "no 'requisite' line" in out and "bare:1" in out
    host.ok("disable", "bare")
    assert host.read("bare") == bare


def test_a_screen_lockers_service_gets_a_warning(host: Host) -> None:
    shutil.copy(host.dir / "chsh", host.dir / "i3lock")
    out = host.ok("enable", "i3lock")
    assert "warning: i3lock: a screen locker's service: it runs PAM as the user" in out
    assert "warning" not in host.ok("enable", "chsh")
    assert any("screen locker" in w for w in host.status()["i3lock"]["warnings"])
    assert not any("screen locker" in w for w in host.status()["chsh"]["warnings"])


def test_a_password_step_that_jumps_past_the_end(host: Host) -> None:
    (host.dir / "svc").write_text("auth [success=9 default=ignore] pam_unix.so\n"
                                  "auth requisite pam_deny.so\n")
    out = host.ok("enable", "svc")  # it hung here once: the end is as far as a jump goes
    assert lines(host.read("svc"))[2] == ps.BEGIN and "warning" not in out


def test_substack_password_step(host: Host) -> None:
    (host.dir / "system-auth").write_text(
        "auth required pam_env.so\nauth sufficient pam_unix.so\nauth required pam_deny.so\n")
    (host.dir / "svc").write_text("auth substack system-auth\nauth include postlogin\n")
    (host.dir / "postlogin").write_text("auth optional pam_echo.so hi\n")
    out = host.ok("enable", "svc")
    assert lines(host.read("svc"))[1] == "# pam-twofa: begin (twofa-admin pam)"
    assert "no 'requisite' line" in out  # a die inside a substack ends the substack only


def test_a_password_step_that_ends_the_stack_on_success(host: Host) -> None:
    """RHEL-like 'sufficient pam_unix' at the top level: lines after it never run for
    a right password, so 2FA would be skipped silently."""
    (host.dir / "svc").write_text("auth required pam_env.so\n"
                                  "auth sufficient pam_unix.so\nauth required pam_deny.so\n")
    err = refused(host, "enable", "svc")
    assert f"{host.dir}/svc:2: 'sufficient' ends the stack when the password is right" in err


def test_status_warns_about_stacks_written_by_hand(host: Host) -> None:
    guard = f"auth [default=die ignore=ignore success=1] {host.guard}\n"  # other order
    module = f"auth required pam_python.so {host.module}\n"
    (host.dir / "skip").write_text("auth sufficient pam_unix.so\n" + guard + module)
    (host.dir / "count").write_text("auth required pam_unix.so\n" + guard + module)
    (host.dir / "keycode").write_text(guard + module + "auth required pam_permit.so\n")
    rows = host.status()
    for name in ("skip", "count", "keycode"):
        assert rows[name]["entries"][0]["guarded"] is True, rows[name]
        assert rows[name]["entries"][0]["written_by"] == "by hand"
    assert "never runs after a right password: skip:1 ends the stack" in " ".join(
        rows["skip"]["warnings"])
    assert "no 'requisite' line after the password step count:1" in " ".join(
        rows["count"]["warnings"])
    assert "no password step before it" in " ".join(rows["keycode"]["warnings"])
    assert not any("requisite" in w for w in rows["sshd"]["warnings"])


# ----------------------------------------------------------------------- disable --all
def test_disable_all_is_all_or_nothing(host: Host) -> None:
    original = host.snapshot()
    for service in ("sshd", "sudo", "su"):
        host.ok("enable", service)
    host.add_profile()
    edit(host, "chsh", "@include common-auth\n",
         "@include common-auth\nauth required pam_python.so /opt/x/pam_twofa/pam_entry.py\n")
    enabled = host.snapshot()
    done = host.run("disable", "--all")
    assert done.returncode == 1, done
    assert f"{host.dir}/chsh:18: auth required pam_python.so" in done.stderr
    assert "nothing was changed" in done.stderr
    assert host.snapshot() == enabled
    edit(host, "chsh", "auth required pam_python.so /opt/x/pam_twofa/pam_entry.py\n", "")
    done = host.run("disable", "--all")
    assert done.returncode == 0, done
    for service in ("sshd", "sudo", "su"):
        assert f"{service}: disabled" in done.stdout
        assert host.read(service) == original[service]
    assert "common-auth:26: auth\trequired\t\t\tpam_python.so pam_twofa.py stays" in done.stderr
    again = host.run("disable", "--all")
    assert again.returncode == 0 and "no service file" in again.stdout
    assert host.run("disable").returncode == 2


def test_every_option_of_the_pam_commands_is_in_the_man_page() -> None:
    from pam_twofa.cli.admin.pam import pam_group

    man = (REPO_ROOT / "doc" / "man" / "twofa-admin.8.scd").read_text()
    for name, command in pam_group.commands.items():
        assert f"*pam {name}*" in man, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert f"*{opt}*" in man, (name, opt)


# ------------------------------------------------------------------------------- fuzz
PAM_WORDS = ["auth", "-auth", "account", "session", "required", "requisite", "sufficient",
             "optional", "include", "substack", "@include", "[success=1", "default=ignore]",
             "[success=2 default=die]", "[success=9]", "pam_unix.so", "pam_deny.so",
             "pam_permit.so", "common-auth", "nullok", "#", "\\", "[a b]", "\t", " ",
             "pam_python.so", "pam_twofa.py", "\r", "\f", "x"]


@given(st.lists(st.lists(st.sampled_from(PAM_WORDS), max_size=6), max_size=6),
       st.integers(0, 6))
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_enable_refuses_or_disable_restores_every_byte(
        tmp_path: Path, extra: list[list[str]], at: int) -> None:
    """Any file: enable refuses with the documented error and writes nothing, or its
    block is disabled back to the same bytes."""
    from pam_twofa.errors import PamConfigError
    from pam_twofa.hostconf import pamedit

    with tempfile.TemporaryDirectory(dir=tmp_path) as root:
        pam_dir = Path(root)
        shutil.copy(FIXTURES / "common-auth", pam_dir / "common-auth")
        body = [" ".join(words) for words in extra]
        body.insert(min(at, len(body)), "@include common-auth")
        data = "\n".join(body).encode() + b"\n"
        (pam_dir / "svc").write_bytes(data)
        kw = {"module": str(ENTRY_MODULE), "guard": str(PAM_PERMIT)}
        try:
            done = pamedit.enable(str(pam_dir), "svc", **kw)
        except PamConfigError:
            assert (pam_dir / "svc").read_bytes() == data
            return
        assert done.changed and ps.BEGIN.encode() in (pam_dir / "svc").read_bytes()
        pamedit.disable(str(pam_dir), "svc", **kw)
        assert (pam_dir / "svc").read_bytes() == data
