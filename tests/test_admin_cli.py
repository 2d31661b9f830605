"""twofa-admin through its real entry point (``python3 -m pam_twofa.cli.admin``) in a
subprocess, against the same state the module reads under pamtester."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from pam_twofa import totp
from pam_twofa.cli.common import ExitCode
from tests.harness.pamenv import PamEnv, oathtool
from tests.pam_support import tree

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def adm(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("alice", groups=["wheel"])
    pam_env.add_user("bob")
    pam_env.service("svc")
    return pam_env


def ok(env: PamEnv, *args: str) -> str:
    done = env.admin(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def status(env: PamEnv, user: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(ok(env, "status", user, "--json"))
    return data



# ------------------------------------------------------------------------------ enroll
def test_enroll_json_shape_and_login_with_oathtool(adm: PamEnv) -> None:
    data = json.loads(ok(adm, "enroll", "alice", "--json"))
    assert sorted(data) == ["account", "recovery_codes", "revoked", "secret", "uri", "user"]
    assert data["user"] == "alice" and data["recovery_codes"] == [] and data["revoked"] == []
    assert data["account"] == f"alice@{socket.gethostname()}"  # as twofa-enroll shows it
    secret = data["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)  # 160 bits, unpadded base32
    assert len(totp.b32decode(secret)) == 20
    uri = urlsplit(data["uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    query = {k: v[0] for k, v in parse_qs(uri.query).items()}
    assert query["secret"] == secret
    assert (query["algorithm"], query["digits"], query["period"]) == ("SHA1", "6", "30")
    issuer = query["issuer"]
    assert unquote(uri.path).startswith(f"/{issuer}:alice@")
    res = adm.pamtester("svc", "alice", ["secret", oathtool(secret)])
    assert res.rc == 0, res
    assert any("user=alice rhost=- result=success reason=ok" in x for x in res.log_lines)
    mode = (adm.state_dir / "users" / "alice.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_enroll_human_output_never_json(adm: PamEnv) -> None:
    out = ok(adm, "enroll", "alice", "--secret", SECRET.lower())
    assert f"Account: alice@{socket.gethostname()}" in out  # the QR code's label
    assert "JBSW Y3DP EHPK 3PXP" in out  # grouped for typing by hand
    assert f"secret={SECRET}" in out  # the URI carries the normalized secret


def test_enroll_with_given_secret_and_policy_parameters(adm: PamEnv) -> None:
    adm.write_policy("totp: {digits: 8, period: 60, algorithm: SHA256, issuer: Example}\n")
    data = json.loads(ok(adm, "enroll", "alice", "--secret", SECRET, "--json"))
    assert data["secret"] == SECRET
    assert "issuer=Example" in data["uri"] and "digits=8" in data["uri"]
    assert data["uri"].startswith("otpauth://totp/Example:alice%40")
    code = oathtool(SECRET, digits=8, period=60, algorithm="SHA256")
    res = adm.pamtester("svc", "alice", ["secret", code])
    assert res.rc == 0, res


def test_re_enroll_replaces_the_secret(adm: PamEnv) -> None:
    ok(adm, "enroll", "alice", "--secret", SECRET)
    new = json.loads(ok(adm, "enroll", "alice", "--json"))["secret"]
    assert new != SECRET
    old_code, new_code = oathtool(SECRET), oathtool(new)
    if old_code != new_code:
        assert adm.pamtester("svc", "alice", ["secret", old_code]).rc != 0
    assert adm.pamtester("svc", "alice", ["secret", new_code]).rc == 0


@pytest.mark.parametrize(("secret", "needle"), [
    ("JBSWY3DP", "has 40 bits; at least 128"),
    ("NOT-BASE32-!!", "not base32"),
    ("JBSWY3DPEHPK3PX1", "not base32"),
])
def test_enroll_bad_secret_refused(adm: PamEnv, secret: str, needle: str) -> None:
    done = adm.admin("enroll", "alice", "--secret", secret)
    assert done.returncode == ExitCode.USAGE
    assert needle in done.stderr and done.stdout == ""
    assert not (adm.state_dir / "users" / "alice.json").exists()


# ------------------------------------------------------------------------------ status
def test_status_fields(adm: PamEnv) -> None:
    nobody = status(adm, "bob")
    assert nobody["enrolled"] is False and nobody["failures"] == 0
    assert nobody["locked_until"] is None and nobody["user"] == "bob"
    t0 = time.time()
    ok(adm, "enroll", "alice", "--secret", SECRET)
    fresh = status(adm, "alice")
    assert fresh["enrolled"] is True and fresh["failures"] == 0
    assert fresh["locked_until"] is None and fresh["locked"] is False
    enrolled_at = fresh["enrolled_at"]
    assert isinstance(enrolled_at, float) and t0 - 1 <= enrolled_at <= time.time()
    assert SECRET not in json.dumps(fresh)  # status never shows the secret


def test_status_after_wrong_codes_and_lock(adm: PamEnv) -> None:
    adm.write_policy("lockout: {max_failures: 2, lock_seconds: 600}\n")
    ok(adm, "enroll", "alice", "--secret", SECRET)
    now = int(time.time())
    near = {oathtool(SECRET, at=now + d) for d in (-60, -30, 0, 30, 60)}
    bad = next(c for c in ("000000", "111111", "222222") if c not in near)
    assert adm.pamtester("svc", "alice", ["secret", bad]).rc != 0
    assert status(adm, "alice")["failures"] == 1
    t0 = time.time()
    assert adm.pamtester("svc", "alice", ["secret", bad]).rc != 0
    locked = status(adm, "alice")
    assert locked["failures"] == 2 and locked["locked"] is True
    until = locked["locked_until"]
    assert isinstance(until, float) and t0 + 600 <= until <= time.time() + 600
    table = ok(adm, "status")
    assert re.search(r"^alice\s+yes\s+2\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", table, re.M), table
    every = json.loads(ok(adm, "status", "--json"))
    assert [row["user"] for row in every] == ["alice"]
    assert every[0]["locked_until"] == until


# ------------------------------------------------------------------------ reset, unlock
def test_reset(adm: PamEnv) -> None:
    ok(adm, "enroll", "alice", "--secret", SECRET)
    out = ok(adm, "reset", "alice")
    assert "alice: 2FA reset" in out
    assert status(adm, "alice")["enrolled"] is False
    assert not (adm.state_dir / "users" / "alice.json").exists()
    # not enrolled again: scope none, so the password alone logs in
    res = adm.pamtester("svc", "alice", ["secret"])
    assert res.rc == 0, res
    again = adm.admin("reset", "alice")
    assert again.returncode == ExitCode.NOT_FOUND
    assert "alice has no 2FA state" in again.stderr


def test_unlock(adm: PamEnv) -> None:
    adm.write_policy("lockout: {max_failures: 1, lock_seconds: 3600}\n")
    ok(adm, "enroll", "alice", "--secret", SECRET)
    assert adm.pamtester("svc", "alice", ["secret", "12345"]).rc != 0  # too short: wrong
    assert status(adm, "alice")["locked"] is True
    assert adm.pamtester("svc", "alice", ["secret", oathtool(SECRET)]).rc != 0
    assert "alice: unlocked." in ok(adm, "unlock", "alice")
    after = status(adm, "alice")
    assert after["locked"] is False and after["failures"] == 0 and after["lock_level"] == 0
    res = adm.pamtester("svc", "alice", ["secret", oathtool(SECRET)])
    assert res.rc == 0, res
    missing = adm.admin("unlock", "bob")
    assert missing.returncode == ExitCode.NOT_FOUND and "bob has no 2FA state" in missing.stderr


# ------------------------------------------------------------------------ policy check
def test_policy_check_valid(adm: PamEnv) -> None:
    adm.write_policy("mandatory: {scope: admins}\n")
    assert ok(adm, "policy", "check").strip() == f"{adm.policy}: OK"
    other = adm.root / "other.yaml"
    other.write_text("failmode: safe\n")
    assert ok(adm, "policy", "check", str(other)).strip() == f"{other}: OK"


def test_policy_check_errors_with_file_and_line(adm: PamEnv) -> None:
    adm.write_policy("mandatory:\n  scope: admins\ntotp:\n  digits: 5\nfoo: 1\n")
    done = adm.admin("policy", "check")
    assert done.returncode == ExitCode.CONFIG
    assert int(ExitCode.CONFIG) == 78
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert any(x.startswith(f"{adm.policy}:4: totp.digits must be from 6 to 8") for x in lines)
    assert any(x.startswith(f"{adm.policy}:5: unknown section 'foo'") for x in lines)
    assert done.stdout == ""


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("totp:\n  digits: 6\n  digits: 8\n", 3, "duplicate key 'digits'"),
    ("mandatory: [\n", 2, "not valid YAML"),
    ("lockout:\n  lock_secs: 1\n", 2, "unknown key lockout.lock_secs"),
])
def test_policy_check_other_errors(adm: PamEnv, text: str, line: int, needle: str) -> None:
    bad = adm.root / "bad.yaml"
    bad.write_text(text)
    done = adm.admin("policy", "check", str(bad))
    assert done.returncode == ExitCode.CONFIG
    assert done.stderr.startswith(f"{bad}:{line}: "), done.stderr
    assert needle in done.stderr


def test_policy_check_missing_or_insecure_file(adm: PamEnv) -> None:
    done = adm.admin("policy", "check", str(adm.root / "absent.yaml"))
    assert done.returncode == ExitCode.CONFIG and "no such file" in done.stderr
    adm.policy.chmod(0o666)
    done = adm.admin("policy", "check")
    assert done.returncode == ExitCode.CONFIG and "writable by group or others" in done.stderr


def test_commands_needing_the_policy_refuse_a_bad_one(adm: PamEnv) -> None:
    adm.write_policy("totp: {digitz: 6}\n")
    done = adm.admin("enroll", "alice")
    assert done.returncode == ExitCode.CONFIG
    assert f"{adm.policy}:1: unknown key totp.digitz" in done.stderr
    assert not (adm.state_dir / "users" / "alice.json").exists()


# ------------------------------------------------------------------------ bad user names
@pytest.mark.parametrize(
    "name", ["../x", "a/b", "ev\nil", "a" * 300, "", "../../../tmp/pwned", ".hidden"],
    ids=["dotdot", "slash", "newline", "300-chars", "empty", "deep", "leading-dot"],
)
def test_bad_user_names_rejected_nothing_written(adm: PamEnv, name: str) -> None:
    ok(adm, "enroll", "bob")  # the state directories exist
    before = tree(adm.root.parent)
    for args in (("enroll", name, "--json"), ("status", name, "--json"), ("reset", name),
                 ("unlock", name)):
        done = adm.admin(*args)
        assert done.returncode == ExitCode.USAGE, (args, done.stdout, done.stderr)
        assert "twofa-admin: error: " in done.stderr and "user name" in done.stderr
        assert done.stdout == ""
    assert tree(adm.root.parent) == before
    assert not Path("/tmp/pwned.json").exists()


def test_exit_codes_are_named() -> None:
    assert {e.name: int(e) for e in ExitCode} == {
        "OK": 0, "FAILED": 1, "USAGE": 2, "NOT_FOUND": 67, "SOFTWARE": 70, "STATE": 74,
        "NOPERM": 77, "CONFIG": 78}


# ------------------------------------------------------ issue 11 finding 8, issue 12 item 9
def test_re_enroll_revokes_devices_and_codes_keeps_the_email(adm: PamEnv) -> None:
    from tests.enroll_support import REVOKED_TEXT, revoked_and_kept, seed_for_reenrollment

    ok(adm, "enroll", "alice")
    seed_for_reenrollment(adm.state_dir, "alice")
    out = ok(adm, "enroll", "alice", "--qr", "none")
    for text in REVOKED_TEXT:
        assert text in out, out
    revoked_and_kept(adm.state_dir, "alice")


def test_enroll_recovery_codes_or_says_none(adm: PamEnv) -> None:
    out = ok(adm, "enroll", "alice", "--qr", "none")
    assert "No recovery codes were made" in out and "twofa-admin recovery-codes alice" in out
    assert status(adm, "alice")["recovery_codes_left"] == 0
    out = ok(adm, "enroll", "alice", "--qr", "none", "--recovery-codes")
    codes = re.findall(r"^    (\d{5}-\d{5})$", out, re.M)
    assert len(codes) == 10 and "No recovery codes" not in out
    assert status(adm, "alice")["recovery_codes_left"] == 10
    res = adm.pamtester("svc", "alice", ["secret", codes[0]])
    assert res.rc == 0, res
    data = json.loads(ok(adm, "enroll", "bob", "--json", "--recovery-codes"))
    assert len(data["recovery_codes"]) == 10


def test_enroll_secret_file_and_stdin_and_argv_warning(adm: PamEnv, tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET.lower() + "\n")
    done = adm.admin("enroll", "alice", "--secret-file", str(path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["secret"] == SECRET and done.stderr == ""
    done = adm.admin("enroll", "bob", "--secret-file", "-", "--json", input=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["secret"] == SECRET
    res = adm.pamtester("svc", "bob", ["secret", oathtool(SECRET)])
    assert res.rc == 0, res
    done = adm.admin("enroll", "alice", "--secret", SECRET, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["secret"] == SECRET
    assert "warning: --secret is visible to other users" in done.stderr
    both = adm.admin("enroll", "alice", "--secret", SECRET, "--secret-file", str(path))
    assert both.returncode == ExitCode.USAGE and "not both" in both.stderr
    empty = adm.admin("enroll", "alice", "--secret-file", "-", input="")
    assert empty.returncode == ExitCode.USAGE and "no secret" in empty.stderr
