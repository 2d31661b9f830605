"""Issue 11 finding 8, through pamtester: a trusted device is honoured only by the PAM
service it was trusted on, and every uid-0 account is root for the policy (scope and
grace decided by uid).  Before the fix a record made on sshd let an IMAP-like service
(which sets PAM_RHOST and nothing else) skip the code, and ``toor`` (uid 0) fell out
of ``users: [root]`` and got a grace period of its own."""

from __future__ import annotations

import json
import time

from tests.enroll_support import client, running_service
from tests.harness.pamenv import PamEnv, oathtool
from tests.pam_support import enroll, log_text, output, wrong_code

RHOST = {"PAM_RHOST": "192.0.2.7"}


def _trust_on_sshd(pam_env: PamEnv) -> tuple[str, str]:
    pam_env.add_user("alice")
    pam_env.service("sshd")
    pam_env.service("imap")
    pam_env.write_policy("trusted_devices: {enabled: true}\n")
    secret = enroll(pam_env, "alice")
    res = pam_env.pamtester("sshd", "alice", ["secret", oathtool(secret), "yes"], env=RHOST)
    assert res.rc == 0 and "This device is trusted until" in output(res), res
    assert "trusted_device=" in log_text(res, "sshd")
    return secret, wrong_code(secret)


def test_trust_made_on_sshd_is_not_honoured_by_another_service(pam_env: PamEnv) -> None:
    _secret, bad = _trust_on_sshd(pam_env)
    # the same client address on another service: the code is asked (and a wrong one fails)
    res = pam_env.pamtester("imap", "alice", ["secret", bad], env=RHOST)
    assert res.rc != 0, res  # before the fix: rc 0, reason=trusted-device
    assert "Verification code: " in output(res)
    assert "reason=bad-code" in log_text(res, "imap")
    rows = json.loads(pam_env.admin("trust", "list", "alice", "--json").stdout)
    assert [r["service"] for r in rows] == ["sshd"]
    # on sshd the record still skips the code
    res = pam_env.pamtester("sshd", "alice", ["secret"], env=RHOST)
    assert res.rc == 0, res
    assert "reason=trusted-device" in log_text(res, "sshd")


def test_records_from_before_the_binding_are_honoured_on_sshd_only(pam_env: PamEnv) -> None:
    _secret, bad = _trust_on_sshd(pam_env)
    path = pam_env.state_dir / "users" / "alice.json"
    data = json.loads(path.read_text())
    for record in data["devices"]:  # as schema version 1 wrote them: no service
        del record["service"]
    data["version"] = 1
    path.write_text(json.dumps(data))
    res = pam_env.pamtester("imap", "alice", ["secret", bad], env=RHOST)
    assert res.rc != 0 and "reason=bad-code" in log_text(res, "imap"), res
    res = pam_env.pamtester("sshd", "alice", ["secret"], env=RHOST)
    assert res.rc == 0 and "reason=trusted-device" in log_text(res, "sshd"), res
    assert json.loads(path.read_text())["version"] == 2  # written back migrated
    assert json.loads(path.read_text())["devices"][0]["service"] == "sshd"


def test_trusted_device_login_is_not_a_login_with_a_code(pam_env: PamEnv) -> None:
    _trust_on_sshd(pam_env)
    before = json.loads(pam_env.admin("status", "alice", "--json").stdout)
    time.sleep(1.1)
    assert pam_env.pamtester("sshd", "alice", ["secret"], env=RHOST).rc == 0
    after = json.loads(pam_env.admin("status", "alice", "--json").stdout)
    assert after["last_success"] == before["last_success"]  # the code login, unchanged
    assert after["last_trusted"] > before["last_success"]
    # what the user sees (issue 12 item 10): two rows, not one "last login with a code"
    pam_env.allow_uid(pam_env.users["alice"].uid)
    with running_service(pam_env) as service:
        res = client(pam_env, service, ["status"], uid=pam_env.users["alice"].uid)
    assert res.returncode == 0, res.stderr
    rows = dict(line.split(":", 1) for line in res.stdout.splitlines() if ":" in line)
    from pam_twofa.clock import format_time

    assert rows["Last login with a code"].strip() == format_time(before["last_success"])
    assert rows["Last trusted-device login"].strip() == format_time(after["last_trusted"])


def _roots(pam_env: PamEnv, policy: str) -> None:
    pam_env.add_user("root", uid=0)
    pam_env.add_user("toor", uid=0, share_uid=True)
    pam_env.service("svc")
    pam_env.write_policy(policy)


def test_toor_is_root_for_selected_users(pam_env: PamEnv) -> None:
    _roots(pam_env, "mandatory: {scope: selected, users: [root]}\n"
                    "enrollment: {grace_days: 0}\n")
    res = pam_env.pamtester("svc", "toor", ["secret"])
    assert res.rc != 0, res  # before the fix: not required, the password alone let in
    assert "reason=enrollment-required" in log_text(res)
    # exempting the name toor does not exempt uid 0; exempting root does
    pam_env.write_policy("mandatory: {scope: selected, users: [root], exempt_users: [toor]}\n"
                         "enrollment: {grace_days: 0}\n")
    assert pam_env.pamtester("svc", "toor", ["secret"]).rc != 0
    pam_env.write_policy("mandatory: {scope: selected, users: [root], exempt_users: [root]}\n"
                         "enrollment: {grace_days: 0}\n")
    res = pam_env.pamtester("svc", "toor", ["secret"])
    assert res.rc == 0 and "reason=not-enrolled" in log_text(res), res


def test_uid_0_has_one_grace_period(pam_env: PamEnv) -> None:
    _roots(pam_env, "mandatory: {scope: admins}\nenrollment: {grace_days: 7}\n")
    first = pam_env.pamtester("svc", "root", ["secret"])
    assert first.rc == 0 and "reason=grace" in log_text(first), first
    until = log_text(first).rsplit("grace_until=", 1)[1]
    time.sleep(1.1)
    second = pam_env.pamtester("svc", "toor", ["secret"])
    assert second.rc == 0, second
    assert log_text(second).endswith(f"reason=grace grace_until={until}")  # root's, not new
    assert not (pam_env.state_dir / "users" / "toor.json").exists()


def test_admin_status_lists_every_uid_0_account(pam_env: PamEnv) -> None:
    _roots(pam_env, "")
    done = pam_env.admin("status")
    assert done.returncode == 0, done.stderr
    assert "Accounts with uid 0: root, toor (the policy treats each as root" in done.stdout
