"""``lockout.max_consecutive_failures`` through pamtester and a real SMTP server (issue 11
finding 8, NIST SP 800-63B 5.2.2): reaching it suspends the second factor until
``twofa-admin unlock``, logs reason=suspended and mails the security address; replays
and empty answers do not count toward it.  Before it, the doubling lock allowed wrong
codes for ever (377 a year with the defaults)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.harness.pamenv import PamEnv, oathtool
from tests.harness.smtpd import CertAuthority, MailServer
from tests.harness.wait import wait_fresh_step
from tests.pam_support import enroll, log_text, login, output, status, wrong_code
from tests.test_emergency_pam import ADDRESS, World

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
SUSPENDED = "Two-factor authentication is suspended for your account"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def world(pam_env: PamEnv, ca: CertAuthority) -> Iterator[World]:
    with MailServer(ca.server_context("mail.test"), "starttls",
                    users={"bob": "hunter2"}) as srv:
        yield World(pam_env, ca, srv)


def _limit(world: World, limit: int) -> None:
    world.policy(port=world.srv.port, max_failures=1000)
    text = world.env.policy.read_text().replace(
        "lockout: {max_failures: 1000}",
        f"lockout: {{max_failures: 1000, max_consecutive_failures: {limit}}}")
    world.env.write_policy(text)


def test_limit_suspends_until_unlock_and_mails_the_owner(world: World) -> None:
    _limit(world, 3)
    env, secret = world.env, world.secret
    bad = wrong_code(secret)
    wait_fresh_step()
    assert world.login(["secret", oathtool(secret)]).rc == 0
    used = oathtool(secret)
    for answer in (used, "", used):  # a replay and an empty answer: not counted
        assert world.login(["secret", answer]).rc != 0
    for n in (1, 2):
        res = world.login(["secret", bad])
        assert log_text(res).endswith(f"reason=bad-code failures={n}"), res
    assert world.srv.received == []
    res = world.login(["secret", bad])  # the third wrong code in a row
    assert res.rc != 0 and SUSPENDED in output(res), res
    assert log_text(res).endswith("reason=bad-code failures=3 suspended=yes notified=yes")
    [notice] = world.srv.wait(1)
    assert notice.rcpt_tos == [ADDRESS], notice
    assert "suspended" in notice.body and "knows your password" in notice.body
    assert secret not in notice.body and bad not in notice.body
    # every code is refused now, and nothing more is counted or mailed
    res = world.login(["secret", oathtool(secret, at=int(time.time()) + 30)])
    assert res.rc != 0 and SUSPENDED in output(res), res
    assert log_text(res).endswith("result=refused reason=suspended")
    res = world.login(["secret", "email"])  # no emergency code either
    assert res.rc != 0 and log_text(res).endswith("result=refused reason=suspended"), res
    st = status(env, "alice")
    assert st["failures"] == 3 and st["suspended_since"] is not None
    assert "suspended (twofa-admin unlock)" in env.admin("status").stdout
    assert len(world.srv.received) == 1
    # the admin unlocks: the next step's code logs in
    assert env.admin("unlock", "alice").returncode == 0
    res = world.login(["secret", oathtool(secret, at=int(time.time()) + 30)])
    assert res.rc == 0, res
    assert status(env, "alice")["suspended_since"] is None


def test_no_security_email_no_mail(tw: PamEnv) -> None:
    tw.write_policy("lockout: {max_failures: 1000, max_consecutive_failures: 1}\n")
    secret = enroll(tw, "alice")
    res = login(tw, "alice", wrong_code(secret))
    assert log_text(res).endswith("reason=bad-code failures=1 suspended=yes"), res
    res = login(tw, "alice", oathtool(secret))
    assert log_text(res).endswith("reason=suspended"), res


def test_a_wrong_password_counts_nothing_only_with_requisite(tw: PamEnv) -> None:
    """The documented limit: the module cannot know that the password module failed
    (PAM_AUTHTOK is set either way), so only a stack that ends at a wrong password
    (requisite) keeps wrong codes after it from counting."""
    from tests.harness.pamenv import PAM_MATRIX, PAM_SET_ITEMS

    secret = enroll(tw, "alice")
    bad = wrong_code(secret)
    for control, counted in (("requisite", 0), ("required", 1)):
        tw.service_raw("svc", [f"auth required {PAM_SET_ITEMS}",
                               f"auth {control} {PAM_MATRIX} passdb={tw.passdb}",
                               tw.module_line(), "account required pam_permit.so"])
        res = tw.pamtester("svc", "alice", ["wrong-password", bad])
        assert res.rc != 0, res
        assert status(tw, "alice")["failures"] == counted, control
