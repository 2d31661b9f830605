"""The policy keys of issue 15 items 1-2 (``services``, ``exempt_networks``): strict like
every key, each problem as FILE:LINE (the line of the list entry), compiled into
the marshal cache and back unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from pam_twofa import policy, policyfile, schema
from pam_twofa.paths import Paths
from tests.policy_support import errors_of, paths

__all__ = ["paths"]  # the fixture


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("exempt_networks:\n  - 10.0.0.0/8\n  - 10.1.2.3/8\n", 3,
     "exempt_networks '10.1.2.3/8' has host bits set: did you mean 10.0.0.0/8?"),
    ("exempt_networks: [10.0.0.0/8, 2001:db8::1/32]\n", 1, "did you mean 2001:db8::/32?"),
    ("exempt_networks:\n  - intranet.example\n", 2, "'intranet.example' is not an IP network"),
    ("exempt_networks:\n  - 10.0.0.0/33\n", 2, "is not an IP network"),
    ("exempt_networks:\n  - 0.0.0.0/0\n", 2, "exempts every address"),
    ("exempt_networks:\n  - ::/0\n", 2, "exempts every address"),
    ("exempt_networks:\n  - ::/64\n", 2, "holds every IPv4 address"),
    ("exempt_networks:\n  - fe80::%eth0/64\n", 2, "is not an IP network"),
    ("exempt_networks:\n  - 1:2:3:4:5:6:7:8\n", 2, "is not an IP network"),  # YAML 1.1 int
    ("exempt_networks: 10.0.0.0/8\n", 1, "exempt_networks must be a list of networks"),
    ("services:\n  sshd:\n    exempt_networks:\n      - 192.0.2.1/24\n", 4,
     "services.sshd.exempt_networks '192.0.2.1/24' has host bits set"),
    ("services: [sshd]\n", 1, "services must be a mapping of PAM service names"),
    ("services:\n  SSHD: {}\n", 2, "libpam lowers service names: write sshd"),
    ("services:\n  ../sshd: {}\n", 2, "not a PAM service file name"),
    ("services:\n  'ssh d': {}\n", 2, "not a PAM service file name"),
    ("services:\n  other: {}\n", 2, "PAM's fallback file"),
    ("services:\n  common-auth: {}\n", 2, "is an included file"),
    ("services:\n  sshd: true\n", 2, "services.sshd must be a mapping"),
    ("services:\n  sshd:\n    enable: false\n", 3, "unknown key services.sshd.enable"),
    ("services:\n  sshd:\n    enabled: 0\n", 3, "services.sshd.enabled must be true or false"),
    ("services:\n  sshd:\n    trusted_devices: {enabled: true}\n", 3,
     "services.sshd.trusted_devices must be true, false or null"),
    ("services:\n  sudo:\n    mandatory: admins\n", 3,
     "services.sudo.mandatory must be a mapping"),
    ("services:\n  sudo:\n    mandatory:\n      scope: admin\n", 4,
     "services.sudo.mandatory.scope must be one of none, admins"),
    ("services:\n  sudo:\n    mandatory:\n      scopes: all\n", 4,
     "unknown key services.sudo.mandatory.scopes"),
    ("service:\n  sshd: {}\n", 1, "unknown section 'service'"),
])
def test_bad_keys_name_file_and_line(paths: Paths, text: str, line: int, needle: str) -> None:
    found = errors_of(paths, text)
    assert len(found) == 1, found
    assert found[0][0] == line, found
    assert needle in found[0][1], found


def test_every_service_problem_is_listed(paths: Paths) -> None:
    found = errors_of(paths, """\
services:
  sshd:
    enabled: nope
  Sudo: {}
  su:
    colour: red
exempt_networks: [10.0.0.1/8]
""")
    assert sorted(line for line, _ in found) == [3, 4, 6, 7], found


def test_good_policy_parses_and_survives_the_cache(paths: Paths) -> None:
    Path(paths.policy).write_text("""\
mandatory: {scope: all, admin_groups: [ops], exempt_users: [svc]}
trusted_devices: {enabled: false, days: 3}
exempt_networks: &office
  - 10.0.0.0/8
  - 10.0.0.0/8
  - "::ffff:192.168.0.0/112"
  - 2001:db8::/32
services:
  login: {enabled: false}
  sshd:
    trusted_devices: true
  sudo:
    mandatory: {scope: admins}
    exempt_networks: []
  su:
    exempt_networks: *office
  polkit-1: ~
""")
    fresh = policyfile.load(paths, use_cache=False)
    assert [n[0] for n in fresh.exempt_networks] == ["10.0.0.0/8", "192.168.0.0/16",
                                                    "2001:db8::/32"]  # deduplicated, v4 shown
    assert fresh.exempt_networks[0][1:] == (0xFFFF0A000000, 104)
    names = [s.name for s in fresh.services]
    assert names == ["login", "polkit-1", "sshd", "su", "sudo"]
    svc = {s.name: s for s in fresh.services}
    assert svc["login"].enabled is False and svc["login"].mandatory is None
    assert svc["sshd"].trusted_devices is True and svc["su"].trusted_devices is None
    assert svc["sudo"].exempt_networks == () and svc["su"].exempt_networks == \
        fresh.exempt_networks
    sudo = svc["sudo"].mandatory
    assert sudo is not None and sudo.scope == "admins"
    assert sudo.admin_groups == frozenset({"ops"}) and sudo.exempt_users == frozenset({"svc"})
    assert svc["polkit-1"] == policy.ServicePolicy(
        name="polkit-1", enabled=True, mandatory=None, trusted_devices=None,
        exempt_networks=None)
    assert policyfile.load(paths) == fresh  # written to the cache
    assert policyfile.load(paths) == fresh  # and read back from it
    assert Path(paths.policy_cache).is_file()


def test_defaults_have_no_services_and_no_networks() -> None:
    p = schema.defaults()
    assert p.services == () and p.exempt_networks == ()
    assert schema.validate({"services": None, "exempt_networks": None}) == schema.validate({})
