"""Helpers of the setuid tests of the C guard (issue 11, finding 1): a setuid PAM host,
a crafted standard library, the machine lock, and the guard built from this checkout.

The attack: pam_python starts CPython without a program name, so CPython finds its
standard library through the caller's PATH (or, with no python3 on PATH, the current
directory).  In a setuid program the caller chooses both, so a crafted
``lib/python3.11/encodings/__init__.py`` runs as euid 0 while the interpreter starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pexpect

from tests.harness.pamenv import GUARD_LINE, GUARD_SO, REPO_ROOT
from tests.harness.syslock import SYSTEM_LOCK, system_lock  # noqa: F401 (re-exported)

STDLIB = Path("/usr/lib/python3.11")
ATTACKER = 4391  # a uid with no account (setpriv needs none)
DEBIAN_PATH = [
    "/usr/lib/python311.zip", "/usr/lib/python3.11", "/usr/lib/python3.11/lib-dynload",
    "/usr/lib/python3/dist-packages",
]

# pam_start_confdir + authenticate + setcred, ROUNDS times in one process (a screen
# locker runs many transactions in one process); reports what the guard must not change.
HOST_C = r"""
#include <security/pam_appl.h>
#include <security/pam_misc.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
extern char **environ;
static struct pam_conv conv = { misc_conv, NULL };
static char *env_dump(void)
{
    size_t n = 1; char *s;
    for (char **e = environ; *e; e++) n += strlen(*e) + 1;
    s = calloc(n, 1);
    for (char **e = environ; *e; e++) { strcat(s, *e); strcat(s, "\n"); }
    return s;
}
int main(int argc, char **argv)
{
    pam_handle_t *h;
    char *before, *after, *loc_before;
    if (argc != 5) return 2;
    setlocale(LC_ALL, "");                      /* as su and sudo do */
    loc_before = strdup(setlocale(LC_ALL, NULL));
    before = env_dump();
    for (int r = 0; r < atoi(argv[4]); r++) {
        int rc = pam_start_confdir(argv[1], argv[2], &conv, argv[3], &h);
        if (rc != PAM_SUCCESS) { printf("pam_start=%d\n", rc); return 3; }
        int a = pam_authenticate(h, 0);
        int c = pam_setcred(h, PAM_ESTABLISH_CRED);
        printf("round=%d authenticate=%d setcred=%d\n", r, a, c);
        pam_end(h, a);
    }
    after = env_dump();
    printf("euid=%d uid=%d environ=%s locale=%s\n", (int)geteuid(), (int)getuid(),
           strcmp(before, after) ? "changed" : "unchanged",
           strcmp(loc_before, setlocale(LC_ALL, NULL)) ? "changed" : "unchanged");
    return 0;
}
"""

# What the module sees of its interpreter, as json in the file named by its argument.
PROBE_PY = '''
import json, os, sys
def pam_sm_authenticate(pamh, flags, argv):
    found = {}
    for name in ("yaml", "qrcode", "pyotp"):
        try:
            found[name] = os.path.dirname(__import__(name).__file__)
        except ImportError as exc:
            found[name] = repr(exc)
    data = {"prefix": sys.prefix, "base_prefix": sys.base_prefix, "exec_prefix": sys.exec_prefix,
            "executable": sys.executable, "path": sys.path, "euid": os.geteuid(),
            "encodings": sys.modules["encodings"].__file__, "imports": found,
            "no_site": sys.flags.no_site, "isolated": sys.flags.isolated,
            "safe_path": sys.flags.safe_path, "dont_write_bytecode": sys.flags.dont_write_bytecode,
            "ignore_environment": sys.flags.ignore_environment, "utf8_mode": sys.flags.utf8_mode}
    with open(argv[1], "w") as f:
        json.dump(data, f)
    return pamh.PAM_SUCCESS
def pam_sm_setcred(pamh, flags, argv):
    return pamh.PAM_SUCCESS
'''

PAYLOAD = '''# the attacker's code: runs while the interpreter starts
import posix as _p
_fd = _p.open({marker!r}, _p.O_WRONLY | _p.O_CREAT | _p.O_APPEND, 0o644)
_p.write(_fd, b"euid=%d\\n" % _p.geteuid())
_p.close(_fd)
del _p, _fd
'''


def build_guard() -> Path:
    """`make guard` from this checkout (a no-op when up to date): the tests use this file."""
    subprocess.run(["make", "--no-print-directory", "-s", "guard"], cwd=REPO_ROOT, check=True,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}, timeout=120)
    assert GUARD_SO.is_file()
    return GUARD_SO


def public_dir(parent: Path, name: str, owner: int = 0) -> Path:
    """A 0755 directory ``owner`` owns (other uids must reach what is in it)."""
    path = parent / name
    path.mkdir()
    os.chown(path, owner, owner)
    path.chmod(0o755)
    return path


def crafted_prefix(where: Path, marker: Path, owner: int = ATTACKER) -> Path:
    """``where``/bin/python3, ``where``/python3 (for a cwd with no python3 on PATH) and
    ``where``/lib/python3.11: links to Debian's standard library except encodings/, a
    copy whose __init__.py first appends "euid=N" to ``marker``.  Everything is owned by
    ``owner``, the attacker, as in the attack."""
    (where / "bin").mkdir(parents=True)
    for fake in (where / "bin" / "python3", where / "python3"):
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    lib = where / "lib" / "python3.11"
    lib.mkdir(parents=True)
    for entry in STDLIB.iterdir():
        if entry.name != "encodings":
            (lib / entry.name).symlink_to(entry)
    shutil.copytree(STDLIB / "encodings", lib / "encodings",
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = lib / "encodings" / "__init__.py"
    init.write_text(PAYLOAD.format(marker=os.fspath(marker)) + init.read_text())
    for dirpath, dirnames, filenames in os.walk(where):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, owner, owner)
    return where


def compile_setuid_host(where: Path) -> Path:
    """The host, root-owned, mode 4755 (the caller removes it)."""
    src = where / "host.c"
    src.write_text(HOST_C)
    exe = where / "pam-setuid-host"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", os.fspath(exe), os.fspath(src),
                    "-lpam", "-lpam_misc"], check=True, timeout=120)
    os.chown(exe, 0, 0)
    exe.chmod(0o4755)
    return exe


def service_lines(probe: Path, out: Path, guard: bool) -> list[str]:
    """A password step that lets in (pam_permit), [the guard], pam_python with the probe."""
    return [
        "auth required pam_permit.so",
        *([GUARD_LINE] if guard else []),
        f"auth required pam_python.so {probe} {out}",
        "account required pam_permit.so",
    ]


def sh(*cmd: str, input: str | None = None) -> str:
    res = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120,
                         check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert res.returncode == 0, (cmd, res.stdout, res.stderr)
    return res.stdout


@contextlib.contextmanager
def throwaway_user(name: str, password: str) -> Iterator[tuple[int, int]]:
    """A real account (useradd -m, chpasswd) for su/sudo, removed on the way out.
    Take system_lock() around it."""
    subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
    try:
        sh("useradd", "-m", "-s", "/bin/sh", name)
        sh("chpasswd", input=f"{name}:{password}\n")
        yield int(sh("id", "-u", name)), int(sh("id", "-g", name))
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)


@dataclass
class Session:
    rc: int | None
    output: str
    prompts: list[str]

    @property
    def env(self) -> list[str]:
        """The lines between ===ENV and ===END (ENV_CMD's output)."""
        lines = self.output.replace("\r", "").split("\n")
        return lines[lines.index("===ENV") + 1:lines.index("===END")]


ENV_CMD = "echo ===ENV; /usr/bin/env | LC_ALL=C /usr/bin/sort; echo ===END"


def converse(uid: int, gid: int, argv: Sequence[str], env: Mapping[str, str], cwd: Path,
             prompts: Sequence[str], answers: Sequence[str]) -> Session:
    """``argv`` as ``uid`` on a pty with exactly ``env`` (env -i) in ``cwd``; each of
    ``prompts`` seen is answered with the next of ``answers`` ("" when none is left)."""
    child = pexpect.spawn(
        "/usr/bin/setpriv",
        [f"--reuid={uid}", f"--regid={gid}", "--init-groups", "env", "-i",
         *(f"{k}={v}" for k, v in env.items()), *argv],
        cwd=os.fspath(cwd), encoding="utf-8", timeout=30, env={})
    seen: list[str] = []
    output = ""
    patterns = [*prompts, pexpect.EOF]
    queue = list(answers)
    while True:
        i = child.expect(patterns)
        output += (child.before or "") + (child.after if isinstance(child.after, str) else "")
        if i == len(prompts):
            break
        seen.append(prompts[i])
        child.sendline(queue.pop(0) if queue else "")
    child.close()
    return Session(child.exitstatus, output, seen)
