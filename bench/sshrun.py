"""SSH login (connect, authenticate with password then code, run ``true``), with
paramiko and with OpenSSH's ssh: pam-twofa vs google-authenticator vs the bare
pam_python module, on the tests' own sshd harness (tests/harness/sshd.py).

One sshd serves all three: its PAM service file is rewritten before each login
(sshd re-executes itself per connection, so each login reads the stack afresh),
in a shuffled order per round, so all three see the same machine load.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from bench.world import FLOOR_MODULE, PASSWORD, SECRET, code_now
from tests.harness.pamenv import PamEnv
from tests.harness.sshclient import CLIENTS
from tests.harness.sshd import SshServer

MODULES = ("floor (bare pam_python)", "pam-twofa", "google-authenticator")


class SshBench:
    """A PamEnv + sshd with user alice enrolled in pam-twofa and google-authenticator."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="twofa-bench-ssh-", dir="/var/tmp"))
        self.env = PamEnv(self.root)
        self.server = SshServer(self.env)
        user = self.server.add_user("alice", password=PASSWORD)
        self.server.write_policy("mandatory: {scope: none}\nlockout: {max_failures: 1000}\n")
        self.server.enroll("alice", SECRET)
        ga = user.home / ".google_authenticator"
        ga.write_text(f'{SECRET}\n" WINDOW_SIZE 3\n" TOTP_AUTH\n')
        ga.chmod(0o600)
        shutil.chown(ga, user.uid, user.gid)
        self.lines = {
            "floor (bare pam_python)": f"auth required pam_python.so {FLOOR_MODULE}",
            "pam-twofa": self.server.module_line(),
            "google-authenticator": "auth required pam_google_authenticator.so",
        }
        self.server.start()

    def close(self) -> None:
        self.server.close()
        self.env.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def login(self, module: str, client: str) -> float:
        """One login through ``module``; seconds. A refused login is an error."""
        self.server.stack(self.lines[module])
        if module == "pam-twofa":
            with self.server.as_owner(), self.server.store().update("alice") as st:
                st.last_step = -1
        answers = [("Password", PASSWORD), ("erification code", code_now())]
        res = CLIENTS[client](self.server, "alice", answers)
        twofa_lines = [x for x in res.log_lines if "pam_twofa(" in x]
        if not res.ok:
            raise RuntimeError(f"{module} via {client}: login refused: {res.detail}")
        if (module == "pam-twofa") != bool(twofa_lines):  # the stack really was swapped
            raise RuntimeError(f"{module} via {client}: unexpected log lines {twofa_lines}")
        return res.seconds


def series(n: int, warmup: int = 2, seed: int = 2) -> dict[str, list[float]]:
    """``n`` timed logins per (module, client), interleaved in shuffled rounds."""
    rng = random.Random(seed)
    bench = SshBench()
    times: dict[str, list[float]] = {f"{m} / {c}": [] for c in CLIENTS for m in MODULES}
    try:
        pairs = [(m, c) for c in CLIENTS for m in MODULES]
        for round_no in range(warmup + n):
            rng.shuffle(pairs)
            for module, client in pairs:
                seconds = bench.login(module, client)
                if round_no >= warmup:
                    times[f"{module} / {client}"].append(seconds)
    finally:
        bench.close()
    return times
