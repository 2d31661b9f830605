"""Per-service rules and exempt networks (issue 15 items 1-2) through pamtester: several
service names in one PAM world, PAM_RHOST through pam_set_items and SSH_CONNECTION in
the PAM environment as sshd sets it (tests/harness/pam_putenv.py).

The password step is pam_matrix (``required``): "password alone" means the module
returned PAM_IGNORE and the stack still decided; a wrong password is still refused.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.harness.pamenv import ENTRY_MODULE, PAM_MATRIX, PAM_SET_ITEMS, PamEnv, oathtool
from tests.pam_support import PROMPT, enroll, log_text, output, wrong_code

PUTENV = Path(__file__).resolve().parent / "harness" / "pam_putenv.py"
SERVICES = ("sshd", "sudo", "su", "login")


@pytest.fixture
def world(pam_env: PamEnv) -> PamEnv:
    """alice (wheel) and bob; services sshd, sudo, su, login: each copies SSH_CONNECTION
    from pamtester's environment into the PAM environment before password and module."""
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.add_user("bob")
    for name in SERVICES:
        pam_env.service_raw(name, [
            f"auth required {PAM_SET_ITEMS}",
            f"auth required pam_python.so {PUTENV} SSH_CONNECTION",
            f"auth required {PAM_MATRIX} passdb={pam_env.passdb}",
            pam_env.module_line(),
            "account required pam_permit.so",
        ])
    return pam_env


def asked(res: object) -> bool:
    return PROMPT in output(res)  # type: ignore[arg-type]


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_disabled_service_ignores_an_enrolled_user(world: PamEnv) -> None:
    world.write_policy("mandatory: {scope: all}\nservices:\n  login: {enabled: false}\n")
    secret = enroll(world, "alice")
    res = world.pamtester("login", "alice", ["secret"])
    assert res.rc == 0 and not asked(res), res
    assert fields(log_text(res, "login"))["reason"] == "service-disabled"
    res = world.pamtester("login", "alice", ["wrong-password"])
    assert res.rc != 0, res  # the password still decides
    res = world.pamtester("sshd", "alice", ["secret", wrong_code(secret)])  # elsewhere: asked
    assert res.rc != 0 and asked(res), res
    assert fields(log_text(res, "sshd"))["reason"] == "bad-code"


def test_per_service_mandatory(world: PamEnv) -> None:
    world.write_policy("mandatory: {scope: none}\nenrollment: {mode: deny}\n"
                       "services:\n  sudo:\n    mandatory: {scope: admins}\n")
    res = world.pamtester("sudo", "alice", ["secret"])  # an admin on sudo: required
    assert res.rc != 0, res
    assert fields(log_text(res, "sudo"))["reason"] == "enrollment-required"
    res = world.pamtester("sudo", "bob", ["secret"])  # not an admin
    assert res.rc == 0 and fields(log_text(res, "sudo"))["reason"] == "not-enrolled", res
    res = world.pamtester("sshd", "alice", ["secret"])  # the top-level scope: none
    assert res.rc == 0 and fields(log_text(res, "sshd"))["reason"] == "not-enrolled", res


def test_trust_only_on_sshd(world: PamEnv) -> None:
    world.write_policy("trusted_devices: {enabled: false}\n"
                       "services:\n  sshd: {trusted_devices: true}\n")
    secret = enroll(world, "alice")
    rhost = {"PAM_RHOST": "192.0.2.7"}
    res = world.pamtester("su", "alice", ["secret", oathtool(secret), "yes"], env=rhost)
    assert res.rc == 0 and "Trust this device" not in output(res), res
    nxt = oathtool(secret, at=int(time.time()) + 30)  # the next step: never a replay
    res = world.pamtester("sshd", "alice", ["secret", nxt, "yes"], env=rhost)
    assert res.rc == 0 and "This device is trusted until" in output(res), res
    res = world.pamtester("sshd", "alice", ["secret"], env=rhost)
    assert res.rc == 0 and not asked(res), res
    assert fields(log_text(res, "sshd"))["reason"] == "trusted-device"
    # the policy turns trust off on sshd: the record is not honoured any more
    world.write_policy("services:\n  sshd: {trusted_devices: false}\n")
    res = world.pamtester("sshd", "alice", ["secret", wrong_code(secret)], env=rhost)
    assert res.rc != 0 and asked(res), res


@pytest.mark.parametrize(("env", "address"), [
    ({"PAM_RHOST": "10.1.2.3"}, "10.1.2.3"),
    ({"PAM_RHOST": "::ffff:10.1.2.3"}, "10.1.2.3"),
    ({"SSH_CONNECTION": "10.9.8.7 50022 10.0.0.1 22"}, "10.9.8.7"),
    ({"SSH_CONNECTION": "::ffff:10.9.8.7 50022 ::ffff:10.0.0.1 22",
      "PAM_RHOST": "203.0.113.5"}, "10.9.8.7"),
    ({"SSH_CONNECTION": "2001:db8:5::1 50022 2001:db8:5::2 22"}, "2001:db8:5::1"),
], ids=["rhost", "rhost-v4-mapped", "ssh-connection", "ssh-connection-v4-mapped", "v6"])
def test_exempt_network_asks_no_code(world: PamEnv, env: dict[str, str],
                                     address: str) -> None:
    world.write_policy("mandatory: {scope: all}\n"
                       "exempt_networks: ['::ffff:10.0.0.0/104', 2001:db8:5::/48]\n")
    enroll(world, "alice")
    res = world.pamtester("sshd", "alice", ["secret"], env=env)
    assert res.rc == 0 and not asked(res), res
    got = fields(log_text(res, "sshd"))
    assert (got["result"], got["reason"], got["address"]) == ("ignored", "exempt-network",
                                                              address)
    assert got["network"] == ("10.0.0.0/8" if "." in address else "2001:db8:5::/48")
    res = world.pamtester("sshd", "alice", ["wrong-password"], env=env)
    assert res.rc != 0, res  # the password alone decides, it still decides


