"""One hermetic PAM world holding every contender, on the tests' own harness.

Each contender is a PAM service in the same ``PamEnv`` (pam_wrapper +
nss_wrapper, pamtester as the host): password by pam_matrix, then the module
under test. Users share one TOTP secret so the same code serves every peer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pam_twofa import totp, verify  # noqa: E402
from pam_twofa.clock import Clock  # noqa: E402
from pam_twofa.filestore import FileStore  # noqa: E402
from pam_twofa.paths import Paths  # noqa: E402
from tests.harness.pamenv import PamEnv  # noqa: E402

FLOOR_MODULE = Path(__file__).resolve().parent / "floor_module.py"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits
PASSWORD = "secret"


def code_now(at: float | None = None) -> str:
    return totp.totp(totp.b32decode(SECRET), time.time() if at is None else at)


class Contender:
    """A PAM service to time, the answers it needs, and a reset between runs."""

    def __init__(self, name: str, service: str, answers: Callable[[], list[str]],
                 reset: Callable[[], None] | None = None, op: str = "authenticate") -> None:
        self.name = name
        self.service = service
        self.answers = answers
        self.reset = reset or (lambda: None)
        self.op = op  # pamtester's operations, e.g. "setcred" or "authenticate setcred"


class World:
    """A temp dir with a PamEnv, users and one service per contender."""

    def __init__(self, root: Path | None = None) -> None:
        # Outside /tmp: concurrent hosts each get a private /tmp (see private_tmp_cmd).
        self.tmp = Path(root or tempfile.mkdtemp(prefix="twofa-bench-", dir="/var/tmp"))
        self.env = PamEnv(self.tmp)
        self.env.write_policy("mandatory:\n  scope: none\nlockout:\n  max_failures: 1000\n")
        self.paths = Paths(policy=str(self.env.policy), policy_explicit=True,
                           state_dir=str(self.env.state_dir), log_socket=str(self.env.log_socket))
        self.store = FileStore(self.paths, Clock())

    def close(self) -> None:
        self.env.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ users
    def add_user(self, name: str, groups: Sequence[str] = ()) -> None:
        self.env.add_user(name, groups=groups, password=PASSWORD)
        self.enroll(name)
        user = self.env.users[name]
        ga = user.home / ".google_authenticator"  # GA's default place, as the user reads it
        ga.write_text(f'{SECRET}\n" WINDOW_SIZE 3\n" TOTP_AUTH\n')
        ga.chmod(0o600)
        os.chown(ga, user.uid, user.gid)  # no root in nss_wrapper: GA runs as the user
        self.env.allow_uid(user.uid)

    def enroll(self, name: str) -> None:
        with self.store.update(name) as st:
            st.enrolled = True
            st.secret = SECRET
            st.enrolled_at = time.time()

    def reset_twofa(self, name: str) -> None:
        """Forget the last accepted step and the failures: the current code is new again."""
        with self.store.update(name) as st:
            st.last_step = -1
            verify.unlock(st)

    def counters(self, name: str) -> tuple[int, int]:
        state = self.store.load(name)
        assert state is not None
        return state.failures, state.last_step

    # ------------------------------------------------------------ services
    def add_services(self, user: str = "alice") -> list[Contender]:
        env = self.env
        password = lambda: [PASSWORD]  # noqa: E731
        with_code = lambda: [PASSWORD, code_now()]  # noqa: E731
        env.service_raw("permit", self._stack("auth required pam_permit.so"))
        env.service("floor", module=FLOOR_MODULE)
        env.service("twofa")
        env.service_raw("ga", self._stack(
            "auth required pam_google_authenticator.so"))
        oath = self.tmp / "users.oath"
        oath.write_text(f"HOTP/T30/6\t{user}\t-\t{totp.b32decode(SECRET).hex()}\n")
        oath.chmod(0o600)
        pristine = oath.read_bytes()

        def restore_oath() -> None:  # pam_oath refuses a replayed code
            oath.write_bytes(pristine)

        env.service_raw("oath", self._stack(
            f"auth required pam_oath.so usersfile={oath} window=1 digits=6"))
        return [
            Contender("pam_permit", "permit", password),
            Contender("floor (bare pam_python)", "floor", with_code),
            Contender("pam-twofa TOTP", "twofa", with_code, lambda: self.reset_twofa(user)),
            Contender("google-authenticator", "ga", with_code),
            Contender("pam_oath", "oath", with_code, restore_oath),
        ]

    def _stack(self, module_line: str) -> list[str]:
        from tests.harness.pamenv import PAM_MATRIX, PAM_SET_ITEMS

        return [f"auth required {PAM_SET_ITEMS}",
                f"auth required {PAM_MATRIX} passdb={self.env.passdb}",
                module_line, "account required pam_permit.so"]

    # ------------------------------------------------------------ running
    def pamtester_cmd(self, service: str, user: str,
                      op: str = "authenticate") -> tuple[list[str], dict[str, str]]:
        return ["pamtester", service, user, *op.split()], self.env.wrapper_env()

    def run(self, service: str, user: str, answers: list[str],
            op: str = "authenticate") -> tuple[float, float, int]:
        """One pamtester process: (wall seconds, CPU seconds, exit status).

        CPU time (user + system, from wait4) is the work itself; it varies far less
        than wall time when other jobs share the machine.
        """
        cmd, env = self.pamtester_cmd(service, user, op)
        data = "".join(a + "\n" for a in answers).encode()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env, cwd=self.tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.drain_log()
        return elapsed, usage.ru_utime + usage.ru_stime, proc.returncode

    def drain_log(self) -> list[str]:
        """Read the module's syslog lines (a full socket queue would slow it down)."""
        return self.env._log.drain()


def ensure_pyc() -> None:
    """pam_python never writes .pyc: compile the package as ``make pyc`` does."""
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run(["/usr/bin/python3", "-m", "compileall", "-q", str(REPO / "pam_twofa")],
                   check=True, env=env)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def free_cpu_note() -> str:
    return f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}"
