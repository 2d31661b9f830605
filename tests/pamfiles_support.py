"""Copies of Debian's /etc/pam.d (tests/fixtures/pam.d) and ``twofa-admin pam`` pointed
at them, for tests/test_pamstack_cli.py and tests/test_prerm_script.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness.pamenv import ENTRY_MODULE, REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "pam.d"
PAM_PERMIT = Path("/usr/lib/x86_64-linux-gnu/security/pam_permit.so")
PROFILE_LINE = "auth\trequired\t\t\tpam_python.so pam_twofa.py\n"  # what the profile adds


class Host:
    """A copy of the fixtures, and the CLI pointed at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "pam.d"
        shutil.copytree(FIXTURES, self.dir)
        lib = root / "lib"
        lib.mkdir()
        # A file named like the guard, so status and disable recognise it by name.
        self.guard = lib / "pam_twofa_guard.so"
        shutil.copy(PAM_PERMIT, self.guard)
        self.module = ENTRY_MODULE

    def run(self, *args: str, module: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--module", str(self.module), "--guard", str(self.guard)] if module else []
        return subprocess.run(
            [sys.executable, "-m", "pam_twofa.cli.admin", "pam", *args,
             "--pam-dir", str(self.dir), *extra],
            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout + done.stderr

    def status(self, **kw: bool) -> dict[str, dict[str, object]]:
        done = self.run("status", "--json", **kw)
        assert done.returncode in (0, 1), done.stderr
        return {row["service"]: row for row in json.loads(done.stdout)}

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    def snapshot(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.dir.iterdir())}

    def add_profile(self) -> None:
        """What 'pam-auth-update --enable pam-twofa' does: the Additional block."""
        path = self.dir / "common-auth"
        text = path.read_text().replace("# end of pam-auth-update config",
                                        PROFILE_LINE + "# end of pam-auth-update config")
        path.write_text(text)
