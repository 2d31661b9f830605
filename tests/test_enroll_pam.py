"""Issue 3 at the login: inline first-login enrollment, recovery codes and imported
google-authenticator files, through pamtester (a C host) and the real
``google-authenticator`` command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.enroll_support import interactive_pamtester, shown_secret
from tests.harness.pamenv import PamEnv, oathtool
from tests.harness.wait import wait_fresh_step
from tests.test_qr import decode_terminal

PROMPT = "Enter the code from your app to finish enrollment"
CODE_PROMPT = "Verification code"


@pytest.fixture
def inline_env(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("alice")
    pam_env.service("svc")
    pam_env.write_policy("mandatory:\n  scope: all\nenrollment:\n  mode: inline\n"
                         "totp:\n  issuer: Example Corp\n")
    return pam_env


def recovery_codes_in(text: str) -> list[str]:
    return [m.replace("-", "") for m in re.findall(r"^\s+(\d{5}-\d{5})\s*$", text, re.M)]


def inline_enroll(env: PamEnv, user: str = "alice") -> tuple[str, str, list[str]]:
    """One interactive login that enrolls: (secret, output, recovery codes)."""
    wait_fresh_step()
    proc = interactive_pamtester(env, "svc", user)
    proc.expect("assword")
    proc.send("secret")
    text = proc.expect(PROMPT)
    secret = shown_secret(text)
    proc.send(oathtool(secret))
    rc, out = proc.finish()
    assert rc == 0, out
    assert "successfully authenticated" in out
    return secret, out, recovery_codes_in(out)


def state_file(env: PamEnv, user: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((env.state_dir / "users" / f"{user}.json").read_text())
    return data


def test_inline_first_login_enrollment(inline_env: PamEnv) -> None:
    secret, out, codes = inline_enroll(inline_env)
    # the QR code shown in the login decodes to the otpauth URI of the secret shown
    uri = decode_terminal(out)
    assert uri.startswith("otpauth://totp/Example%20Corp:alice%40")
    assert f"secret={secret}&" in uri and "issuer=Example%20Corp" in uri
    assert "Account:" in out and "Issuer:     Example Corp" in out
    assert len(codes) == 10 and len(set(codes)) == 10
    state = state_file(inline_env, "alice")
    assert state["enrolled"] is True and state["secret"] == secret and state["pending"] is None
    # the next login asks for a code (the next step's: the enrolling one is spent)
    nxt = inline_env.pamtester("svc", "alice", ["secret", oathtool(secret,
                                                                   at=int(time.time()) + 30)])
    assert nxt.rc == 0, nxt
    assert CODE_PROMPT in nxt.stdout + nxt.stderr and PROMPT not in nxt.stdout + nxt.stderr
    assert any("reason=ok" in line for line in nxt.log_lines), nxt
    # a wrong code is refused like any
    bad = inline_env.pamtester("svc", "alice", ["secret", "000000"])
    assert bad.rc != 0


def test_inline_wrong_code_refuses_and_shows_no_secret_twice(inline_env: PamEnv) -> None:
    first = inline_env.pamtester("svc", "alice", ["secret", "000000"])
    assert first.rc != 0, first
    shown = shown_secret(first.stdout + first.stderr)
    assert "Enrollment failed: wrong code" in first.stdout + first.stderr
    assert any("reason=bad-code" in line for line in first.log_lines), first
    state = state_file(inline_env, "alice")
    assert state["enrolled"] is False and state["failures"] == 1
    assert state["pending"] is None and shown not in json.dumps(state)  # never written
    # the next login has a secret of its own, and a code from it enrolls
    secret, _out, _codes = inline_enroll(inline_env)
    assert secret != shown


def test_recovery_code_logs_in_once(inline_env: PamEnv) -> None:
    _secret, _out, codes = inline_enroll(inline_env)
    # no recovery code in clear anywhere under the state dir
    grep = subprocess.run(["grep", "-r", "-l", "-E", "|".join(codes), str(inline_env.state_dir)],
                          capture_output=True, text=True, check=False)
    assert grep.returncode == 1 and grep.stdout == "", grep.stdout
    used = codes[4]
    res = inline_env.pamtester("svc", "alice", ["secret", f"{used[:5]}-{used[5:]}"])
    assert res.rc == 0, res
    assert "Recovery code accepted: 9 left" in res.stdout + res.stderr
    assert any("reason=recovery-code" in line and "recovery_codes_left=9" in line
               for line in res.log_lines), res
    again = inline_env.pamtester("svc", "alice", ["secret", used])
    assert again.rc != 0, again
    assert any("reason=bad-code" in line for line in again.log_lines), again
    state = state_file(inline_env, "alice")
    assert len(state["recovery_codes"]) == 9 and state["failures"] == 1  # type: ignore[arg-type]


def test_wrong_recovery_codes_count_in_the_lockout(inline_env: PamEnv) -> None:
    inline_env.write_policy("mandatory:\n  scope: all\nenrollment:\n  mode: inline\n"
                            "lockout:\n  max_failures: 2\n")
    _secret, _out, codes = inline_enroll(inline_env)
    for _ in range(2):
        assert inline_env.pamtester("svc", "alice", ["secret", "1234567890"]).rc != 0
    locked = inline_env.pamtester("svc", "alice", ["secret", codes[0]])
    assert locked.rc != 0 and "locked until" in locked.stdout + locked.stderr
    assert len(state_file(inline_env, "alice")["recovery_codes"]) == 10  # type: ignore[arg-type]


def google_authenticator(path: Path, *flags: str) -> str:
    subprocess.run(["google-authenticator", *flags, "-f", "-r", "3", "-R", "30", "-w", "3",
                    "-e", "5", "-s", str(path), "-q", "-C"], check=True, timeout=30,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return path.read_text()


def test_import_google_authenticator_file(pam_env: PamEnv, tmp_path: Path) -> None:
    pam_env.add_user("carol")
    pam_env.service("svc")
    ga = tmp_path / "carol.google_authenticator"
    text = google_authenticator(ga, "-t", "-d")
    lines = text.splitlines()
    secret, scratch = lines[0], [ln for ln in lines if ln.isdigit()]
    assert '" TOTP_AUTH' in lines and len(scratch) == 5
    os.chown(ga, pam_env.users["carol"].uid, pam_env.users["carol"].uid)  # carol's file
    done = pam_env.admin("import-google-authenticator", "carol", str(ga), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert {k: summary[k] for k in ("user", "period", "digits", "algorithm",
                                    "recovery_codes", "old_file", "revoked")} == {
        "user": "carol", "period": 30, "digits": 6, "algorithm": "SHA1", "recovery_codes": 5,
        "old_file": str(ga), "revoked": []}
    blob = (pam_env.state_dir / "users" / "carol.json").read_text()
    assert secret in blob and not any(code in blob for code in scratch)
    # its TOTP code logs in
    wait_fresh_step()
    res = pam_env.pamtester("svc", "carol", ["secret", oathtool(secret)])
    assert res.rc == 0, res
    # one of its scratch codes logs in, once
    first = pam_env.pamtester("svc", "carol", ["secret", scratch[2]])
    assert first.rc == 0, first
    assert "Recovery code accepted: 4 left" in first.stdout + first.stderr
    assert pam_env.pamtester("svc", "carol", ["secret", scratch[2]]).rc != 0
    # importing over an enrollment needs --force
    again = pam_env.admin("import-google-authenticator", "carol", str(ga))
    assert again.returncode == 2 and "--force" in again.stderr


def test_import_refuses_hotp_and_malformed_files(pam_env: PamEnv, tmp_path: Path) -> None:
    pam_env.add_user("dave")
    hotp = tmp_path / "hotp"
    google_authenticator(hotp, "-c")
    secret = hotp.read_text().splitlines()[0]
    bad_files = {
        "hotp": hotp.read_text(),
        "empty": "",
        "short-secret": "JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n",  # 80 bits
        "not-base32": "THIS IS NOT BASE32!!!!!!!!\n\" TOTP_AUTH\n",
        "no-totp-line": f"{secret}\n\" WINDOW_SIZE 3\n12345678\n",
        "unknown-option": f"{secret}\n\" TOTP_AUTH\n\" FROBNICATE 1\n",
        "bad-scratch": f"{secret}\n\" TOTP_AUTH\n1234567\n",
        "option-after-codes": f"{secret}\n12345678\n\" TOTP_AUTH\n",
    }
    expected = {"hotp": "HOTP", "empty": "empty", "short-secret": "80 bits",
                "not-base32": "base32", "no-totp-line": "TOTP_AUTH",
                "unknown-option": "FROBNICATE", "bad-scratch": ":3:",
                "option-after-codes": "after the scratch codes"}
    for name, content in bad_files.items():
        path = tmp_path / name
        path.write_text(content)
        os.chown(path, pam_env.users["dave"].uid, 0)
        done = pam_env.admin("import-google-authenticator", "dave", str(path))
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert expected[name] in done.stderr, (name, done.stderr)
        assert not (pam_env.state_dir / "users" / "dave.json").exists(), name
    missing = pam_env.admin("import-google-authenticator", "dave", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_admin_recovery_codes_and_enroll_png(pam_env: PamEnv, tmp_path: Path) -> None:
    pam_env.add_user("erin")
    pam_env.service("svc")
    none = pam_env.admin("recovery-codes", "erin")
    assert none.returncode == 67 and "not enrolled" in none.stderr
    png = tmp_path / "erin.png"
    enrolled = pam_env.admin("enroll", "erin", "--png", str(png), "--qr", "utf8")
    assert enrolled.returncode == 0, enrolled.stderr
    uri = re.search(r"URI:\s+(\S+)", enrolled.stdout)
    assert uri is not None
    decoded = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
    assert decoded == uri.group(1)
    assert decode_terminal(enrolled.stdout) == uri.group(1)
    assert png.stat().st_mode & 0o777 == 0o600
    done = pam_env.admin("recovery-codes", "erin", "--json")
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout)["recovery_codes"]
    assert len(codes) == 10 and all(len(c) == 10 and c.isdigit() for c in codes)
    res = pam_env.pamtester("svc", "erin", ["secret", codes[0]])
    assert res.rc == 0, res


def test_inline_each_login_gets_its_own_secret(inline_env: PamEnv) -> None:
    """Issue 11 finding 4: a login that read the pending secret and hung up made the next
    login (the victim's) show and enroll that same secret. Each login now has its own."""
    wait_fresh_step()
    first = interactive_pamtester(inline_env, "svc", "alice")
    first.expect("assword")
    first.send("secret")
    stolen = shown_secret(first.expect(PROMPT))
    first.kill()  # the attacker hangs up
    second = interactive_pamtester(inline_env, "svc", "alice")
    second.expect("assword")
    second.send("secret")
    shown = shown_secret(second.expect(PROMPT))
    assert shown != stolen
    second.send(oathtool(stolen))  # the abandoned login's secret cannot enroll
    rc, out = second.finish()
    assert rc != 0, out
    assert state_file(inline_env, "alice")["enrolled"] is False
    assert stolen not in json.dumps(state_file(inline_env, "alice"))
    secret, _out, _codes = inline_enroll(inline_env)
    assert secret not in (stolen, shown)
    late = inline_env.pamtester("svc", "alice", ["secret", oathtool(stolen)])
    assert late.rc != 0  # nor log in


def test_import_over_an_enrollment_revokes_devices_and_codes(pam_env: PamEnv,
                                                             tmp_path: Path) -> None:
    """Issue 11 finding 8: a GA import with --force is a re-enrollment too."""
    from tests.enroll_support import REVOKED_TEXT, revoked_and_kept, seed_for_reenrollment

    pam_env.add_user("carol")
    assert pam_env.admin("enroll", "carol", "--json").returncode == 0
    seed_for_reenrollment(pam_env.state_dir, "carol")
    ga = tmp_path / "carol.google_authenticator"
    google_authenticator(ga, "-t", "-d")
    os.chown(ga, pam_env.users["carol"].uid, pam_env.users["carol"].uid)  # carol's file
    done = pam_env.admin("import-google-authenticator", "carol", str(ga), "--force")
    assert done.returncode == 0, done.stderr
    for text in REVOKED_TEXT:
        assert text in done.stdout, done.stdout
    revoked_and_kept(pam_env.state_dir, "carol")
