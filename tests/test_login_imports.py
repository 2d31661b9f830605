"""What a TOTP login imports, seen inside pam_python under pamtester (a C host).

Every import costs every login (the budget is ~2.5 ms over a bare module), so the
login path is a fixed set of modules: a new top-level import on it, or a feature
(yaml, mail, QR, NTP, trust) loading on a plain TOTP login, fails here.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.harness.pamenv import ENTRY_MODULE, PamEnv, oathtool
from tests.harness.wait import wait_fresh_step
from tests.pam_support import enroll

PROBE = Path(__file__).resolve().parent / "harness" / "import_probe.py"
LOGIN_MODULES = {
    f"pam_twofa.{name}" for name in (
        "accounts", "clock", "core", "errors", "fsutil", "fastjson", "lockout", "log",
        "pamface", "paths", "policy", "policyfile", "record", "state", "store", "totp",
    )
} | {"pam_twofa"}
# C modules of the interpreter (no Python code to run) and __future__ (one tiny file).
ALLOWED_OTHERS = {"__future__", "_json", "_sha1", "_socket", "fcntl", "grp", "pwd"}


def imported(env: PamEnv, code: str, out: Path) -> set[str]:
    res = env.pamtester("probe", "alice", ["secret", code])
    assert res.rc == 0, res
    return set(out.read_text().split())


def test_totp_login_imports_only_the_login_path(tw: PamEnv) -> None:
    out = tw.root / "imports.txt"
    tw.service("probe", f"ENTRY={ENTRY_MODULE} out={out}", module=PROBE)
    tw.write_policy("mandatory: {scope: admins}\n")
    secret = enroll(tw, "alice")  # twofa-admin compiled the policy cache on the way
    wait_fresh_step()
    lean = imported(tw, oathtool(secret), out)
    assert lean - ALLOWED_OTHERS == LOGIN_MODULES, sorted(lean ^ LOGIN_MODULES)
    # the probe does see imports: an edited policy is parsed again, with yaml
    tw.write_policy("mandatory: {scope: all}\n")
    parsed = imported(tw, oathtool(secret, at=int(time.time()) + 30), out)
    assert {"yaml", "pam_twofa.schema"} <= parsed, sorted(parsed)
