"""Helpers and fixtures for tests/test_deb.py (the Debian package, issue 7).

The module-scoped fixtures chain build -> install -> a PAM world -> logins: ``built``
runs tools/build-deb.sh on a copy of the tree; ``installed`` takes the machine lock
(one install..purge at a time on this machine), apt-get installs the package and purges
it in its finalizer, so the machine ends as it started; ``deb_env`` and ``logins`` use
the installed module.  The fixtures themselves stay in test_deb.py (module scope, so
the order of its tests decides when the purge happens); their bodies are here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.pamenv import PAM_MATRIX, PAM_SET_ITEMS, PamEnv, oathtool
from tests.harness.procs import SYSTEM_PATH
from tests.harness.syslock import system_lock

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "libpam-twofa"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits
RHOST = "203.0.113.7"
FORGED = "198.51.100.9"  # an address a hostile user name tries to get banned
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".target")
SYS_ENV = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
# The installed guard by its bare name, as the profile and the README write it.
GUARD_PACKAGED = "auth [success=1 ignore=ignore default=die] pam_twofa_guard.so"
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600"]



def sh(*cmd: str, timeout: float = 300, check: bool = True,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         env=env or SYS_ENV, check=False, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def pam_d_digest() -> dict[str, str]:
    """Every file under /etc/pam.d with its sha256."""
    return {
        os.fspath(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path("/etc/pam.d").rglob("*")) if p.is_file()
    }


def installed_version() -> str | None:
    res = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", PACKAGE, check=False)
    fields = res.stdout.split()
    return fields[1] if res.returncode == 0 and fields and fields[0] == "ii" else None


def purge() -> str:
    """apt-get purge; its output (the maintainer scripts' messages)."""
    if sh("dpkg-query", "-W", PACKAGE, check=False).returncode == 0:
        res = sh(*APT, "purge", PACKAGE)
        return res.stdout + res.stderr
    return ""


# ------------------------------------------------------------------ what the repo says
def repo_units() -> list[str]:
    return sorted(p.name for p in (REPO / "systemd").glob("*") if p.suffix in UNIT_SUFFIXES)


def repo_man_pages() -> list[str]:
    return sorted(p.name.removesuffix(".scd") for p in (REPO / "doc/man").glob("*.scd"))


def repo_scripts() -> list[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return sorted(data["project"].get("scripts", {}))


def man_path(page: str) -> str:
    section = page.rsplit(".", 1)[1]
    return f"/usr/share/man/man{section[0]}/{page}.gz"


# ------------------------------------------------------------------ the fixtures' bodies
@dataclass(frozen=True)
class Built:
    deb: Path
    changes: Path
    seconds: float
    tree_before: str  # `git status --ignored` of the build's footprint, before and after
    tree_after: str


# Where an in-tree dpkg-buildpackage would leave things (the build runs on a copy).
FOOTPRINT = ("debian", ".pybuild", "build/lib", "build/bdist.linux-x86_64", "dist",
             "pam_twofa.egg-info")


def tree_status() -> str:
    return sh("git", "-C", os.fspath(REPO), "status", "--porcelain", "--ignored",
              "--untracked-files=all", "--", *FOOTPRINT).stdout


def build(out: Path) -> Built:
    """tools/build-deb.sh into ``out`` (the ``built`` fixture)."""
    before = tree_status()
    start = time.monotonic()
    sh(os.fspath(REPO / "tools/build-deb.sh"), os.fspath(out), timeout=600)
    seconds = time.monotonic() - start
    debs = sorted(out.glob(f"{PACKAGE}_*.deb"))  # not the -dbgsym package
    changes = sorted(out.glob("pam-twofa_*.changes"))
    assert len(debs) == 1 and len(changes) == 1, sorted(out.iterdir())
    return Built(debs[0], changes[0], seconds, before, tree_status())


@dataclass
class Installed:
    files: list[str]  # dpkg -L
    pam_d_before: dict[str, str]
    output: str = ""  # apt-get install's, with the maintainer scripts' messages


@contextlib.contextmanager
def install(built: Built) -> Iterator[Installed]:
    """Under the machine lock: apt-get install, then purge on the way out (``installed``)."""
    with system_lock():  # one install..purge at a time on this machine
        if installed_version() is not None:  # left by an interrupted run, or by hand
            purge()
        before = pam_d_digest()
        try:
            res = sh(*APT, "install", "--no-install-recommends", os.fspath(built.deb))
            files = sh("dpkg", "-L", PACKAGE).stdout.splitlines()
            yield Installed([f for f in files if f.startswith("/") and f != "/."], before,
                            res.stdout + res.stderr)
        finally:
            purge()


@contextlib.contextmanager
def installed_pam_env(root: Path) -> Iterator[PamEnv]:
    """A hermetic PAM world whose service calls the INSTALLED guard and module by their
    relative names."""
    env = PamEnv(root)
    try:
        env.add_user("alice")
        env.add_user("bob")  # never enrolled, out of scope
        env.write_policy("lockout:\n  max_failures: 3\n")
        env.policy.chmod(0o644)
        args = f"policy={env.policy} state_dir={env.state_dir} log_socket={env.log_socket}"
        env.service_raw("twofa-deb", [
            f"auth required {PAM_SET_ITEMS}",
            f"auth required {PAM_MATRIX} passdb={env.passdb}",
            GUARD_PACKAGED,
            f"auth required pam_python.so pam_twofa.py {args}",
            "account required pam_permit.so",
        ])
        # A policy path that does not exist: an internal error (bad-policy), never banned.
        env.service_raw("twofa-deb-broken", [
            f"auth required {PAM_SET_ITEMS}",
            f"auth required {PAM_MATRIX} passdb={env.passdb}",
            GUARD_PACKAGED,
            f"auth required pam_python.so pam_twofa.py policy={env.root}/missing.yaml "
            f"state_dir={env.state_dir} log_socket={env.log_socket}",
            "account required pam_permit.so",
        ])
        admin = sh("/usr/bin/twofa-admin", "--policy", os.fspath(env.policy), "--state-dir",
                   os.fspath(env.state_dir), "enroll", "alice", "--secret", SECRET,
                   env={**env.wrapper_env(pam=False), "LANG": "C.UTF-8"}, check=False)
        assert admin.returncode == 0, admin
        yield env
    finally:
        env.close()


@dataclass
class Logins:
    lines: list[str]  # the module's log lines, as sent to the syslog socket
    results: dict[str, int]  # what each step returned


def run_logins(env: PamEnv) -> Logins:
    """Real logins through the installed module: right, replayed, wrong, locked, broken."""
    at = {"PAM_RHOST": RHOST}
    lines: list[str] = []
    results: dict[str, int] = {}

    def login(step: str, user: str, code: str, service: str = "twofa-deb") -> None:
        res = env.pamtester(service, user, ["secret", code], env=at)
        results[step] = res.rc
        lines.extend(line for line in res.log_lines if "pam_twofa(" in line)

    code = oathtool(SECRET)
    login("right", "alice", code)
    login("replay", "alice", code)
    wrong = f"{(int(code) + 500_000) % 1_000_000:06d}"
    login("wrong1", "alice", wrong)
    login("wrong2", "alice", wrong)
    login("wrong3", "alice", wrong)  # max_failures 3 (a replay is not counted): locks
    login("locked", "alice", oathtool(SECRET))
    login("out-of-scope", "bob", "")
    login("broken", "alice", code, service="twofa-deb-broken")
    login("unknown", "mallory", code)  # no such account: the password step fails too
    login("forged", f"x/ rhost={FORGED} result=refused", code)  # escaped, never a field
    return Logins(lines, results)
