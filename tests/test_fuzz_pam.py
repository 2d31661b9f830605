"""Property-based fuzzing (hypothesis) of the decision and of every way out of the
``pam_sm_*`` entries (issue 8): any answers, user names, module arguments, PAM
environment and conversation failures give a deliberate PAM code, never an exception.

``FakePamh`` below is a stand-in for pam_python's handle. This is the one place a
stand-in is justified: hypothesis needs thousands of runs, a fresh pamtester process
costs ~20 ms each, and a Python host cannot drive pam_python's own handle. Everything
behind the handle is real (policy files, the state store on disk, NSS lookups, the
syslog socket); the same paths run through pamtester in test_*_pam.py.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pam_twofa import core, login, pam_entry, pamface, single, totp
from pam_twofa.accounts import Account
from pam_twofa.clock import Clock, FixedClock
from pam_twofa.errors import TwofaError, UsageError
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.policy import build
from pam_twofa.policyfile import parse_text
from pam_twofa.store import validate_user_name
from tests.harness.pamenv import PamEnv
from tests.harness.procs import LogSocket
from tests.pam_support import enroll, log_text, status

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
RIGHT = "<the right code>"  # replaced by the current code when answered
CONV_ERR = "<conversation error>"  # the conversation raises pamh.exception


class FakePamh:
    """pam_python's handle API as the module uses it (see the module docstring)."""

    PAM_SUCCESS, PAM_SERVICE_ERR, PAM_SYSTEM_ERR, PAM_AUTH_ERR = 0, 3, 4, 7
    PAM_CONV_ERR, PAM_IGNORE, PAM_SILENT = 19, 25, 0x8000
    PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_ERROR_MSG, PAM_TEXT_INFO = 1, 2, 3, 4

    class exception(Exception):  # pam_python's (lower-case) name
        def __init__(self, pam_result: int) -> None:
            super().__init__(pam_result)
            self.pam_result = pam_result

    class Message:
        def __init__(self, msg_style: int, msg: str) -> None:
            self.msg_style = msg_style
            self.msg = msg

    class Response:
        def __init__(self, resp: str | None, resp_retcode: int = 0) -> None:
            self.resp = resp
            self.resp_retcode = resp_retcode

    def __init__(self, user: str | None, answers: list[str | None], service: str,
                 rhost: str | None, env: dict[str, Any]) -> None:
        self.user = user
        self.answers = list(answers)
        self.service = service
        self.rhost = rhost
        self.env = env
        self.authtok: str | None = None
        self.oldauthtok: str | None = None
        self.asked: list[str] = []

    def get_user(self, prompt: str | None = None) -> str | None:
        if self.user == CONV_ERR:
            raise self.exception(self.PAM_CONV_ERR)
        return self.user

    def conversation(self, msg: Message) -> Response:
        if msg.msg_style not in (self.PAM_PROMPT_ECHO_OFF, self.PAM_PROMPT_ECHO_ON):
            return self.Response(None)
        self.asked.append(msg.msg)
        answer = self.answers.pop(0) if self.answers else None
        if answer == CONV_ERR:
            raise self.exception(self.PAM_CONV_ERR)
        if answer == RIGHT:
            answer = totp.totp(totp.b32decode(SECRET), time.time())
        return self.Response(answer)


POLICIES = ["", "mandatory: {scope: all}\n", "mandatory: {scope: admins}\n",
            "mandatory: {scope: all}\nenrollment: {mode: deny}\n",
            "mandatory: {scope: all}\nenrollment: {grace_days: 0}\n",
            "failmode: safe\nbogus: 1\n", "bogus: 1\n", "lockout: {max_failures: 2}\n",
            "trusted_devices: {enabled: true}\n", "totp: {window: 0}\n"]
answers = st.lists(st.one_of(st.text(max_size=12), st.none(),
                             st.sampled_from([RIGHT, CONV_ERR, "y", "yes", "n", "", " 1 2 3"])),
                   max_size=4)
users = st.one_of(st.sampled_from(["root", "nobody", "no-such-user-xyz", CONV_ERR, "", None,
                                   "../x", "a/b", "x\ny", "u" * 300]), st.text(max_size=12))
