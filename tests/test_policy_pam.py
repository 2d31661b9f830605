"""A typo in the policy file (issue 12, item 12), through pamtester and the real module.

The last valid policy stays in force: users it does not cover log in (PAM_IGNORE),
enrolled users are still asked, what it refuses is still refused; every login logs
the file's error (one line, FILE:LINE) and ``twofa-admin status`` shows it. Only
when no valid policy was ever compiled does failmode decide. Also: status warns
when the syslog socket is missing (issue 12, item 3).
"""

from __future__ import annotations

import re

from tests.harness.pamenv import PamEnv, Result, oathtool
from tests.harness.wait import wait_fresh_step
from tests.pam_support import PROMPT, enroll, login, output, wrong_code

VALID = "mandatory: {scope: admins}\nenrollment:\n  grace_days: 0\n"
TYPO = "mandatory: {scope: admins}\nenrollment:\n  grace_dayz: 0\n"  # line 3


def lines(res: Result) -> list[str]:
    return [line.partition("]: ")[2] for line in res.log_lines if "pam_twofa(svc:auth):" in line]


def decision(res: Result) -> str:
    found = [line for line in lines(res) if " result=" in line]
    assert len(found) == 1, res
    match = re.search(r" result=(\S+) reason=(\S+)", found[0])
    assert match, found
    return f"{match[1]}/{match[2]}"


def policy_errors(res: Result, env: PamEnv) -> list[str]:
    return [line for line in lines(res) if "reason=bad-policy" in line]


def test_a_typo_keeps_the_last_valid_policy_for_logins(tw: PamEnv) -> None:
    tw.write_policy(VALID)
    secret = enroll(tw, "alice")
    wait_fresh_step()
    assert decision(ok := login(tw, "alice", oathtool(secret))) == "success/ok" and ok.rc == 0
    assert decision(res := login(tw, "bob", None)) == "ignored/not-enrolled" and res.rc == 0
    assert decision(res := login(tw, "carol", None)) == "refused/enrollment-required"
    assert not policy_errors(res, tw)

    tw.write_policy(TYPO)
    # out of scope: still PAM_IGNORE, the password alone decides; the error is logged
    bob = login(tw, "bob", None)
    assert bob.rc == 0 and decision(bob) == "ignored/not-enrolled", bob
    errors = policy_errors(bob, tw)
    assert len(errors) == 1, bob
    assert f"error: {tw.policy}:3: unknown key enrollment.grace_dayz" in errors[0], errors
    assert "policy_in_force=last-valid" in errors[0]
    # enrolled: still asked, and a wrong code is still refused
    alice = login(tw, "alice", wrong_code(secret))
    assert PROMPT in output(alice) and alice.rc != 0, alice
    assert decision(alice) == "refused/bad-code" and len(policy_errors(alice, tw)) == 1
    # the last valid policy's own rule (grace_days: 0), not the defaults' 7 days of grace
    carol = login(tw, "carol", None)
    assert carol.rc != 0 and decision(carol) == "refused/enrollment-required", carol
    assert len(policy_errors(carol, tw)) == 1

    status = tw.admin("--log-socket", str(tw.log_socket), "status")
    assert status.returncode == 0, status.stderr
    warned = [w for w in status.stdout.splitlines() if w.startswith("Warning: ")]
    assert len(warned) == 1, status.stdout
    assert f"policy is invalid: {tw.policy}:3: unknown key enrollment.grace_dayz" in warned[0]
    assert "logins use the last valid policy" in warned[0]

    tw.write_policy(VALID.replace("0\n", "0 # fixed\n"))
    fixed = login(tw, "bob", None)
    assert fixed.rc == 0 and not policy_errors(fixed, tw)
    status = tw.admin("--log-socket", str(tw.log_socket), "status")
    assert "Warning" not in status.stdout, status.stdout


def test_no_valid_policy_ever_compiled_follows_failmode(tw: PamEnv) -> None:
    tw.write_policy(TYPO)
    bob = login(tw, "bob", None)
    assert bob.rc != 0, bob  # failmode secure (the default)
    assert decision(bob) == "refused/bad-policy"
    assert f"{tw.policy}:3: unknown key enrollment.grace_dayz" in lines(bob)[0]
    tw.write_policy("failmode: safe\n" + TYPO)  # the file's own failmode still counts
    bob = login(tw, "bob", None)
    assert bob.rc == 0 and decision(bob) == "ignored/bad-policy", bob
    status = tw.admin("--log-socket", str(tw.log_socket), "status")
    assert "no valid policy was compiled before" in status.stdout, status.stdout


def test_status_warns_when_the_log_socket_is_missing(tw: PamEnv) -> None:
    missing = tw.root / "no-such-log"
    res = tw.admin("--log-socket", str(missing), "status")
    assert res.returncode == 0, res.stderr
    assert f"Warning: no syslog socket at {missing}: pam-twofa's log lines are lost" in (
        res.stdout), res.stdout
    assert "log_socket=PATH" in res.stdout
    res = tw.admin("--log-socket", str(missing), "status", "--json")
    assert res.stdout.startswith("[") and f"no syslog socket at {missing}" in res.stderr
    good = tw.admin("--log-socket", str(tw.log_socket), "status")
    assert "Warning" not in good.stdout, good.stdout
    refused = tw.root / "dead-socket"  # a socket file nobody listens on
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(refused))
    res = tw.admin("--log-socket", str(refused), "status")
    assert f"Warning: nothing listens on the syslog socket {refused}" in res.stdout
