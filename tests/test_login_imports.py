"""What a TOTP login imports, seen inside pam_python under pamtester (a C host).

Every import costs every login (the budget is ~2.5 ms over a bare module), so the
login path is a fixed set of modules: a new top-level import on it, or a feature
(yaml, mail, QR, NTP, trust) loading on a plain TOTP login, fails here. Pinned for
a plain user, a user with a security email (the prompt offers a code by mail), a
host with no policy file (17 modules each, the package included) and trusted
devices on (18: ``trust``); no mail, service or CLI module loads unless a mail is
sent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pam_twofa.paths import Paths
from tests.fleet_support import (
    ADMIN,
    Daemon,
    FleetDb,
    daemons,
    fleet_db,
    fleet_template,
    start,
)
from tests.harness.pamenv import ENTRY_MODULE, PAM_MATRIX, PAM_SET_ITEMS, PamEnv, oathtool
from tests.harness.syslock import system_lock
from tests.harness.wait import wait_fresh_step
from tests.pam_support import enroll

__all__ = ["daemons", "fleet_db", "fleet_template"]

PROBE = Path(__file__).resolve().parent / "harness" / "import_probe.py"
LOGIN_MODULES = {
    f"pam_twofa.{name}" for name in (
        "core", "errors", "fsutil", "fastjson", "log", "login", "pamface", "paths", "policy",
        "filestore", "policyfile", "record", "state", "store", "totp", "verify",
    )
} | {"pam_twofa"}
# What must never load on a login that sends no mail (by module name or package).
NEVER = ("pam_twofa.mail", "pam_twofa.service", "pam_twofa.cli", "pam_twofa.fleet",
         "pam_twofa.emergency", "smtplib", "ssl", "socket", "email")
ADDRESS = "alice@example.org"
# C modules of the interpreter (no Python code to run) and __future__ (one tiny file).
ALLOWED_OTHERS = {"__future__", "_json", "_sha1", "_socket", "fcntl", "grp", "pwd"}


def imported(env: PamEnv, code: str, out: Path, *more: str,
             env_vars: dict[str, str] | None = None) -> set[str]:
    res = env.pamtester("probe", "alice", ["secret", code, *more], env=env_vars)
    assert res.rc == 0, res
    names = set(out.read_text().split())
    assert not [n for n in names if n.startswith(NEVER)], sorted(names)
    return names


def _probe(tw: PamEnv, args: str = "") -> Path:
    out = tw.root / "imports.txt"
    tw.service("probe", f"ENTRY={ENTRY_MODULE} out={out} {args}".rstrip(), module=PROBE)
    return out


def test_totp_login_imports_only_the_login_path(tw: PamEnv) -> None:
    out = tw.root / "imports.txt"
    tw.service("probe", f"ENTRY={ENTRY_MODULE} out={out}", module=PROBE)
    tw.write_policy("mandatory: {scope: admins}\n")
    secret = enroll(tw, "alice")  # twofa-admin compiled the policy cache on the way
    wait_fresh_step()
    lean = imported(tw, oathtool(secret), out)
    assert lean - ALLOWED_OTHERS == LOGIN_MODULES, sorted(lean ^ LOGIN_MODULES)
    # the probe does see imports: an edited policy is parsed again, with yaml
    tw.write_policy("mandatory: {scope: all}\n")
    parsed = imported(tw, oathtool(secret, at=int(time.time()) + 30), out)
    assert {"yaml", "pam_twofa.schema"} <= parsed, sorted(parsed)


def test_security_email_login_loads_no_mail_module(tw: PamEnv) -> None:
    """The prompt offers a code by mail (smtp configured), yet nothing of the mail
    path loads until the user answers ``email``: 17 modules, as for a plain user."""
    out = _probe(tw)
    tw.write_policy("mandatory: {scope: admins}\n"
                    "smtp: {host: 127.0.0.1, port: 9, security: none}\n")
    secret = enroll(tw, "alice")
    assert tw.admin("email", "alice", ADDRESS).returncode == 0
    wait_fresh_step()
    names = imported(tw, oathtool(secret), out)
    assert names - ALLOWED_OTHERS == LOGIN_MODULES, sorted(names ^ LOGIN_MODULES)
    assert len(LOGIN_MODULES) == 17  # the package included


def test_no_policy_file_login_imports_only_the_login_path(tw: PamEnv) -> None:
    """No policy= argument and no file at the default path: the built-in defaults.

    Under the machine's system lock: test_deb holds it while the package (and its
    /etc/pam-twofa/policy.yaml) is installed, so the default path is free here."""
    out = tw.root / "imports.txt"
    line = tw.module_line(f"ENTRY={ENTRY_MODULE} out={out}", module=PROBE)
    line = line.replace(f"policy={tw.policy} ", "")
    tw.service_raw("probe", [f"auth required {PAM_SET_ITEMS}",
                             f"auth required {PAM_MATRIX} passdb={tw.passdb}", line,
                             "account required pam_permit.so"])
    secret = enroll(tw, "alice")
    with system_lock():
        assert not Path(Paths.policy).exists(), "a policy file was left at the default path"
        wait_fresh_step()
        first = imported(tw, oathtool(secret), out)  # compiles the defaults into the cache
        assert "pam_twofa.schema" in first, sorted(first)
        names = imported(tw, oathtool(secret, at=int(time.time()) + 30), out)
    assert names - ALLOWED_OTHERS <= LOGIN_MODULES, sorted(names - LOGIN_MODULES)
    assert len(names - ALLOWED_OTHERS) <= 17


def test_trusted_devices_login_adds_only_trust(tw: PamEnv) -> None:
    """With trusted devices on and a client IP: the code, the offer (declined), then
    an accepted one and a login skipped by trust: each loads the login path + trust."""
    out = _probe(tw)
    tw.write_policy("mandatory: {scope: admins}\ntrusted_devices: {enabled: true}\n")
    secret = enroll(tw, "alice")
    client = {"PAM_RHOST": "192.0.2.7"}
    wait_fresh_step()
    names = imported(tw, oathtool(secret), out, "n", env_vars=client)
    assert names - ALLOWED_OTHERS == LOGIN_MODULES | {"pam_twofa.trust"}, sorted(names)
    names = imported(tw, oathtool(secret, at=int(time.time()) + 30), out, "y",
                     env_vars=client)
    assert names - ALLOWED_OTHERS == LOGIN_MODULES | {"pam_twofa.trust"}, sorted(names)
    res = tw.pamtester("probe", "alice", ["secret"], env=client)  # trusted: no code asked
    assert res.rc == 0 and "Trusted device" in res.stdout + res.stderr, res
    names = set(out.read_text().split())
    assert names - ALLOWED_OTHERS == LOGIN_MODULES | {"pam_twofa.trust"}, sorted(names)
    assert len(LOGIN_MODULES | {"pam_twofa.trust"}) == 18


@pytest.mark.parametrize("email", [False, True])
def test_fleet_login_loads_no_database_driver(tw: PamEnv, fleet_db: FleetDb,
                                               daemons: list[Daemon], email: bool) -> None:
    """A TOTP login on the fleet store (``store.backend: postgresql``): the login path
    plus ``fleetstore`` and ``fleetclient``; no psycopg2, ssl, socket or json (one
    JSON line over ``_socket`` to twofa-fleetd), nothing of ``pam_twofa.fleet``; with
    a security email (the prompt offers a code by mail) no more than without."""
    out = _probe(tw)
    d = start(daemons, tw.root, "fleetd", fleet_db.server.dsn("host1"))
    tw.write_policy("mandatory: {scope: admins}\nstore:\n  backend: postgresql\n"
                    "  postgresql:\n    dsn: \"dbname=twofa\"\n"
                    f"    socket: {d.socket}\n"
                    + ("smtp: {host: 127.0.0.1, port: 9, security: none}\n" if email else ""))
    secret = fleet_db.enroll("alice")
    if email:
        assert fleet_db.call(fleet_db.connect(ADMIN),
                             "SELECT twofa_api.admin_set_email('alice', %s)", ADDRESS)
    assert tw.admin("policy", "check").returncode == 0  # compiles the policy cache
    wait_fresh_step()
    for at in (time.time(), time.time() + 30):  # the second: the cache, as every login
        res = tw.pamtester("probe", "alice", ["secret", oathtool(secret, at=int(at))])
        assert res.rc == 0 and "reason=ok" in "".join(res.log_lines), res
        assert ("'email'" in res.stderr) is email, res
    names = set(out.read_text().split())
    # The fleet login does without the file store and its state record.
    fleet = LOGIN_MODULES - {"pam_twofa.filestore", "pam_twofa.state"} | {
        "pam_twofa.fleetstore", "pam_twofa.fleetclient"}
    assert names - ALLOWED_OTHERS == fleet, sorted(names ^ fleet)
    assert not names & {"psycopg2", "ssl", "socket", "json", "pam_twofa.fleet"}
