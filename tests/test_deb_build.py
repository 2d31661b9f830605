"""The Debian package as built (issue 7): a clean tree after the build, lintian, the
control fields and the contents. Installing and using it: tests/test_deb.py."""

from __future__ import annotations

import os
import re
import shutil
import tomllib

import pytest

from tests.deb_support import (
    PACKAGE,
    REPO,
    Built,
    build,
    man_path,
    repo_man_pages,
    repo_scripts,
    repo_units,
    sh,
)

# What the package may depend on: Debian 12 packages only (issue 7).
ALLOWED_DEPENDS = {
    "libpam-python", "libpam-runtime", "python3-click", "python3-ntplib",
    "python3-qrcode", "python3-yaml", "python3",
    "libc6", "libpython3.11",  # ${shlibs:Depends} of pam_twofa_guard.so
}
CRON_FILE = "/etc/cron.d/libpam-twofa"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build(tmp_path_factory.mktemp("deb"))


# ------------------------------------------------------------------ the built package
def test_build_leaves_the_tree_clean(built: Built) -> None:
    print(f"dpkg-buildpackage: {built.seconds:.1f} s")  # bounded by sh()'s timeout
    assert built.tree_after == built.tree_before


def test_lintian_is_clean(built: Built) -> None:
    res = sh("lintian", "--fail-on", "error,warning", "--tag-display-limit", "0",
             os.fspath(built.changes), check=False)
    tags = [line for line in res.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert res.returncode == 0 and not tags, res.stdout + res.stderr
    for override in sorted((REPO / "debian").glob("*lintian-overrides")):
        lines = override.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() and not line.startswith("#"):  # each override has its reason
                assert i > 0 and lines[i - 1].startswith("#"), f"{override}:{i + 1}"


def test_control_fields(built: Built) -> None:
    fields = sh("dpkg-deb", "-f", os.fspath(built.deb), "Package", "Source", "Architecture",
                "Version", "Depends").stdout
    assert f"Package: {PACKAGE}" in fields and "Source: pam-twofa" in fields
    arch = sh("dpkg", "--print-architecture").stdout.strip()  # pam_twofa_guard.so is native
    assert f"Architecture: {arch}" in fields
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert re.search(rf"^Version: {re.escape(version)}(-\S+)?$", fields, re.M), (
        "debian/changelog and pyproject.toml disagree on the version", fields)
    depends = fields.split("Depends:", 1)[1]
    names = {re.split(r"[\s:(]", d.strip(), maxsplit=1)[0]
             for alt in depends.split(",") for d in alt.split("|")}
    assert names <= ALLOWED_DEPENDS, names - ALLOWED_DEPENDS
    assert {"libpam-python", "libpam-runtime"} <= names
    assert "python3-pyotp" not in names  # a test oracle only (issue 13)
    known = sh("apt-cache", "show", "--no-all-versions", *sorted(names)).stdout
    for name in names:  # each one is a Debian package apt knows
        assert re.search(rf"^Package: {re.escape(name)}$", known, re.M), name


def test_contents_follow_the_repo(built: Built) -> None:
    """Units, man pages, console scripts and conffiles are picked up by convention."""
    listing = sh("dpkg-deb", "-c", os.fspath(built.deb)).stdout.splitlines()
    paths = {line.split()[5].removeprefix(".") for line in listing}
    links = {line.split()[5].removeprefix("."): line.split()[-1]
             for line in listing if line.startswith("l")}
    assert links["/lib/security/pam_twofa.py"] == (
        "/usr/lib/python3/dist-packages/pam_twofa/pam_entry.py")
    for unit in repo_units():
        assert f"/lib/systemd/system/{unit}" in paths, unit
    for page in repo_man_pages():
        assert man_path(page) in paths, page
    for script in repo_scripts():
        assert f"/usr/bin/{script}" in paths, script
    multiarch = sh("dpkg-architecture", "-qDEB_HOST_MULTIARCH").stdout.strip()
    expected = {
        f"/lib/{multiarch}/security/pam_twofa_guard.so",
        "/usr/share/pam-configs/pam-twofa",
        "/usr/lib/python3/dist-packages/pam_twofa/pam_entry.py",
        "/usr/lib/python3/dist-packages/pam_twofa/pamface.py",
        "/usr/lib/python3/dist-packages/pam_twofa/fleet/schema.sql",  # package data
        "/usr/share/doc/libpam-twofa/examples/fail2ban/filter.d/pam-twofa.conf",
        "/usr/share/doc/libpam-twofa/examples/fail2ban/jail.d/pam-twofa.conf",
        "/usr/share/doc/libpam-twofa/examples/ssh/sshd_config.d/pam-twofa-password.conf",
        "/usr/share/doc/libpam-twofa/examples/ssh/sshd_config.d/pam-twofa-publickey.conf",
        "/usr/share/doc/libpam-twofa/examples/policy.reference.yaml",
        CRON_FILE,
    }
    expected |= {f"/usr/share/doc/libpam-twofa/examples/profile.d/{p.name}"
                 for p in (REPO / "enroll").glob("*")}
    assert expected <= paths, expected - paths
    readme = "/usr/share/doc/libpam-twofa/README.Debian"
    assert {readme, readme + ".gz"} & paths  # dh_compress compresses it beyond 4 KiB
    assert not [p for p in paths if p.startswith("/etc/profile.d")]  # opt-in only
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    work = built.deb.parent / "control"
    shutil.rmtree(work, ignore_errors=True)
    sh("dpkg-deb", "-e", os.fspath(built.deb), os.fspath(work))
    declared = (work / "conffiles").read_text().split()
    repo_conf = sorted(f"/etc/pam-twofa/{p.name}" for p in (REPO / "etc/pam-twofa").iterdir())
    assert "/etc/pam-twofa/policy.yaml" in declared and CRON_FILE in declared
    assert sorted(d for d in declared if d.startswith("/etc/pam-twofa/")) == repo_conf
