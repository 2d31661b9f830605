"""The Debian package (issue 7): installed on this machine, used, purged (the build
itself, lintian and the contents: tests/test_deb_build.py).

Runs as root (as CI does).  The package is installed with apt-get for the tests in the
middle of this file and purged by the last one (or by the fixture's finalizer when a test
fails before it), so the machine ends as it started; /etc/pam.d is compared byte for byte
at every step.  The whole file takes ~15 s on an idle machine (build ~3 s, lintian ~3 s,
apt-get install and purge ~2 s each, logins ~1 s), ~30-50 s on a loaded one.

Helpers and the fixtures that build, install and purge are in tests/deb_support.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deb_support import (
    APT,
    PACKAGE,
    RHOST,
    SYS_ENV,
    UNIT_SUFFIXES,
    Built,
    Installed,
    Logins,
    build,
    install,
    installed_pam_env,
    installed_version,
    man_path,
    pam_d_digest,
    purge,
    repo_man_pages,
    repo_units,
    run_logins,
    sh,
)
from tests.guard_support import (
    ENV_CMD,
    converse,
    crafted_prefix,
    public_dir,
    system_lock,
    throwaway_user,
)
from tests.harness.pamenv import PamEnv

# Refusals fail2ban must count (a wrong answer, or trying while locked).
BANNED_REASONS = {
    "bad-code", "replay", "bad-emergency-code", "locked", "unknown-user", "bad-user-name",
}
NOBODY = 65534
CRON_FILE = "/etc/cron.d/libpam-twofa"
STATE = Path("/var/lib/pam-twofa")
SYSTEMD = os.path.isdir("/run/systemd/system")

if os.geteuid() != 0:  # CI runs as root; a collection error beats a silent pass
    raise RuntimeError("tests/test_deb.py installs a package: run it as root")


# ------------------------------------------------------------------ fixtures (module scope)
@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="module")
def installed(built: Built) -> Iterator[Installed]:
    """Installed for the tests below, purged by the last one (or by this finalizer)."""
    with install(built) as inst:
        yield inst


@pytest.fixture(scope="module")
def deb_env(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PamEnv]:
    with installed_pam_env(tmp_path_factory.mktemp("debpam")) as env:
        yield env


@pytest.fixture(scope="module")
def logins(deb_env: PamEnv) -> Logins:
    return run_logins(deb_env)


# ------------------------------------------------------------------ installed
def test_install_changes_no_pam_stack(installed: Installed) -> None:
    assert installed_version() is not None
    assert pam_d_digest() == installed.pam_d_before
    sh("pam-auth-update", "--package")  # what postinst ran; Default: no keeps it out
    assert pam_d_digest() == installed.pam_d_before
    profile = Path("/usr/share/pam-configs/pam-twofa").read_text()
    assert "Default: no" in profile and "Auth-Type: Additional" in profile
    assert re.search(r"^\s+required\s+pam_python\.so pam_twofa\.py$", profile, re.M), profile
    # the guard's line right before it (README "Security notes")
    assert re.search(r"^\s+\[success=1 ignore=ignore default=die\]\s+pam_twofa_guard\.so\n"
                     r"\s+required\s+pam_python\.so pam_twofa\.py$", profile, re.M), profile
    priority = int(re.search(r"^Priority: (\d+)$", profile, re.M).group(1))  # type: ignore[union-attr]
    unix = Path("/usr/share/pam-configs/unix").read_text()
    assert priority < int(re.search(r"^Priority: (\d+)$", unix, re.M).group(1))  # type: ignore[union-attr]


def test_state_dir_and_compiled_modules(installed: Installed) -> None:
    st = os.lstat("/var/lib/pam-twofa")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert (st.st_uid, st.st_gid) == (0, 0)
    cache = Path("/usr/lib/python3/dist-packages/pam_twofa/__pycache__")
    for name in ("pamface", "core", "store", "totp"):  # pam_python never writes these
        assert list(cache.glob(f"{name}.cpython-3*.pyc")), name
    assert os.path.realpath("/lib/security/pam_twofa.py") == (
        "/usr/lib/python3/dist-packages/pam_twofa/pam_entry.py")


def test_login_through_the_installed_module(logins: Logins) -> None:
    assert logins.results["right"] == 0, logins
    assert logins.results["replay"] != 0
    assert logins.results["wrong1"] != 0 and logins.results["wrong2"] != 0
    assert logins.results["wrong3"] != 0
    assert logins.results["locked"] != 0  # even with a fresh right code
    assert logins.results["out-of-scope"] == 0  # PAM_IGNORE: the password decides
    assert logins.results["broken"] != 0  # failmode secure
    reasons = [re.search(r" result=(\S+) reason=(\S+)", line).groups()  # type: ignore[union-attr]
               for line in logins.lines]
    assert reasons == [
        ("success", "ok"), ("refused", "replay"), ("refused", "bad-code"),
        ("refused", "bad-code"), ("refused", "bad-code"), ("refused", "locked"),
        ("ignored", "not-enrolled"),
        ("refused", "bad-policy"), ("refused", "unknown-user"), ("refused", "bad-user-name"),
    ], logins.lines
    assert logins.results["unknown"] != 0 and logins.results["forged"] != 0


def test_fail2ban_filter_matches_refusals_only(logins: Logins, tmp_path: Path) -> None:
    """The shipped filter and jail, installed into a copy of /etc/fail2ban."""
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    examples = Path("/usr/share/doc/libpam-twofa/examples/fail2ban")
    shutil.copy(examples / "filter.d/pam-twofa.conf", conf / "filter.d")
    shutil.copy(examples / "jail.d/pam-twofa.conf", conf / "jail.d")
    # As rsyslog writes them to /var/log/auth.log: "<PRI>" off, the host name added.
    syslog = [re.sub(r"^<\d+>(.{15}) ", r"\1 testhost ", line) for line in logins.lines]
    log = tmp_path / "auth.log"
    log.write_text("".join(line + "\n" for line in syslog))
    res = sh("fail2ban-regex", "-c", os.fspath(conf), "-o", "msg", os.fspath(log), "pam-twofa")
    matched = [line for line in res.stdout.splitlines() if line.strip()]
    expected = [line for line in syslog
                if re.search(r" result=refused reason=(\S+)", line)
                and re.search(r" reason=(\S+)", line).group(1) in BANNED_REASONS]  # type: ignore[union-attr]
    assert len(expected) == 7 and matched == expected, res.stdout
    assert not [line for line in matched if "result=success" in line or "failmode=" in line]
    hosts = sh("fail2ban-regex", "-c", os.fspath(conf), "-o", "ip", os.fspath(log),
               "pam-twofa").stdout.split()
    assert hosts == [RHOST] * 7, hosts  # never FORGED
    jail = sh("fail2ban-client", "-c", os.fspath(conf), "-d").stdout
    assert "['add', 'pam-twofa'," in jail and "'addjournalmatch', '_UID=0', '_COMM=sshd'" in jail


@pytest.mark.parametrize(("snippet", "methods"), [
    ("pam-twofa-password.conf", "keyboard-interactive:pam"),
    ("pam-twofa-publickey.conf", "publickey,keyboard-interactive:pam"),
])
def test_sshd_examples_parse(installed: Installed, snippet: str, methods: str) -> None:
    """sshd -T reads each shipped snippet as an admin would include it (unprivileged:
    a root sshd -T wants /run/sshd, which is not ours to create)."""
    examples = "/usr/share/doc/libpam-twofa/examples/ssh/sshd_config.d"
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        key = Path(tmp) / "hostkey"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.fspath(key))
        os.chown(key, NOBODY, NOBODY)
        config = Path(tmp) / "sshd_config"
        config.write_text(f"Include {examples}/{snippet}\nHostKey {key}\n")
        res = sh("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 "/usr/sbin/sshd", "-T", "-f", os.fspath(config),
                 "-C", "user=alice,host=client,addr=127.0.0.1")
    effective = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    assert effective["authenticationmethods"] == methods
    assert effective["usepam"] == "yes" and effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "yes"


# debian/rules MANUAL_UNITS: installed, never enabled by the package (the admin does).
MANUAL_UNITS = {"pam-twofa-fleetd.service"}


def expected_unit_state(text: str) -> str:
    """What `systemctl is-enabled` says once dh_installsystemd enabled the unit."""
    install = text.partition("[Install]")[2].partition("\n[")[0]
    keys = {line.split("=", 1)[0].strip() for line in install.splitlines() if "=" in line}
    if keys & {"WantedBy", "RequiredBy", "UpheldBy", "Alias"}:
        return "enabled"
    return "indirect" if "Also" in keys else "static"


def test_units_verify(installed: Installed) -> None:
    units = sorted(f for f in installed.files
                   if f.startswith("/lib/systemd/system/") and f.endswith(UNIT_SUFFIXES))
    assert [os.path.basename(u) for u in units] == repo_units()
    if units:
        res = sh("systemd-analyze", "verify", "--man=no", *units, check=False)
        assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    for unit in units:  # dh_installsystemd's postinst enabled what has an [Install] section
        name = os.path.basename(unit)
        state = sh("systemctl", "--root=/", "is-enabled", name, check=False).stdout.strip()
        expected = ("disabled" if name in MANUAL_UNITS
                    else expected_unit_state(Path(unit).read_text()))
        assert state == expected, (name, state)
    for name in ("pam-twofa-clockcheck.timer", "pam-twofa-enroll.socket"):
        if f"/lib/systemd/system/{name}" in units:
            state = sh("systemctl", "--root=/", "is-enabled", name, check=False).stdout.strip()
            assert state == "enabled", (name, state)


def test_man_pages_render(installed: Installed) -> None:
    pages = sorted(f for f in installed.files
                   if f.startswith("/usr/share/man/") and f.endswith(".gz"))
    links = [p for p in pages if os.path.islink(p)]  # another name for a page
    assert [p for p in pages if p not in links] == sorted(man_path(p) for p in repo_man_pages())
    assert all(os.path.realpath(p) in pages for p in links), links
    env = {**SYS_ENV, "MANWIDTH": "80"}
    for page in pages:
        res = sh("man", "--warnings", "-E", "UTF-8", "-l", page, env=env, check=False)
        assert res.returncode == 0 and not res.stderr.strip(), (page, res.stderr)
        text = re.sub(r".\x08", "", res.stdout)  # grotty's overstrike bold
        real = os.path.realpath(page)
        name, section = os.path.basename(real).removesuffix(".gz").rsplit(".", 1)
        assert text.startswith(f"{name}({section})") and "\nNAME\n" in text, (page, text[:200])


def test_install_output_says_what_runs(installed: Installed) -> None:
    """Issue 12: the text and the behaviour agree, with and without systemd."""
    out = installed.output
    if SYSTEMD:
        assert "pam-twofa: started pam-twofa-enroll.socket" in out, out
        assert "systemd is not running" not in out
    else:  # this machine and most containers
        assert "pam-twofa: systemd is not running: no service was started" in out, out
        assert "/etc/cron.d/libpam-twofa" in out and "twofa-enroll-service" in out
        assert "started pam-twofa" not in out


def test_cron_job_runs_the_check_only_without_systemd(installed: Installed,
                                                      tmp_path: Path) -> None:
    """The installed line, run by sh as cron would, with the systemd marker directory and
    the command pointed into tmp_path (a stub records each run and fails once)."""
    text = Path(CRON_FILE).read_text()
    jobs = [line for line in text.splitlines()
            if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(jobs) == 1, text
    fields = jobs[0].split(None, 6)
    assert fields[5] == "root" and fields[1] == "*" and fields[0].isdigit(), fields
    command = fields[6]
    assert "%" not in command  # cron would cut the line there
    assert "[ -d /run/systemd/system ] ||" in command and "/usr/bin/twofa-clockcheck" in command
    stub = tmp_path / "twofa-clockcheck"
    runs = tmp_path / "runs"
    stub.write_text(f"#!/bin/sh\necho run >> {runs}\necho 'clock OFF: offset +60 s'\n"
                    f"[ $(wc -l < {runs}) -gt 1 ]\n")
    stub.chmod(0o755)
    marker = tmp_path / "systemd-system"

    def run() -> str:
        line = command.replace("/run/systemd/system", os.fspath(marker)).replace(
            "/usr/bin/twofa-clockcheck", os.fspath(stub))
        return sh("sh", "-c", line).stdout

    marker.mkdir()
    assert run() == "" and not runs.exists()  # systemd runs the timer: nothing here
    marker.rmdir()
    assert run() == "clock OFF: offset +60 s\n"  # not in sync (exit 1): mailed by cron
    assert run() == ""  # in sync: silent
    assert runs.read_text() == "run\nrun\n"
    stub.unlink()  # the package removed (conffile left behind): nothing, no error
    assert run() == ""


def test_postinst_clears_the_compiled_policy_cache(installed: Installed) -> None:
    """Issue 11: an upgrade never serves the previous version's compiled policy."""
    cache = STATE / "cache"
    cache.mkdir(mode=0o700, exist_ok=True)
    for name in ("policy.marshal", "policy.last-valid"):
        (cache / name).write_bytes(b"x")
        (cache / name).chmod(0o600)
    version = installed_version()
    assert version is not None
    sh(f"/var/lib/dpkg/info/{PACKAGE}.postinst", "configure", version)
    assert not (cache / "policy.marshal").exists()
    assert (cache / "policy.last-valid").exists()  # checked again by the code before use
    (cache / "policy.last-valid").unlink()


