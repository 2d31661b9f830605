"""Shared helpers of the PAM-level core tests (test_codes_pam.py, test_lockout_pam.py,
test_errors_pam.py): issue 2's acceptance list, through a real C host: pamtester under
pam_wrapper + nss_wrapper, the module loaded from this checkout by absolute path, codes
from oathtool.

The password step is pam_matrix (``required``), so "password alone logs in" means the
module returned PAM_IGNORE and the stack still succeeded.  Every decision is also checked
in the module's log line, read from the harness's syslog socket.  The ``tw`` fixture
(alice and carol in wheel, bob, service "svc") is in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.harness.pamenv import PamEnv, Result, oathtool

NOBODY = 65534
PROMPT = "Verification code: "


def log_text(res: Result, service: str = "svc") -> str:
    """The one pam_twofa line of this call, without the syslog header."""
    lines = [line for line in res.log_lines if f"pam_twofa({service}:auth):" in line]
    assert len(lines) == 1, res
    header, sep, text = lines[0].partition("]: ")
    assert sep and header.startswith(("<83>", "<85>", "<86>")), lines[0]  # authpriv
    assert "\n" not in text, text
    return text


def output(res: Result) -> str:
    return res.stdout + res.stderr


def enroll(env: PamEnv, user: str) -> str:
    done = env.admin("enroll", user, "--json")
    assert done.returncode == 0, done.stderr
    secret: str = json.loads(done.stdout)["secret"]
    return secret


def status(env: PamEnv, user: str) -> dict[str, object]:
    done = env.admin("status", user, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def wrong_code(secret: str) -> str:
    """A code that is no code of the accepted window around now."""
    now = int(time.time())
    near = {oathtool(secret, at=now + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def login(pam: PamEnv, user: str, code: str | None, service: str = "svc",
          **kw: object) -> Result:
    """Password, then ``code`` (None: the module is expected not to ask)."""
    answers = ["secret"] if code is None else ["secret", code]
    return pam.pamtester(service, user, answers, **kw)  # type: ignore[arg-type]



def tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its mode, size and mtime: to prove nothing changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out
