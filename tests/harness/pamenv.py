"""A hermetic PAM environment for tests: pam_wrapper + nss_wrapper + pamtester.

Nothing under /etc is touched and no system account is used.  Everything lives in one
directory ``$T`` (normally pytest's ``tmp_path``)::

    $T/passwd $T/group        nss_wrapper databases (users from uid 4242, groups from gid 4210)
    $T/passdb                 pam_matrix passwords, one line per user per service
    $T/pam.d/                 PAM_WRAPPER_SERVICE_DIR (``other`` denies everything)
    $T/state/                 the module's state dir (0700)
    $T/policy.yaml            the module's policy
    $T/home/NAME/             home directories
    $T/log.sock               unix datagram socket the module's syslog lines are sent to

The decisive host is pamtester, a C program: the module runs in pam_python's embedded
interpreter (Debian's Python), not in the interpreter that runs pytest.
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.harness import rundir
from tests.harness.procs import (
    SYSTEM_PATH,
    LogSocket,
    Result,
    merge_env,
    oathtool,
    run_logged,
    setpriv_cmd,
)

__all__ = ["SYSTEM_PATH", "PamEnv", "Result", "User", "oathtool"]

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRY_MODULE = REPO_ROOT / "pam_twofa" / "pam_entry.py"
FIXTURE_MODULE = Path(__file__).resolve().parent / "fixture_module.py"
# The C guard (guard/pam_twofa_guard.c, built by `make guard`) and the line that goes right
# before every pam_python line (README "Security notes").
GUARD_SO = REPO_ROOT / "build" / "pam_twofa_guard.so"
GUARD_LINE = f"auth [success=1 ignore=ignore default=die] {GUARD_SO}"


def _pam_wrapper_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/*/pam_wrapper/pam_matrix.so"))
    if found:
        return Path(found[0]).parent
    return Path("/usr/lib/x86_64-linux-gnu/pam_wrapper")


PAM_WRAPPER_DIR = _pam_wrapper_dir()
PAM_SET_ITEMS = PAM_WRAPPER_DIR / "pam_set_items.so"
PAM_MATRIX = PAM_WRAPPER_DIR / "pam_matrix.so"
FIRST_UID = 4242
FIRST_GID = 4210
PAM_TMP_GLOB = "/tmp/pam.*"  # pam_wrapper's per-process copies of the stack
# A file in every PamEnv's service dir naming its root: pam_wrapper copies the whole dir
# into each /tmp/pam.X it makes, so the copies of this world's hosts can be told from
# those of other worlds and other test runs (/tmp is shared by all of them).
PAM_MARKER = ".twofa-harness-root"
PAM_TMP_SETUP_GRACE = 30.0  # s: a /tmp/pam.X without its pid file yet may be in the making


def _owner_alive(pam_tmp: Path) -> bool:
    """pam_wrapper writes its pid into each /tmp/pam.X it makes, just after mkdir: a dir
    without a readable pid may belong to a host starting right now (this run's or
    another's, /tmp is shared), so it counts as alive until it is a while old."""
    try:
        pid = int((pam_tmp / "pid").read_text().strip())
    except (OSError, ValueError):
        try:
            return time.time() - pam_tmp.stat().st_mtime < PAM_TMP_SETUP_GRACE
        except OSError:
            return False  # gone already
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # alive, another user's
    except OSError:
        return False  # no such process (ESRCH)
    try:  # a zombie is dead (in a container whose pid 1 never reaps, it stays one)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path
    password: str
    groups: tuple[str, ...]

    def passwd_line(self) -> str:
        return f"{self.name}:x:{self.uid}:{self.gid}:{self.name}:{self.home}:/bin/sh"


class PamEnv:
    """One hermetic PAM world rooted at ``root``; call :meth:`close` when done."""

    oathtool = staticmethod(oathtool)

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        if any(c.isspace() for c in str(self.root)):
            raise ValueError(f"PAM argument parsing splits on blanks: {self.root}")
        self.passwd = self.root / "passwd"
        self.group = self.root / "group"
        self.passdb = self.root / "passdb"
        self.pam_dir = self.root / "pam.d"
        self.state_dir = self.root / "state"
        self.policy = self.root / "policy.yaml"
        self.home = self.root / "home"
        self.log_socket = self.root / "log.sock"
        self.users: dict[str, User] = {}
        self.groups: dict[str, tuple[int, list[str]]] = {}  # name -> (gid, members)
        self.services: list[str] = []
        self.stray_log_lines: list[str] = []  # datagrams that arrived between calls

        self.pam_dir.mkdir(parents=True, exist_ok=True)
        (self.pam_dir / PAM_MARKER).write_text(f"{self.root}\n")
        self.home.mkdir(exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        self.state_dir.chmod(0o700)
        self.policy.touch()
        self.service_raw(
            "other",
            [f"{t} required pam_deny.so" for t in ("auth", "account", "password", "session")],
            register=False,
        )
        self._write_nss()

        self._log = LogSocket(self.log_socket)

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close the log socket; remove this world's /tmp/pam.X left by dead hosts (never
        another world's or another run's, never one whose host still runs)."""
        self._log.close()
        for leftover in self.pam_tmp_dirs():
            if not _owner_alive(leftover):
                subprocess.run(["rm", "-rf", "--one-file-system", leftover], check=False)

    def pam_tmp_dirs(self) -> list[Path]:
        """The /tmp/pam.X copies of this world's service dir (by PAM_MARKER), live or not."""
        found = []
        for path in glob.glob(PAM_TMP_GLOB):
            try:
                ours = (Path(path) / PAM_MARKER).read_text().strip() == str(self.root)
            except OSError:
                continue
            if ours:
                found.append(Path(path))
        return found

    def __enter__(self) -> PamEnv:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- accounts
    def _free_id(self, start: int, used: Iterable[int]) -> int:
        taken = set(used)
        n = start
        while n in taken:
            n += 1
        return n

    def add_group(self, name: str, gid: int | None = None) -> int:
        if name in self.groups:
            return self.groups[name][0]
        used = [g for g, _ in self.groups.values()]
        if gid is None:
            gid = self._free_id(FIRST_GID, [*used, *(u.gid for u in self.users.values())])
        elif gid in used:
            raise ValueError(f"gid {gid} already used")
        self.groups[name] = (gid, [])
        self._write_nss()
        return gid

    def add_user(
        self,
        name: str,
        uid: int | None = None,
        groups: Sequence[str] = (),
        password: str = "secret",
        share_uid: bool = False,
    ) -> User:
        if name in self.users:
            raise ValueError(f"user {name} already exists")
        if ":" in name or ":" in password or "\n" in password:
            raise ValueError("':' and newlines cannot appear in passwd/passdb fields")
        if uid is None:
            uid = self._free_id(FIRST_UID, (u.uid for u in self.users.values()))
        elif not share_uid and any(u.uid == uid for u in self.users.values()):
            raise ValueError(f"uid {uid} already used")
        used_gids = {g for g, _ in self.groups.values()}
        primary = uid if uid not in used_gids else None
        gid = self.add_group(name, primary)
        for g in groups:
            self.add_group(g)
            members = self.groups[g][1]
            if name not in members:
                members.append(name)
        home = self.home / name
        home.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(home, uid, gid)
        user = User(name, uid, gid, home, password, tuple(groups))
        self.users[name] = user
        self._write_nss()
        return user

    def _write_nss(self) -> None:
        self.passwd.write_text("".join(u.passwd_line() + "\n" for u in self.users.values()))
        self.group.write_text(
            "".join(
                f"{name}:x:{gid}:{','.join(members)}\n"
                for name, (gid, members) in self.groups.items()
            )
        )
        self.passdb.write_text(
            "".join(
                f"{u.name}:{u.password}:{svc}\n"
                for u in self.users.values()
                for svc in self.services
            )
        )

    # ---------------------------------------------------------------- services
    def module_line(self, module_args: str = "", module: Path | str | None = None) -> str:
        path = Path(module) if module is not None else ENTRY_MODULE
        args = (
            f"policy={self.policy} state_dir={self.state_dir} "
            f"log_socket={self.log_socket} {module_args}"
        )
        return f"auth required pam_python.so {path} {args}".rstrip()

    def service(
        self,
        name: str,
        module_args: str = "",
        extra_lines: Sequence[str] = (),
        *,
        module: Path | str | None = None,
        guard: bool = False,
    ) -> Path:
        """Password (pam_matrix) then the module; ``module`` defaults to pam_entry.py.

        ``guard``: the C guard's line first (GUARD_LINE; `make guard` builds it).
        """
        lines = [
            f"auth required {PAM_SET_ITEMS}",
            f"auth required {PAM_MATRIX} passdb={self.passdb}",
            *([GUARD_LINE] if guard else []),
            self.module_line(module_args, module),
            *extra_lines,
            "account required pam_permit.so",
        ]
        return self.service_raw(name, lines)

    def service_raw(self, name: str, lines: Sequence[str], *, register: bool = True) -> Path:
        if "/" in name or not name:
            raise ValueError(f"bad service name {name!r}")
        path = self.pam_dir / name
        path.write_text("".join(line + "\n" for line in lines))
        if register and name not in self.services:
            self.services.append(name)
            self._write_nss()
        return path

    def write_policy(self, text: str) -> Path:
        self.policy.write_text(text)
        return self.policy

    # ---------------------------------------------------------------- running
    def wrapper_env(self, *, pam: bool = True) -> dict[str, str]:
        preload = ["libpam_wrapper.so", "libnss_wrapper.so"] if pam else ["libnss_wrapper.so"]
        env = {
            "PATH": SYSTEM_PATH,
            "LANG": "C.UTF-8",
            "HOME": os.fspath(self.home),
            "LD_PRELOAD": " ".join(preload),
            "NSS_WRAPPER_PASSWD": os.fspath(self.passwd),
            "NSS_WRAPPER_GROUP": os.fspath(self.group),
        }
        if pam:
            env["PAM_WRAPPER"] = "1"
            env["PAM_WRAPPER_SERVICE_DIR"] = os.fspath(self.pam_dir)
        return env

    def allow_uid(self, uid: int) -> None:
        """Let ``uid`` traverse every ancestor of $T (pytest makes its dirs 0700).

        Only directories of this run get o+x: $T itself (handed to this PamEnv), and its
        ancestors under a root of tests/harness/rundir.py (the run dir holding pytest's
        basetemp). A shared parent (another run's, or pytest's ``pytest-of-<user>``,
        which every pytest run resets to 0700) is never changed: it is an error instead.
        """
        if uid == os.geteuid():
            return
        rundir.let_others_traverse(self.root, also=self.root)

    def _as_uid(
        self, cmd: list[str], env: dict[str, str], as_uid: int | None
    ) -> tuple[list[str], dict[str, str]]:
        if as_uid is None:
            return cmd, env
        self.allow_uid(as_uid)
        return setpriv_cmd(cmd, env, as_uid)

    def pamtester(
        self,
        service: str,
        user: str,
        answers: Sequence[str | bytes],
        op: str = "authenticate",
        env: Mapping[str, str] | None = None,
        as_uid: int | None = None,
        timeout: float = 20,
    ) -> Result:
        """``pamtester -v SERVICE USER OP`` with ``answers`` fed to the prompts in order.

        ``env`` adds variables (PAM_RHOST, PAM_TTY… for pam_set_items, FAKETIME…).
        An answer given as bytes goes to pamtester as it is (e.g. invalid UTF-8).
        """
        cmd, full_env = self._as_uid(
            ["pamtester", "-v", service, user, *shlex.split(op)],
            merge_env(self.wrapper_env(), env),
            as_uid,
        )
        stdin = b"".join((a if isinstance(a, bytes) else a.encode()) + b"\n" for a in answers)
        self.stray_log_lines.extend(self._log.drain())
        return run_logged(cmd, full_env, stdin, timeout, self.root, self._log)

    def admin(
        self,
        *args: str,
        as_uid: int | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        python: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m pam_twofa.cli.admin --policy … --state-dir … ARGS`` from the repo root.

        The interpreter is the one running the tests; with ``as_uid`` it is Debian's
        /usr/bin/python3 (another uid cannot reach a pyenv under /root).  nss_wrapper is
        preloaded so the harness users resolve.
        """
        if python is None:
            python = sys.executable if as_uid is None else "/usr/bin/python3"
        cmd = [
            python,
            "-m",
            "pam_twofa.cli.admin",
            "--policy",
            os.fspath(self.policy),
            "--state-dir",
            os.fspath(self.state_dir),
            *args,
        ]
        base = self.wrapper_env(pam=False)
        if as_uid is None:
            base["PATH"] = os.environ.get("PATH", SYSTEM_PATH)
        cmd, full_env = self._as_uid(cmd, merge_env(base, env), as_uid)
        return subprocess.run(
            cmd,
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=full_env,
            timeout=timeout,
            check=False,
        )