extra_args = st.lists(
    st.one_of(st.sampled_from(["debug", "failmode=safe", "failmode=secure", "failmode=open",
                               "single_prompt", "debug=1", "=", "policy=", "state_dir=rel",
                               "single_prompt=ask", "single_prompt=verify", "single_prompt=x",
                               "require_publickey", "unprivileged=ignore", "unprivileged=no"]),
              st.text(max_size=10).filter(lambda a: not a.startswith(
                  ("policy=/", "state_dir=/", "log_socket=/")))),
    max_size=2)
envs = st.dictionaries(st.sampled_from(["SSH_CONNECTION", "SSH_AUTH_INFO_0", "OTHER"]),
                       st.one_of(st.text(max_size=30), st.none(), st.integers(),
                                 st.just("203.0.113.7 5555 127.0.0.1 22"),
                                 st.just("publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")),
                       max_size=3)


def _plain_name(user: str | None) -> bool:
    """Whether the face takes ``user`` as an honest name (else: hostile input)."""
    if user is None or user == CONV_ERR:
        return True  # no name was read
    try:
        validate_user_name(user)
    except TwofaError:
        return False
    return True


def test_pam_entries_return_deliberate_codes(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    policy = tmp_path / "policy.yaml"
    sock = LogSocket(tmp_path / "log.sock")
    base = [str(pam_entry.__file__), f"policy={policy}", f"state_dir={state_dir}",
            f"log_socket={sock.path}"]
    deliberate = {FakePamh.PAM_SUCCESS, FakePamh.PAM_IGNORE, FakePamh.PAM_AUTH_ERR}
    seen: set[int] = set()

    @FUZZ
    @given(st.sampled_from(POLICIES), users, answers, extra_args, envs,
           st.sampled_from([0, FakePamh.PAM_SILENT]), st.one_of(st.none(), st.text(max_size=20)))
    @example("", "root", [RIGHT], [], {}, 0, None)
    @example("trusted_devices: {enabled: true}\n", "root", [RIGHT, "y"],
             [], {"SSH_CONNECTION": "203.0.113.7 5555 127.0.0.1 22"}, 0, "203.0.113.7")
    @example("", "root", [CONV_ERR], [], {}, 0, None)
    @example("failmode: safe\nbogus: 1\n", "root", [], [], {}, 0, None)
    def login(policy_text: str, user: str | None, said: list[str | None], extra: list[str],
              env: dict[str, Any], flags: int, rhost: str | None) -> None:
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(mode=0o700)
        with FileStore(Paths(state_dir=str(state_dir)), Clock()).update("root") as st_:
            st_.enrolled, st_.secret = True, SECRET
        policy.write_text(policy_text)
        pamh = FakePamh(user, said, "fuzz", rhost, env)
        rc = pam_entry.pam_sm_authenticate(pamh, flags, [*base, *extra])
        lines = sock.drain()
        assert rc in deliberate, (rc, lines)
        key_info = env.get("SSH_AUTH_INFO_0")
        if "require_publickey" in extra and not pamface.has_publickey(
                key_info if isinstance(key_info, str) else None):
            assert rc == FakePamh.PAM_AUTH_ERR, (rc, lines)  # first, whatever else is wrong
            assert any(" result=refused reason=no-publickey" in x for x in lines), lines
            return
        try:
            pamface.parse_args([*base[1:], *extra])
        except UsageError:  # bad argument: failmode= still applies, the line still goes out
            modes = [a for a in extra if a in ("failmode=safe", "failmode=secure")]
            safe = bool(modes) and modes[-1] == "failmode=safe"  # the last one given wins
            # never failmode: a hostile user name, or the old one-line single_prompt
            safe = safe and "single_prompt" not in extra and _plain_name(user)
            assert rc == (FakePamh.PAM_IGNORE if safe else FakePamh.PAM_AUTH_ERR), (rc, lines)
            assert any(" reason=bad-argument " in line for line in lines), lines
        else:
            if "single_prompt=ask" in extra and pamh.oldauthtok is not None:
                # the ask line decides nothing: it kept the code for a verify line
                assert rc == FakePamh.PAM_IGNORE, (rc, lines)
                assert pamh.asked == [single.PROMPT], pamh.asked
            else:
                assert any(" result=" in line for line in lines), lines  # one decision line
        if rc == FakePamh.PAM_SUCCESS:  # only the enrolled user, only with the right code
            assert user == "root" and RIGHT in said, (said, lines)
        seen.add(rc)
        for entry in (pam_entry.pam_sm_setcred, pam_entry.pam_sm_acct_mgmt,
                      pam_entry.pam_sm_chauthtok, pam_entry.pam_sm_open_session,
                      pam_entry.pam_sm_close_session):
            assert entry(pamh, flags, [*base, *extra]) in deliberate

    try:
        login()
    finally:
        sock.close()
    assert seen == deliberate  # the fuzz reached all three outcomes


def test_core_with_any_answer(tmp_path: Path) -> None:
    """core.authenticate: a right code in the window succeeds once; anything else is a
    refusal with a reason; nothing raises."""
    at = 1_800_000_015.0
    key = totp.b32decode(SECRET)
    good = {totp.totp(key, at + d) for d in (-30, 0, 30)}
    policy = build(parse_text("lockout: {max_failures: 1000}\n", "p"))
    store = FileStore(Paths(state_dir=str(tmp_path / "state")), FixedClock(at))
    account = Account(name="alice", uid=4242, gid=4242, home="/nonexistent",
                      groups=frozenset())

    class Conv(login.Conversation):
        def __init__(self, answer: str | None) -> None:
            self.answer = answer

        def ask(self, prompt: str, echo: bool = False) -> str | None:
            return self.answer

    @FUZZ
    @given(st.one_of(st.text(max_size=16), st.none(), st.sampled_from(sorted(good)),
                     st.sampled_from(sorted(good)).map(lambda c: f" {c[:3]} {c[3:]} ")))
    def decide(answer: str | None) -> None:
        with store.update("alice") as st_:
            st_.enrolled, st_.secret, st_.last_step = True, SECRET, -1
            st_.failures, st_.recent_failures, st_.lock_level, st_.locked_until = 0, [], 0, 0
        request = login.Request(user="alice", account=account, conversation=Conv(answer))
        try:
            decision = core.authenticate(request, policy, store, FixedClock(at))
        except TwofaError as exc:  # pragma: no cover (a failure, with the reason)
            raise AssertionError(f"core raised {exc!r}") from exc
        code = totp.normalize_code(answer, 6) if answer is not None else None
        if code in good:
            assert (decision.outcome, decision.reason) == (login.Outcome.SUCCESS, "ok")
            again = core.authenticate(request, policy, store, FixedClock(at))
            assert (again.outcome, again.reason) == (login.Outcome.REFUSE, "replay")
        else:
            assert decision.outcome == login.Outcome.REFUSE
            assert decision.reason in ("bad-code", "no-answer", "empty"), decision
            # "empty" (not counted) only for an answer with nothing in it
            assert (decision.reason == "empty") == (answer is not None and not answer.strip())

    decide()


def _blank(answer: bytes) -> bool:
    """An answer with nothing in it once decoded (Python's whitespace): refused as
    ``empty`` and not counted (verify.verify), so not part of this count."""
    try:
        return not answer.decode("utf-8").strip()
    except UnicodeDecodeError:  # pam_python refuses it: a wrong answer, counted
        return False


def test_pamtester_conversation_any_bytes(tw: PamEnv) -> None:
    """Issue 11, finding 2: any bytes at the code prompt, through the real pam_python
    (which decodes strictly), under both failmodes: never PAM_SUCCESS or PAM_IGNORE for
    an enrolled user, and every answer counts as a wrong code."""
    tw.write_policy("mandatory: {scope: all}\nlockout: {max_failures: 1000}\n")
    tw.service("fm-safe", "failmode=safe")
    tw.service("fm-secure", "failmode=secure")
    enroll(tw, "alice")
    counted = [0]

    @settings(max_examples=24, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"\xff")),
           st.sampled_from(["fm-safe", "fm-secure"]))
    @example(b"\xff\xfe", "fm-safe")
    @example(b"12\xe93456", "fm-safe")
    @example(b"\xed\xa0\x80", "fm-safe")  # an encoded surrogate: not UTF-8 either
    def login(answer: bytes, service: str) -> None:
        assume(not re.fullmatch(rb"[0-9 \t\r\x00]*", answer))  # never by luck a code
        assume(not _blank(answer))  # no guess (e.g. b"\x1f", b"\x0b"): never counted
        res = tw.pamtester(service, "alice", [b"secret", answer])
        assert res.rc != 0, res
        counted[0] += 1
        assert log_text(res, service).endswith(
            f"result=refused reason=bad-code failures={counted[0]}"), res

    login()
    assert status(tw, "alice")["failures"] == counted[0] >= 24
