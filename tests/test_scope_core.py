"""Per-service rules and exempt networks (issue 15 items 1-2), pure: ``scope.effective``
and ``login.ip_address`` table by table, then ``core.authenticate`` with a real FileStore
and a scripted conversation (the PAM side is test_scope_pam.py, sshd test_scope_ssh.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pam_twofa import core, scope
from pam_twofa.accounts import Account
from pam_twofa.clock import FixedClock
from pam_twofa.filestore import FileStore
from pam_twofa.login import client_of, ip_address
from pam_twofa.paths import Paths
from tests.core_support import NOW, SECRET, Script, code, make_policy

NETS = ["10.0.0.0/8", "192.0.2.128/25", "2001:db8:1::/48", "::ffff:198.51.100.0/120"]


# ------------------------------------------------------------------ addresses
@pytest.mark.parametrize(("text", "shown"), [
    ("10.1.2.3", "10.1.2.3"),
    (" 10.1.2.3\n", "10.1.2.3"),
    ("::ffff:10.1.2.3", "10.1.2.3"),  # v4-mapped is the IPv4 address
    ("::FFFF:0a01:0203", "10.1.2.3"),
    ("2001:DB8:1::7", "2001:db8:1::7"),
    ("::1", "::1"),
    ("::10.1.2.3", "::10.1.2.3"),  # v4-compatible (deprecated): an IPv6 address, not mapped
])
def test_address_is_canonical(text: str, shown: str) -> None:
    found = ip_address(text)
    assert found is not None and found[0] == shown


@pytest.mark.parametrize("text", [
    None, "", "localhost", "host.example.org", "10.1.2", "10.1", "010.1.2.3", "10.1.2.3.4",
    "10.1.2.256", "0x0a.1.2.3", "10.1.2.3/8", "fe80::1%eth0", "10.1.2.3 x", "2001:db8::g",
    "[2001:db8::1]", "10.1.2.3:22",
])
def test_not_an_address_never_matches(text: str | None) -> None:
    """Names are never resolved; shorthand and octal-looking forms are not addresses."""
    assert ip_address(text) is None
    policy = make_policy({"exempt_networks": ["0.0.0.0/1", "128.0.0.0/1", "2000::/3"]})
    assert scope.effective(policy, "sshd", text).network is None


def test_client_is_ssh_connection_first_field_else_rhost() -> None:
    assert client_of("10.9.8.7 50000 10.0.0.1 22", "name.example") == "10.9.8.7"
    assert client_of(None, "192.0.2.1") == "192.0.2.1"
    assert client_of("", "192.0.2.1") == "192.0.2.1"
    assert client_of(None, None) is None


# ------------------------------------------------------------------ effective
@dataclass
class Rule:
    id: str
    policy: dict[str, Any]
    service: str
    client: str | None
    enabled: bool = True
    scope: str = "none"  # the effective mandatory.scope
    trust: bool = False
    network: str | None = None
    address: str | None = None


RULES = [
    Rule("nothing-set", {}, "sshd", "10.1.2.3"),
    Rule("top-network-v4", {"exempt_networks": NETS}, "sshd", "10.1.2.3",
         network="10.0.0.0/8", address="10.1.2.3"),
    Rule("top-network-edge", {"exempt_networks": NETS}, "su", "192.0.2.128",
         network="192.0.2.128/25", address="192.0.2.128"),
    Rule("just-outside", {"exempt_networks": NETS}, "su", "192.0.2.127", address="192.0.2.127"),
    Rule("v4-mapped-client", {"exempt_networks": NETS}, "sshd", "::ffff:10.200.0.1",
         network="10.0.0.0/8", address="10.200.0.1"),
    Rule("v4-mapped-network", {"exempt_networks": NETS}, "sshd", "198.51.100.9",
         network="198.51.100.0/24", address="198.51.100.9"),
    Rule("v4-mapped-both", {"exempt_networks": NETS}, "sshd", "::ffff:198.51.100.9",
         network="198.51.100.0/24", address="198.51.100.9"),
    Rule("v6", {"exempt_networks": NETS}, "sshd", "2001:db8:1:ffff::1",
         network="2001:db8:1::/48", address="2001:db8:1:ffff::1"),
    Rule("v6-outside", {"exempt_networks": NETS}, "sshd", "2001:db8:2::1",
         address="2001:db8:2::1"),
    Rule("v4-not-in-v6", {"exempt_networks": ["2001:db8::/32"]}, "sshd", "32.1.13.184",
         address="32.1.13.184"),  # 0x20010db8 as IPv4: a v6 network holds no IPv4 address
    Rule("name", {"exempt_networks": NETS}, "sshd", "intranet.example"),
    Rule("no-client", {"exempt_networks": NETS}, "sshd", None),
    Rule("service-replaces-list",
         {"exempt_networks": NETS, "services": {"sudo": {"exempt_networks": []}}},
         "sudo", "10.1.2.3"),
    Rule("service-own-list",
         {"exempt_networks": NETS, "services": {"su": {"exempt_networks": ["172.16.0.0/12"]}}},
         "su", "10.1.2.3", address="10.1.2.3"),
    Rule("service-own-list-match",
         {"services": {"su": {"exempt_networks": ["172.16.0.0/12"]}}},
         "su", "172.31.0.1", network="172.16.0.0/12", address="172.31.0.1"),
    Rule("other-service-keeps-top",
         {"exempt_networks": NETS, "services": {"sudo": {"exempt_networks": []}}},
         "sshd", "10.1.2.3", network="10.0.0.0/8", address="10.1.2.3"),
    Rule("disabled", {"exempt_networks": NETS, "services": {"login": {"enabled": False}}},
         "login", "10.1.2.3", enabled=False),
    Rule("disabled-other-service", {"services": {"login": {"enabled": False}}}, "sshd", None),
    Rule("mandatory-replaced",
         {"mandatory": {"scope": "all"}, "services": {"sudo": {"mandatory": {"scope": "admins"}}}},
         "sudo", None, scope="admins"),
    Rule("mandatory-top-elsewhere",
         {"mandatory": {"scope": "all"}, "services": {"sudo": {"mandatory": {"scope": "admins"}}}},
         "sshd", None, scope="all"),
    Rule("trust-only-on-sshd", {"services": {"sshd": {"trusted_devices": True}}},
         "sshd", None, trust=True),
    Rule("trust-not-elsewhere", {"services": {"sshd": {"trusted_devices": True}}},
         "sudo", None, trust=False),
    Rule("trust-off-on-one", {"trusted_devices": {"enabled": True},
                              "services": {"su": {"trusted_devices": False}}},
         "su", None, trust=False),
    Rule("trust-top-on", {"trusted_devices": {"enabled": True},
                          "services": {"su": {"trusted_devices": False}}},
         "sshd", None, trust=True),
    Rule("service-name-exact", {"services": {"sshd": {"enabled": False}}}, "sshd-twofa", None),
]


@pytest.mark.parametrize("case", RULES, ids=[c.id for c in RULES])
def test_effective(case: Rule) -> None:
    rules = scope.effective(make_policy(case.policy), case.service, case.client)
    assert rules.enabled is case.enabled
    assert rules.mandatory.scope == case.scope
    assert rules.trusted_devices is case.trust
    assert (rules.network, rules.address) == (case.network, case.address)


def test_service_mandatory_keeps_the_top_level_keys_it_does_not_name() -> None:
    policy = make_policy({
        "mandatory": {"scope": "all", "admin_groups": ["ops"], "exempt_users": ["svc"]},
        "services": {"sudo": {"mandatory": {"scope": "admins"}},
                     "su": {"mandatory": {"exempt_users": []}}},
    })
    sudo = scope.effective(policy, "sudo", None).mandatory
    assert (sudo.scope, set(sudo.admin_groups), set(sudo.exempt_users)) == (
        "admins", {"ops"}, {"svc"})
    assert sudo.requires("bob", 4243, frozenset({"ops"}))
    assert not sudo.requires("bob", 4243, frozenset({"bob"}))
    su = scope.effective(policy, "su", None).mandatory
    assert su.scope == "all" and su.requires("svc", 4244, frozenset())  # exemption cleared
    assert not scope.effective(policy, "sshd", None).mandatory.requires("svc", 4244,
                                                                      frozenset())


def test_applied_policy_changes_only_mandatory_and_the_trust_switch() -> None:
    policy = make_policy({"trusted_devices": {"enabled": False, "days": 3},
                          "services": {"sshd": {"trusted_devices": True,
                                                "mandatory": {"scope": "all"}}}})
    seen = scope.effective(policy, "sshd", None).applied(policy)
    assert seen.trusted_devices.enabled and seen.trusted_devices.days == 3
    assert seen.mandatory.scope == "all"
    assert seen.replace(mandatory=policy.mandatory,
                        trusted_devices=policy.trusted_devices) == policy


# ------------------------------------------------------------------ core.authenticate
@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(Paths(state_dir=str(tmp_path / "state")), FixedClock(NOW))


def login(store: FileStore, policy: dict[str, Any], answers: list[str | None],
          service: str = "sshd", rhost: str | None = None, ssh: str | None = None,
          user: str = "alice", known: bool = True,
          groups: frozenset[str] = frozenset({"alice"})) -> tuple[core.Decision, Script]:
    conv = Script(answers)
    account = Account(name=user, uid=4242, gid=4242, home="/nonexistent",
                                groups=groups) if known else None
    request = core.Request(user=user, account=account, conversation=conv, service=service,
                           rhost=rhost, ssh_connection=ssh)
    return core.authenticate(request, make_policy(policy), store, FixedClock(NOW)), conv


def enroll(store: FileStore, **changes: Any) -> None:
    with store.update("alice") as st:
        st.enrolled, st.secret = True, SECRET
        for k, v in changes.items():
            setattr(st, k, v)


LAN = {"exempt_networks": ["10.0.0.0/8"]}


def test_disabled_service_ignores_an_enrolled_user_without_a_question(
        store: FileStore) -> None:
    enroll(store)
    policy = {"mandatory": {"scope": "all"}, "services": {"login": {"enabled": False}}}
    decision, conv = login(store, policy, [code()], service="login")
    assert (decision.outcome, decision.reason) == ("ignored", "service-disabled")
    assert conv.prompts == [] and conv.errors == [] and conv.infos == []
    decision, conv = login(store, policy, [code()], service="sshd")  # elsewhere: asked
    assert (decision.outcome, decision.reason) == ("success", "ok")


def test_disabled_service_says_nothing_about_accounts(store: FileStore) -> None:
    enroll(store, locked_until=NOW + 600)
    policy = {"services": {"login": {"enabled": False}}}
    for user, known in (("alice", True), ("nobody-here", False), ("bad/name", False)):
        decision, conv = login(store, policy, ["1"], service="login", user=user, known=known)
        assert (decision.outcome, decision.reason, conv.prompts) == (
            "ignored", "service-disabled", []), user


def test_exempt_network_asks_nobody(store: FileStore) -> None:
    enroll(store)
    decision, conv = login(store, LAN, [code()], rhost="10.1.2.3")
    assert (decision.outcome, decision.reason) == ("ignored", "exempt-network")
    assert dict(decision.fields) == {"address": "10.1.2.3", "network": "10.0.0.0/8"}
    assert conv.prompts == []
    # an unknown user too, without a prompt: known and unknown look alike
    decision, conv = login(store, LAN, [], rhost="10.1.2.3", user="ghost", known=False)
    assert (decision.outcome, decision.reason, conv.prompts) == (
        "ignored", "exempt-network", [])
    # required, never enrolled: no grace notice, no grace period started
    decision, conv = login(store, {**LAN, "mandatory": {"scope": "all"}}, [],
                           rhost="10.1.2.3", user="bob")
    assert (decision.outcome, decision.reason, conv.infos) == ("ignored", "exempt-network", [])
    assert store.load("bob") is None


def test_exempt_by_ssh_connection_not_by_rhost(store: FileStore) -> None:
    enroll(store)
    ssh = "::ffff:10.4.5.6 50000 10.0.0.1 22"
    decision, _ = login(store, LAN, [], rhost="203.0.113.9", ssh=ssh)
    assert (decision.reason, dict(decision.fields)["address"]) == ("exempt-network", "10.4.5.6")
    # PAM_RHOST inside, SSH_CONNECTION outside: the TCP peer decides, the code is asked
    decision, conv = login(store, LAN, [code()], rhost="10.4.5.6",
                           ssh="203.0.113.9 50000 10.0.0.1 22")
    assert decision.reason == "ok" and len(conv.prompts) == 1


@pytest.mark.parametrize(("changes", "reason", "message"), [
    ({"locked_until": NOW + 600}, "locked", "Too many wrong codes: locked until"),
    ({"suspended": NOW - 5}, "suspended", core.MSG_SUSPENDED),
])
def test_lock_still_applies_in_an_exempt_network(store: FileStore, changes: dict[str, Any],
                                                 reason: str, message: str) -> None:
    enroll(store, **changes)
    decision, conv = login(store, LAN, [code()], rhost="10.1.2.3")
    assert (decision.outcome, decision.reason) == ("refused", reason)
    assert conv.prompts == []  # refused without a question, as a locked user's code is
    assert len(conv.errors) == 1 and message in conv.errors[0]
    got = dict(decision.fields)
    assert (got["address"], got["network"]) == ("10.1.2.3", "10.0.0.0/8")
    if reason == "locked":
        assert got["locked_until"] == int(NOW + 600)
    state = store.load("alice")
    assert state is not None and state.failures == 0  # nothing counted


def test_expired_lock_is_no_refusal(store: FileStore) -> None:
    enroll(store, locked_until=NOW - 1)
    decision, _ = login(store, LAN, [], rhost="10.1.2.3")
    assert decision.reason == "exempt-network"


def test_per_service_mandatory(store: FileStore) -> None:
    policy = {"mandatory": {"scope": "none"},
              "services": {"sudo": {"mandatory": {"scope": "admins"}}},
              "enrollment": {"mode": "deny"}}
    wheel = frozenset({"alice", "wheel"})
    decision, _ = login(store, policy, [], service="sudo", groups=wheel)
    assert (decision.outcome, decision.reason) == ("refused", "enrollment-required")
    decision, _ = login(store, policy, [], service="sshd", groups=wheel)
    assert (decision.outcome, decision.reason) == ("ignored", "not-enrolled")
    decision, _ = login(store, policy, [], service="sudo")  # not an admin
    assert (decision.outcome, decision.reason) == ("ignored", "not-enrolled")


def test_trust_offered_only_where_the_service_allows(store: FileStore) -> None:
    enroll(store)
    policy = {"services": {"sshd": {"trusted_devices": True}}}
    decision, conv = login(store, policy, [code(), "no"], service="su", rhost="192.0.2.7")
    assert decision.reason == "ok" and len(conv.prompts) == 1  # no trust question on su
    decision, conv = login(store, policy, [code(1), "yes"], service="sshd", rhost="192.0.2.7")
    assert decision.reason == "ok" and len(conv.prompts) == 2
    assert "trusted_device" in dict(decision.fields)
    decision, _ = login(store, policy, [], service="sshd", rhost="192.0.2.7")
    assert decision.reason == "trusted-device"
    # switched off on sshd: the record is no longer honoured there
    off = {"services": {"sshd": {"trusted_devices": False}},
           "trusted_devices": {"enabled": True}}
    decision, conv = login(store, off, [None], service="sshd", rhost="192.0.2.7")
    assert decision.reason == "no-answer" and len(conv.prompts) == 1


# ------------------------------------------------------------------ ipaddress as the oracle
def _oracle(ip: str, net: str) -> bool:
    """Whether ``ip`` is in ``net`` by ``ipaddress``, v4-mapped addresses as IPv4."""
    import ipaddress

    def plain(a: ipaddress.IPv4Address | ipaddress.IPv6Address
              ) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        mapped = getattr(a, "ipv4_mapped", None)
        return mapped if mapped is not None else a

    network = ipaddress.ip_network(net)
    addr = plain(ipaddress.ip_address(ip))
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96 and \
            network.network_address.ipv4_mapped is not None:
        network = ipaddress.ip_network(
            f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
    return addr.version == network.version and addr in network


def _networks() -> Any:
    from hypothesis import strategies as st

    def cut(addr: Any, prefix: int) -> str:
        import ipaddress

        return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))

    v4 = st.builds(cut, st.ip_addresses(v=4), st.integers(1, 32))
    v6 = st.builds(cut, st.ip_addresses(v=6), st.integers(1, 128))
    mapped = st.builds(lambda a, p: cut(f"::ffff:{a}", p + 96), st.ip_addresses(v=4),
                       st.integers(1, 32))
    return st.one_of(v4, v6, mapped)


def test_matching_agrees_with_ipaddress() -> None:
    """Random addresses (v4, v6, v4-mapped, near the network) and networks: the int
    arithmetic of the login agrees with ``ipaddress`` wherever the policy accepts the
    network."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from pam_twofa.validators import Invalid, network

    def near(net: str, bits: int) -> str:
        import ipaddress

        n = ipaddress.ip_network(net)
        return str(ipaddress.ip_address(int(n.network_address) ^ bits)) if bits < 2 ** (
            n.max_prefixlen) else str(n.network_address)

    addresses = st.one_of(st.ip_addresses().map(str),
                          st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"))

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_networks(), addresses, st.integers(0, 2**32), st.booleans())
    def check(net: str, ip: str, bits: int, close: bool) -> None:
        if close:
            ip = near(net, bits)
        try:
            compiled = network(net)
        except Invalid:  # /0-like and the v4-holding v6 networks are refused at load
            return
        found = ip_address(ip)
        assert found is not None
        assert (scope.exempt_network(found[1], (compiled,)) is not None) == _oracle(ip, net), (
            ip, net)

    check()
