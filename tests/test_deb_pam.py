"""`apt-get remove` with the real package after `twofa-admin pam enable` (issue 12, item 12):
prerm takes the block out and says so, or, with a pam-twofa line it did not write,
refuses the removal and changes nothing. Runs as root on this machine's /etc/pam.d,
under the system lock and the package tests' machine lock; everything is restored.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa.hostconf import pamstack as ps
from tests.deb_support import (
    APT,
    PACKAGE,
    Built,
    build,
    install,
    installed_version,
    pam_d_digest,
    sh,
)
from tests.harness.syslock import system_lock

GUARD_DIR = Path("/usr/lib/x86_64-linux-gnu/security")
PAM_PERMIT = GUARD_DIR / "pam_permit.so"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("deb"))


@contextlib.contextmanager
def guard_installed() -> Iterator[None]:
    """The package's guard; in a tree whose package has none yet, a file of its name
    for `enable`'s "is it installed" check only (no login runs here), removed after."""
    if ps.module_exists(ps.DEFAULT_GUARD):
        yield
        return
    stand_in = GUARD_DIR / ps.DEFAULT_GUARD
    shutil.copy(PAM_PERMIT, stand_in)
    try:
        yield
    finally:
        stand_in.unlink()


@contextlib.contextmanager
def restored(*paths: Path) -> Iterator[None]:
    saved = {p: p.read_bytes() for p in paths}
    try:
        yield
    finally:
        for path, data in saved.items():
            if path.read_bytes() != data:
                path.write_bytes(data)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{ps.BACKUP_SUFFIX}")


def test_remove_takes_the_block_out_or_refuses_with_the_list(built: Built) -> None:
    sshd, su = Path("/etc/pam.d/sshd"), Path("/etc/pam.d/su")
    with system_lock(), install(built) as inst:
        with guard_installed(), restored(sshd, su):
            original = sshd.read_bytes()
            done = sh("twofa-admin", "pam", "enable", "sshd")
            assert "sshd: enabled: /etc/pam.d/sshd:" in done.stdout
            enabled = sshd.read_bytes()
            assert ps.BEGIN.encode() in enabled

            su.write_bytes(su.read_bytes() + b"auth required pam_python.so pam_twofa.py\n")
            refused = sh(*APT, "remove", PACKAGE, check=False)
            out = refused.stdout + refused.stderr
            assert refused.returncode != 0, out
            assert "/etc/pam.d/su:" in out and "libpam-twofa: not removed" in out
            assert installed_version() is not None  # still installed and configured
            assert sshd.read_bytes() == enabled  # all or nothing

            su.write_bytes(su.read_bytes().replace(
                b"auth required pam_python.so pam_twofa.py\n", b""))
            removed = sh(*APT, "remove", PACKAGE)
            assert "sshd: disabled: removed /etc/pam.d/sshd:" in removed.stdout
            assert "pam-twofa is out of every PAM stack" in removed.stdout
            assert installed_version() is None
            assert sshd.read_bytes() == original
        assert pam_d_digest() == inst.pam_d_before
