"""Recovery codes and the google-authenticator parser, as pure parts; the service's
code checks (replay, lockout) on a real FileStore."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from pam_twofa import enrollment, recovery, schema, totp
from pam_twofa.clock import FixedClock
from pam_twofa.enroll import googleauth
from pam_twofa.errors import UsageError
from pam_twofa.filestore import FileStore
from pam_twofa.paths import Paths
from pam_twofa.state import UserState

SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def test_codes_are_ten_digits_unique_and_stored_hashed() -> None:
    st = UserState("alice")
    codes = recovery.replace(st)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 10 and c.isdigit() for c in codes)
    assert len(st.recovery_codes) == 10
    salts = set()
    for code, entry in zip(codes, st.recovery_codes, strict=True):
        scheme, n, r, p, salt, key = entry.split("$")
        assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
        assert len(base64.b64decode(key)) == 32 and len(base64.b64decode(salt)) == 16
        assert code not in entry
        salts.add(salt)
    assert len(salts) == 10  # one salt per code


def test_consume_once_with_any_spacing() -> None:
    st = UserState("alice")
    codes = recovery.replace(st)
    assert recovery.consume(st, f" {codes[3][:5]}-{codes[3][5:]} ") == 9
    assert recovery.consume(st, codes[3]) is None
    assert recovery.consume(st, codes[0][:5] + " " + codes[0][5:]) == 8
    for wrong in ("", "123456", "12345678901", "abcdefghij", "１２３４５６７８９０"):
        assert recovery.consume(st, wrong) is None
    assert len(st.recovery_codes) == 8


def test_imported_eight_digit_codes_and_bad_entries() -> None:
    st = UserState("alice")
    recovery.replace(st, ["12345678", "87654321"])
    st.recovery_codes.insert(0, "scrypt$3$8$1$AAAA$AAAA")  # n not a power of two: skipped
    st.recovery_codes.insert(0, "garbage")
    assert recovery.consume(st, "87654321") == 3
    assert recovery.find(st, "12345678") == 2


def test_checking_ten_codes_is_bounded() -> None:
    st = UserState("alice")
    recovery.replace(st)
    started = time.perf_counter()
    assert recovery.find(st, "0000000000") is None
    elapsed = time.perf_counter() - started
    print(f"recovery: 10 entries checked in {elapsed:.3f} s")
    assert elapsed < 0.5 + 4.5  # ~0.33 s measured; slack for a loaded 2-core machine


def _store(tmp_path: Path) -> tuple[FileStore, FixedClock]:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    clock = FixedClock(1_800_000_000)
    return FileStore(Paths(state_dir=str(state_dir)), clock), clock


def test_check_code_replay_lockout_and_recovery(tmp_path: Path) -> None:
    store, clock = _store(tmp_path)
    pol = schema.defaults()
    with store.update("alice") as st:
        enrollment.activate(st, SECRET, pol, clock.now())
        codes = recovery.replace(st)
    code = totp.totp(totp.b32decode(SECRET), clock.now())
    with store.update("alice") as st:
        assert enrollment.check_code(st, code, pol, clock.now()) == "ok"
        assert enrollment.check_code(st, code, pol, clock.now()) == "replay"
        assert enrollment.check_code(st, codes[1], pol, clock.now()) == "recovery"
        assert enrollment.check_code(st, codes[1], pol, clock.now()) == "bad-code"
    loaded = store.load("alice")
    # a replay is refused but not counted (issue 12 item 1): the one failure is the
    # reused recovery code
    assert loaded is not None and loaded.failures == 1 and len(loaded.recovery_codes) == 9
    with store.update("alice") as st:
        for _ in range(4):  # the fifth failure within 15 minutes locks
            enrollment.check_code(st, "000000", pol, clock.now())
        assert enrollment.check_code(st, codes[2], pol, clock.now()) == "locked"
    assert len(store.load("alice").recovery_codes) == 9  # type: ignore[union-attr]


def test_pending_expires_and_confirms(tmp_path: Path) -> None:
    store, clock = _store(tmp_path)
    pol = schema.defaults()
    with store.update("bob") as st:
        secret = enrollment.start_pending(st, pol, clock.now())
    clock.advance(pol.enrollment.pending_ttl_seconds)
    code = totp.totp(totp.b32decode(secret), clock.now())
    with store.update("bob") as st:
        assert enrollment.confirm_pending(st, code, pol, clock.now()) == "no-pending"
        secret = enrollment.start_pending(st, pol, clock.now())
        assert enrollment.confirm_pending(st, "000000", pol, clock.now()) == "bad-code"
        code = totp.totp(totp.b32decode(secret), clock.now())
        assert enrollment.confirm_pending(st, code, pol, clock.now()) == "ok"
    loaded = store.load("bob")
    assert loaded is not None and loaded.enrolled and loaded.secret == secret
    assert loaded.last_step == totp.time_step(clock.now()) and loaded.failures == 0
    assert loaded.pending is None
    for bad in ({"secret": 5, "expires": 9e99}, {"secret": SECRET}, {}):
        st = UserState("x")
        st.pending = bad
        assert enrollment.pending_secret(st, 0) is None


GA = (f"{SECRET}\n\" RATE_LIMIT 3 30 1796000000\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE 59866666\n"
      "\" STEP_SIZE 60\n\" TOTP_AUTH\n11111111\n22222222\n")


def test_ga_parse() -> None:
    parsed = googleauth.parse(GA)
    assert parsed.secret == SECRET and parsed.period == 60
    assert parsed.scratch_codes == ("11111111", "22222222")
    assert parsed.options == ("RATE_LIMIT", "WINDOW_SIZE", "DISALLOW_REUSE", "STEP_SIZE",
                              "TOTP_AUTH")
    assert googleauth.parse(f"{SECRET.lower()}\n\" TOTP_AUTH").scratch_codes == ()


@pytest.mark.parametrize("text, message", [
    (GA.replace("TOTP_AUTH", "HOTP_COUNTER 4"), "HOTP"),
    (GA.replace("\" STEP_SIZE 60", "\" STEP_SIZE x"), ":5: STEP_SIZE"),
    (GA + "\n", ":9: not an option line"),
    (GA + "11111111\n", "listed twice"),
    ("\n", "empty"),
])
def test_ga_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        googleauth.parse(text)
