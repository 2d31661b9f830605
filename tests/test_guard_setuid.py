"""Issue 11, finding 1: local root through a setuid PAM program, in a setuid C host.

The host (tests/guard_support.py) calls pam_start_confdir + pam_authenticate +
pam_setcred like su does, is root-owned 4755, and runs as an unprivileged uid with an
environment and working directory that uid chose.  The stack is a password step that
lets in (pam_permit), then pam_python with a probe module that reports its interpreter.

Both exploit variants run the attacker's code as euid 0 with the bare pam_python line
(the harness sees the attack: these tests pass on the code before the guard, and show
what the guard closes), and run nothing once the guard's line comes first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.guard_support import (
    ATTACKER,
    DEBIAN_PATH,
    PROBE_PY,
    build_guard,
    compile_setuid_host,
    crafted_prefix,
    public_dir,
    service_lines,
    system_lock,
)

if os.geteuid() != 0:  # CI runs as root; a collection error beats a silent pass
    raise RuntimeError("tests/test_guard_setuid.py makes a setuid host: run it as root")

SERVICE = "guardprobe"


@dataclass
class World:
    root: Path        # 0755, root's
    host: Path        # setuid root
    confdir: Path     # pam_start_confdir's directory
    out_dir: Path     # 0700 root: the probe's reports
    probe: Path


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    build_guard()
    with system_lock():
        root = Path(tempfile.mkdtemp(prefix="pam-twofa-guard-", dir="/tmp"))
        try:
            root.chmod(0o755)
            bin_dir = public_dir(root, "bin")
            host = compile_setuid_host(bin_dir)
            confdir = public_dir(root, "pam.d")
            out_dir = root / "out"
            out_dir.mkdir(mode=0o700)
            probe = public_dir(root, "module") / "probe.py"
            probe.write_text(PROBE_PY)
            yield World(root, host, confdir, out_dir, probe)
        finally:
            with_bit = root / "bin" / "pam-setuid-host"
            if with_bit.exists():
                with_bit.chmod(0o755)  # the setuid bit goes first, whatever happens next
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Run:
    stdout: str
    stderr: str
    marker: Path
    report: dict[str, object] | None

    @property
    def payload_ran(self) -> bool:
        return self.marker.exists()


def attack(world: World, variant: str, guard: bool, rounds: int = 1) -> Run:
    """Run the host as ATTACKER with a crafted standard library in reach (``variant``
    "path": first on PATH; "cwd": no python3 on PATH, the crafted one in the cwd)."""
    name = f"{variant}-{'guard' if guard else 'bare'}-{rounds}"
    attacker_home = public_dir(world.root, name, owner=ATTACKER)
    marker = attacker_home / "marker"
    out = world.out_dir / f"{name}.json"
    (world.confdir / SERVICE).write_text("".join(
        line + "\n" for line in service_lines(world.probe, out, guard)))
    evil = crafted_prefix(attacker_home / "evil", marker)
    if variant == "path":
        path, cwd = f"{evil}/bin:/usr/bin:/bin", attacker_home
    else:
        path, cwd = "/nonexistent", evil
    res = subprocess.run(
        ["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups",
         "env", "-i", f"PATH={path}", "LANG=C.UTF-8",
         os.fspath(world.host), SERVICE, "root", os.fspath(world.confdir), str(rounds)],
        cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        check=False)
    report = json.loads(out.read_text()) if out.exists() else None
    return Run(res.stdout, res.stderr, marker, report)


@pytest.mark.parametrize("variant", ["path", "cwd"])
def test_bare_pam_python_runs_the_callers_stdlib_as_root(world: World, variant: str) -> None:
    """The attack, reproduced: without the guard the payload runs with euid 0."""
    run = attack(world, variant, guard=False)
    assert run.payload_ran, run
    assert "euid=0" in run.marker.read_text().splitlines()
    assert run.report is not None, run
    assert os.fspath(world.root) in str(run.report["encodings"])  # the crafted one
    assert run.report["prefix"] != "/usr"


@pytest.mark.parametrize("variant", ["path", "cwd"])
def test_guard_starts_debians_interpreter_whatever_the_caller_set(
        world: World, variant: str) -> None:
    run = attack(world, variant, guard=True)
    assert not run.payload_ran, run.marker.read_text()
    assert "round=0 authenticate=0 setcred=0" in run.stdout, run
    assert "euid=0 " in run.stdout
    assert "environ=unchanged locale=unchanged" in run.stdout, run.stdout
    report = run.report
    assert report is not None, run
    assert report["euid"] == 0
    assert (report["prefix"], report["base_prefix"], report["exec_prefix"]) == ("/usr",) * 3
    assert report["executable"] == "/usr/bin/python3"
    assert report["path"] == DEBIAN_PATH  # no cwd, no /usr/local, nothing of the caller
    assert report["encodings"] == "/usr/lib/python3.11/encodings/__init__.py"
    flags = {k: report[k] for k in ("no_site", "isolated", "safe_path", "dont_write_bytecode",
                                    "ignore_environment", "utf8_mode")}
    assert flags == dict.fromkeys(flags, 1), flags
    # Without `site`, Debian's packages the module needs are still found.
    assert report["imports"] == {
        "yaml": "/usr/lib/python3/dist-packages/yaml",
        "qrcode": "/usr/lib/python3/dist-packages/qrcode",
        "pyotp": "/usr/lib/python3/dist-packages/pyotp",
    }


def test_guard_serves_many_transactions_in_one_process(world: World) -> None:
    """A screen locker runs one transaction per unlock in one process: the guard's
    interpreter stays (never finalised, never unloaded) and pam_python reuses it."""
    run = attack(world, "path", guard=True, rounds=3)
    assert not run.payload_ran
    for r in range(3):
        assert f"round={r} authenticate=0 setcred=0" in run.stdout, run
    assert run.report is not None and run.report["path"] == DEBIAN_PATH