def test_remove_and_reinstall_say_what_stays(installed: Installed, built: Built) -> None:
    users = STATE / "users"
    users.mkdir(mode=0o700, exist_ok=True)
    (users / "someone.json").write_text("{}")
    res = sh(*APT, "remove", PACKAGE)
    out = res.stdout + res.stderr
    assert "pam-twofa: the 2FA state of 1 user(s) stays in /var/lib/pam-twofa" in out, out
    assert "pam-auth-update --enable pam-twofa" in out
    assert (users / "someone.json").exists()
    res = sh(*APT, "install", "--no-install-recommends", os.fspath(built.deb))
    out = res.stdout + res.stderr
    assert "1 user(s) have 2FA state (enrollments), but no PAM service uses" in out, out
    assert pam_d_digest() == installed.pam_d_before  # the profile stays off
@pytest.mark.parametrize("variant", ["path", "cwd"])
def test_enabled_profile_stops_the_su_exploit(installed: Installed, variant: str) -> None:
    """Issue 11.1 as reported: the package installed, the profile enabled (common-auth),
    a user runs `su $USER` with a crafted standard library first on PATH (or in the cwd,
    with no python3 on PATH).  The guard's line starts the interpreter first: no payload."""
    user, password = "twofadebsu", "Deb-su-pw-not-secret"
    root = Path(tempfile.mkdtemp(prefix="pam-twofa-debsu-", dir="/tmp"))
    try:
        root.chmod(0o755)
        with system_lock(), throwaway_user(user, password) as (uid, gid):
            sh("pam-auth-update", "--package", "--enable", "pam-twofa")
            try:
                home = public_dir(root, variant, owner=uid)
                marker = home / "marker"
                evil = crafted_prefix(home / "evil", marker, owner=uid)
                path, cwd = f"{evil}/bin:/usr/bin:/bin", home
                if variant == "cwd":
                    path, cwd = "/nonexistent", evil
                session = converse(uid, gid, ["/usr/bin/su", user, "-c", ENV_CMD],
                                   {"PATH": path, "LANG": "C.UTF-8", "TERM": "dumb"}, cwd,
                                   ["Password: "], [password])
            finally:
                sh("pam-auth-update", "--package", "--disable", "pam-twofa")
        assert not marker.exists(), marker.read_text()
        assert session.rc == 0 and session.prompts == ["Password: "], session.output
        assert f"USER={user}" in session.env  # not enrolled: the password decides
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_purge_removes_everything_and_the_profile(installed: Installed) -> None:
    """Last: enable the profile, add state, purge; nothing of the package may remain."""
    sh("pam-auth-update", "--package", "--enable", "pam-twofa")
    common_auth = Path("/etc/pam.d/common-auth").read_text()
    assert re.search(r"^auth\s+\[success=1 ignore=ignore default=die\]\s+pam_twofa_guard\.so *\n"
                     r"auth\s+required\s+pam_python\.so pam_twofa\.py$", common_auth, re.M), (
        common_auth)
    users = Path("/var/lib/pam-twofa/users")
    users.mkdir(mode=0o700, exist_ok=True)
    (users / "someone.json").write_text("{}")
    candidates = [*installed.files, "/etc/pam-twofa", "/var/lib/pam-twofa"]

    said = purge()

    assert "pam-twofa: purge: deleting the 2FA secrets" in said, said
    assert "1 user(s) in /var/lib/pam-twofa; after a reinstall they must enroll" in said
    assert installed_version() is None
    assert pam_d_digest() == installed.pam_d_before  # prerm took the profile out
    remaining = []
    for path in candidates:
        if not os.path.lexists(path):
            continue
        owned = sh("dpkg-query", "-S", path, check=False).returncode == 0
        if not (os.path.isdir(path) and owned):
            remaining.append(path)  # a shared directory of other packages may stay
    for root in ("/etc/systemd/system", "/var/lib/systemd/deb-systemd-helper-enabled",
                 "/var/lib/systemd/deb-systemd-helper-masked"):
        remaining += [os.fspath(p) for p in Path(root).rglob("*pam-twofa*")]
    assert remaining == [], remaining


def test_nothing_left_installed(installed: Installed) -> None:
    """The machine is as before: the package is gone even if a test above failed."""
    with contextlib.suppress(Exception):
        purge()
    assert installed_version() is None
    assert pam_d_digest() == installed.pam_d_before
