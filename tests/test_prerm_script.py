"""debian/libpam-twofa.prerm takes pam-twofa out of every stack on `remove` (issue 12,
item 12): the real script under /bin/sh, with the real twofa-admin of this checkout
pointed at a copy of Debian's /etc/pam.d (tests/fixtures/pam.d). pam-auth-update,
dpkg-query and deb-systemd-invoke are recorders, so nothing on the host changes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pamfiles_support import Host

PRERM = Path(__file__).resolve().parents[1] / "debian" / "libpam-twofa.prerm"
REPO = PRERM.parents[1]


class Prerm:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.bin = host.root / "bin"
        self.bin.mkdir()
        self.calls = host.root / "calls"
        self.calls.touch()
        self._stub("twofa-admin",
                   f'PYTHONPATH={REPO} exec {sys.executable} -m pam_twofa.cli.admin "$@" '
                   f"--pam-dir {host.dir} --module {host.module} --guard {host.guard}")
        for name in ("pam-auth-update", "dpkg-query", "deb-systemd-invoke"):
            self._stub(name, f'echo "{name} $*" >> {self.calls}')

    def _stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", str(PRERM), *args], capture_output=True, text=True,
                              env={"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin"},
                              timeout=60, check=False)

    def called(self) -> list[str]:
        return [c for c in self.calls.read_text().splitlines()
                if not c.startswith("dpkg-query")]


@pytest.fixture
def prerm(tmp_path: Path) -> Prerm:
    return Prerm(Host(tmp_path))


def test_remove_takes_every_block_and_the_profile_out(prerm: Prerm) -> None:
    host = prerm.host
    original = host.snapshot()
    host.ok("enable", "sshd")
    host.ok("enable", "sudo")
    host.add_profile()
    done = prerm.run("remove")
    assert done.returncode == 0, done
    assert "sshd: disabled" in done.stdout and "sudo: disabled" in done.stdout
    assert "pam-twofa is out of every PAM stack" in done.stdout
    assert host.read("sshd") == original["sshd"] and host.read("sudo") == original["sudo"]
    assert "pam-auth-update --package --remove pam-twofa" in prerm.called()


def test_remove_is_refused_with_the_list_of_lines_it_did_not_write(prerm: Prerm) -> None:
    host = prerm.host
    host.ok("enable", "sshd")
    path = host.dir / "su"
    path.write_text(path.read_text().replace(
        "@include common-auth\n", "@include common-auth\nauth required pam_python.so "
        "pam_twofa.py\n"))
    before = host.snapshot()
    done = prerm.run("remove")
    assert done.returncode == 1, done
    assert f"{host.dir}/su:58: auth required pam_python.so pam_twofa.py" in done.stderr
    assert "libpam-twofa: not removed" in done.stderr
    assert host.snapshot() == before  # all or nothing: sshd's block is still there
    assert prerm.called() == []  # and the profile too


@pytest.mark.parametrize("args", [("upgrade", "0.2.0"), ("failed-upgrade", "0.2.0"),
                                  ("deconfigure", "in-favour", "other", "1.0")])
def test_upgrade_and_deconfigure_leave_every_stack_alone(prerm: Prerm,
                                                         args: tuple[str, ...]) -> None:
    host = prerm.host
    host.ok("enable", "sshd")
    host.add_profile()
    before = host.snapshot()
    done = prerm.run(*args)
    assert done.returncode == 0, done
    assert host.snapshot() == before
    assert prerm.called() == []