@pytest.mark.parametrize("env", [
    {},
    {"PAM_RHOST": "localhost"},  # a name is never resolved
    {"PAM_RHOST": "10.1.2.3.nip.io"},
    {"PAM_RHOST": "010.1.2.3"},
    {"PAM_RHOST": "203.0.113.5"},
    # under sshd the TCP peer decides: PAM_RHOST inside, SSH_CONNECTION outside
    {"PAM_RHOST": "10.1.2.3", "SSH_CONNECTION": "203.0.113.5 50022 10.0.0.1 22"},
], ids=["none", "localhost", "dns-name", "leading-zero", "outside", "ssh-outside"])
def test_outside_or_not_an_address_is_asked(world: PamEnv, env: dict[str, str]) -> None:
    world.write_policy("exempt_networks: [10.0.0.0/8, 127.0.0.0/8]\n")
    secret = enroll(world, "alice")
    res = world.pamtester("sshd", "alice", ["secret", wrong_code(secret)], env=env)
    assert res.rc != 0 and asked(res), res
    assert fields(log_text(res, "sshd"))["reason"] == "bad-code"


def test_per_service_list_replaces_the_top_level_one(world: PamEnv) -> None:
    world.write_policy("exempt_networks: [10.0.0.0/8]\n"
                       "services:\n  sudo: {exempt_networks: []}\n")
    secret = enroll(world, "alice")
    lan = {"PAM_RHOST": "10.1.2.3"}
    res = world.pamtester("su", "alice", ["secret"], env=lan)
    assert res.rc == 0 and fields(log_text(res, "su"))["reason"] == "exempt-network", res
    res = world.pamtester("sudo", "alice", ["secret", wrong_code(secret)], env=lan)
    assert res.rc != 0 and asked(res), res


def test_locked_user_in_an_exempt_network_is_refused(world: PamEnv) -> None:
    world.write_policy("exempt_networks: [10.0.0.0/8]\n"
                       "lockout: {max_failures: 1, lock_seconds: 600}\n")
    secret = enroll(world, "alice")
    res = world.pamtester("sshd", "alice", ["secret", wrong_code(secret)],
                          env={"PAM_RHOST": "203.0.113.5"})  # from outside: locks
    assert res.rc != 0 and "locked_until=" in log_text(res, "sshd"), res
    for env in ({"PAM_RHOST": "10.1.2.3"}, {"SSH_CONNECTION": "::ffff:10.4.4.4 1 10.0.0.1 22"}):
        res = world.pamtester("sshd", "alice", ["secret", oathtool(secret)], env=env)
        assert res.rc != 0 and not asked(res), res
        assert "Too many wrong codes: locked until" in output(res)
        got = fields(log_text(res, "sshd"))
        assert (got["result"], got["reason"], got["network"]) == ("refused", "locked",
                                                                  "10.0.0.0/8")
    # bob, not enrolled, comes in from there as before
    res = world.pamtester("sshd", "bob", ["secret"], env={"PAM_RHOST": "10.1.2.3"})
    assert res.rc == 0 and fields(log_text(res, "sshd"))["reason"] == "exempt-network", res


def test_login_imports_scope_only_when_the_policy_has_rules(world: PamEnv) -> None:
    """A plain login never loads pam_twofa.scope (tests/test_login_imports.py pins the
    rest); with rules it adds that one module, and never ipaddress (~2.8 ms)."""
    from tests.test_login_imports import ALLOWED_OTHERS, LOGIN_MODULES, PROBE

    out = world.root / "imports.txt"
    world.service("probe", f"ENTRY={ENTRY_MODULE} out={out}", module=PROBE)
    world.write_policy("exempt_networks: [10.0.0.0/8, 2001:db8::/32]\n"
                       "services:\n  sudo: {enabled: false}\n")
    secret = enroll(world, "alice")
    res = world.pamtester("probe", "alice", ["secret", oathtool(secret)],
                          env={"PAM_RHOST": "192.0.2.1"})
    assert res.rc == 0, res
    seen = set(out.read_text().split())
    assert seen - ALLOWED_OTHERS == LOGIN_MODULES | {"pam_twofa.scope"}, sorted(seen)
    world.write_policy("mandatory: {scope: all}\n")  # no rules: not loaded
    res = world.pamtester("probe", "alice", ["secret", oathtool(secret, at=int(time.time()) + 30)],
                          env={"PAM_RHOST": "192.0.2.1"})
    assert res.rc == 0, res
    seen = set(out.read_text().split())
    assert "pam_twofa.scope" not in seen and "ipaddress" not in seen, sorted(seen)
