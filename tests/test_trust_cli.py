"""Listing and revoking trusted devices: ``twofa-admin trust`` (root) and
``twofa-enroll devices`` (the user, through the real enrollment service), then a real
login (pamtester, client IP from PAM_RHOST) showing that a revocation takes effect."""

from __future__ import annotations

import json

import pytest

from pam_twofa import trust
from pam_twofa.clock import Clock
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.policy import TrustPolicy
from tests.enroll_support import client, running_service
from tests.harness.pamenv import PamEnv

TP = TrustPolicy(enabled=True, days=30, max_per_user=10, networks=frozenset(),
                 require_key=False)


@pytest.fixture
def world(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("alice")
    pam_env.add_user("bob")
    pam_env.service("svc")
    pam_env.write_policy("mandatory: {scope: all}\ntrusted_devices: {enabled: true}\n")
    pam_env.allow_uid(4242)
    pam_env.allow_uid(4243)
    for user in ("alice", "bob"):
        assert pam_env.admin("enroll", user).returncode == 0
    return pam_env


def add_devices(env: PamEnv, user: str, ips: list[str]) -> list[str]:
    store = FileStore(Paths(state_dir=str(env.state_dir)), Clock())
    now = Clock().now()
    with store.update(user) as st:
        return [trust.add(st, trust.Binding(ip, None, "svc"), TP, now)["id"] for ip in ips]


def test_admin_trust_list_and_revoke(world: PamEnv) -> None:
    ids = add_devices(world, "alice", ["192.0.2.1", "192.0.2.2", "192.0.2.3"])
    res = world.admin("trust", "list", "alice", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["ip"] for r in json.loads(res.stdout)] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    table = world.admin("trust", "list", "alice").stdout
    assert all(i in table for i in ids) and "192.0.2.2" in table and " svc " in table
    assert world.admin("trust", "revoke", "alice", ids[1]).returncode == 0
    assert [r["id"] for r in json.loads(world.admin("trust", "list", "alice",
                                                    "--json").stdout)] == [ids[0], ids[2]]
    assert world.admin("trust", "revoke", "alice", "nope").returncode == 67
    assert world.admin("trust", "revoke", "alice").returncode == 2  # ID or --all
    assert world.admin("trust", "revoke", "alice", "--all").returncode == 0
    assert json.loads(world.admin("trust", "list", "alice", "--json").stdout) == []
    assert world.admin("trust", "list", "al/ice").returncode == 2


def test_revocation_takes_effect_on_the_next_login(world: PamEnv) -> None:
    [dev] = add_devices(world, "alice", ["192.0.2.9"])
    rhost = {"PAM_RHOST": "192.0.2.9"}
    res = world.pamtester("svc", "alice", ["secret"], env=rhost)
    assert res.rc == 0, res
    assert "Trusted device: no verification code needed (trusted until" in res.stdout + res.stderr
    assert f"reason=trusted-device device={dev}" in "".join(res.log_lines)
    assert world.admin("trust", "revoke", "alice", dev).returncode == 0
    res = world.pamtester("svc", "alice", ["secret", "000000"], env=rhost)
    assert res.rc != 0, res
    assert "Verification code: " in res.stderr


def test_user_lists_and_revokes_own_devices_through_the_socket(world: PamEnv) -> None:
    mine = add_devices(world, "alice", ["192.0.2.1", "192.0.2.2"])
    theirs = add_devices(world, "bob", ["198.51.100.1"])
    with running_service(world) as service:
        res = client(world, service, ["devices", "--json"], uid=4242)
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)
        assert [r["id"] for r in rows] == mine  # only the caller's own
        assert set(rows[0]) == {"id", "ip", "key", "service", "created", "expires",
                                "last_used", "expired"}
        res = client(world, service, ["devices"], uid=4242)
        assert "192.0.2.1" in res.stdout and "198.51.100.1" not in res.stdout
        res = client(world, service, ["devices", "revoke", theirs[0]], uid=4242)
        assert res.returncode != 0  # another user's id is not the caller's
        res = client(world, service, ["devices", "revoke", mine[0]], uid=4242)
        assert res.returncode == 0, res.stderr
        assert "Revoked 1 trusted device(s)." in res.stdout
        res = client(world, service, ["devices", "revoke", "--all"], uid=4242)
        assert res.returncode == 0 and "Revoked 1" in res.stdout, res.stderr
        res = client(world, service, ["devices", "--json"], uid=4242)
        assert json.loads(res.stdout) == []
        res = client(world, service, ["devices", "--json"], uid=4243)
        assert [r["id"] for r in json.loads(res.stdout)] == theirs
