"""Issue 11, finding 2: input the module cannot decode, through pamtester.

pam_python decodes conversation answers, the user name and PAM_RHOST strictly as
UTF-8; the UnicodeDecodeError used to reach the catch-all and, under
``failmode=safe``, became PAM_IGNORE: the password alone logged in. Once user input
has been read, failmode never applies: an undecodable answer is a wrong code
(counted), an undecodable user name is a refusal after the usual prompt, and an
undecodable PAM_RHOST is treated as absent (logged escaped).
"""

from __future__ import annotations

import pytest

from tests.harness.pamenv import PamEnv
from tests.pam_support import PROMPT, enroll, log_text, output, status

BAD = b"\xff\xfe"  # not UTF-8


@pytest.fixture(params=["secure", "safe"])
def failmode(request: pytest.FixtureRequest, tw: PamEnv) -> str:
    tw.service("fm", f"failmode={request.param}")
    tw.write_policy("mandatory: {scope: all}\nlockout: {max_failures: 1000}\n")
    return str(request.param)


def test_undecodable_code_is_a_wrong_code(tw: PamEnv, failmode: str) -> None:
    enroll(tw, "alice")
    for n in (1, 2):
        res = tw.pamtester("fm", "alice", ["secret", BAD])
        assert res.rc != 0, res  # was 0 under failmode=safe: the password alone logged in
        assert "Wrong verification code." in output(res)
        assert log_text(res, "fm").endswith(
            f"user=alice rhost=- result=refused reason=bad-code failures={n}"), res
    assert status(tw, "alice")["failures"] == 2


def test_undecodable_user_name_is_refused_after_the_prompt(tw: PamEnv, failmode: str) -> None:
    tw.service_raw("raw", [tw.module_line(f"failmode={failmode}"),
                           "auth required pam_permit.so"])
    res = tw.pamtester("raw", "al\udcffice", ["123456"])  # argv bytes b"al\xffice"
    assert res.rc != 0, res
    assert PROMPT in output(res) and "Wrong verification code." in output(res)
    assert log_text(res, "raw").endswith(
        "user=al\\xffice rhost=- result=refused reason=bad-user-name"), res


def test_undecodable_user_name_refused_even_with_a_broken_policy(tw: PamEnv) -> None:
    """A hostile user name is a refusal, whatever failmode says about a broken policy."""
    tw.write_policy("bogus: 1\n")
    tw.service_raw("raw", [tw.module_line("failmode=safe"),
                           "auth required pam_permit.so"])
    res = tw.pamtester("raw", "al\udcffice", ["123456"])
    assert res.rc != 0, res
    assert "result=refused reason=bad-policy after_input=yes " in log_text(res, "raw"), res
    res = tw.pamtester("raw", "bob", ["123456"])  # a plain name: failmode=safe applies
    assert res.rc == 0, res
    assert "result=ignored reason=bad-policy failmode=safe " in log_text(res, "raw"), res


def test_undecodable_rhost_is_absent(tw: PamEnv, failmode: str) -> None:
    """PAM_RHOST is the client's (a DNS name under sshd with UseDNS): no IP, no trust."""
    secret = enroll(tw, "alice")
    rhost = {"PAM_RHOST": "h\udcffst"}
    res = tw.pamtester("fm", "alice", ["secret", "000000"], env=rhost)
    assert res.rc != 0, res
    assert log_text(res, "fm").endswith("user=alice rhost=h\\xffst result=refused "
                                        "reason=bad-code failures=1"), res
    res = tw.pamtester("fm", "alice", ["secret", tw.oathtool(secret)], env=rhost)
    assert res.rc == 0, res
    assert log_text(res, "fm").endswith("user=alice rhost=h\\xffst result=success reason=ok")


def test_internal_error_after_the_answer_is_a_refusal(tw: PamEnv, failmode: str) -> None:
    """The rule is structural: any internal error once the code was asked refuses, under
    failmode=safe too (before: PAM_IGNORE, the password alone logged in). The error here:
    the user's lock file is a symlink (O_NOFOLLOW), which only the check after the
    answer opens."""
    enroll(tw, "alice")
    lock = tw.state_dir / "locks" / "alice.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(tw.root / "elsewhere")
    res = tw.pamtester("fm", "alice", ["secret", "123456"])
    assert res.rc != 0, res
    assert PROMPT in output(res) and "unavailable" in output(res)
    assert log_text(res, "fm").startswith(
        "pam_twofa(fm:auth): user=alice rhost=- result=refused reason=state-error "
        "after_input=yes error: cannot open lock "), res
    bob = tw.pamtester("fm", "bob", ["secret"])  # not enrolled, no prompt: as before
    assert bob.rc == 0, bob  # grace (scope all, grace_days default)
