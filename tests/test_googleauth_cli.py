"""Issue 11 finding 8 and issue 12 item 8: ``twofa-admin import-google-authenticator``.

Root reads a file in the user's home: before, ``open()`` followed a symlink to a
root-only file (and showed its first line in the error), blocked for ever on a
FIFO and took another user's file. Each case here runs the real CLI (root) on files
the real ``google-authenticator`` command wrote, with a hard timeout, and checks that
nothing is written. Then what was and was not carried over is reported.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.pamenv import PamEnv

STATE = "users/carol.json"


@pytest.fixture
def world(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("carol")
    pam_env.add_user("mallory")
    pam_env.write_policy("totp:\n  window: 1\nlockout:\n  max_failures: 5\n")
    return pam_env


def ga_file(path: Path, owner: int, *flags: str, window: int = 3) -> str:
    """A file written by the real ``google-authenticator`` command, owned by ``owner``."""
    subprocess.run(["google-authenticator", "-t", *flags, "-f", "-r", "3", "-R", "30",
                    "-w", str(window), "-e", "5", "-s", str(path), "-q", "-C"], check=True,
                   timeout=30, stdin=subprocess.DEVNULL, capture_output=True)
    os.chown(path, owner, owner)
    return path.read_text()


def refused(env: PamEnv, path: Path, needle: str) -> None:
    done = env.admin("import-google-authenticator", "carol", str(path), timeout=20)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert needle in done.stderr, done.stderr
    assert not (env.state_dir / STATE).exists()


def test_symlink_to_a_root_only_file_is_refused(world: PamEnv, tmp_path: Path) -> None:
    carol = world.users["carol"].uid
    # a root-only file that parses: the old open() imported it (root's secret as carol's)
    shadow = tmp_path / "shadow"
    ga_file(shadow, 0, "-d")
    shadow.chmod(0o600)
    link = tmp_path / "carol-ga"
    link.symlink_to(shadow)
    os.lchown(link, carol, carol)
    refused(world, link, "is a symbolic link")
    # a symlinked parent directory reaching the same file: the owner check stops it
    home = tmp_path / "carolhome"
    home.mkdir()
    (home / "sub").symlink_to(tmp_path)
    refused(world, home / "sub" / "shadow", "owned by uid 0, not by uid")


def test_fifo_is_refused_without_hanging(world: PamEnv, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.chown(fifo, world.users["carol"].uid, 0)
    # the old code blocked in open() until the 20 s timeout of admin() killed it
    try:
        refused(world, fifo, "is not a regular file")
    except subprocess.TimeoutExpired:
        pytest.fail("the import hung on a FIFO")


def test_someone_elses_or_writable_file_is_refused(world: PamEnv, tmp_path: Path) -> None:
    mallory = world.users["mallory"].uid
    planted = tmp_path / "planted"
    ga_file(planted, mallory, "-d")  # mallory's secret, imported as carol's: refused
    refused(world, planted, f"owned by uid {mallory}, not by uid {world.users['carol'].uid}")
    mine = tmp_path / "mine"
    ga_file(mine, world.users["carol"].uid, "-d")
    mine.chmod(0o622)
    refused(world, mine, "writable by group or others")
    big = tmp_path / "big"
    big.write_bytes(b"1" * (64 * 1024 + 1))
    os.chown(big, world.users["carol"].uid, 0)
    refused(world, big, "over 65536 bytes")
    absent = world.admin("import-google-authenticator", "nobody-here", str(mine))
    assert absent.returncode == 2 and "no passwd entry" in absent.stderr


def test_import_reports_what_did_not_carry_over(world: PamEnv, tmp_path: Path) -> None:
    ga = tmp_path / ".google_authenticator"
    ga_file(ga, world.users["carol"].uid, "-d", window=17)
    text = ga.read_text()
    assert '" WINDOW_SIZE 17' in text and '" RATE_LIMIT 3 30' in text, text
    assert '" DISALLOW_REUSE' in text, text
    done = world.admin("import-google-authenticator", "carol", str(ga))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "WINDOW_SIZE 17: not carried over; the policy's totp.window (1 step(s)" in out
    assert ("RATE_LIMIT 3 30: not carried over; the policy's lockout applies (5 wrong codes "
            "within 900 s") in out
    assert "DISALLOW_REUSE: not needed; pam-twofa never accepts a code twice." in out
    assert f"remove it: rm {ga}" in out
    assert ("warning: the old file accepted codes up to 8 step(s) either side of now, the "
            "policy only 1") in done.stderr
    assert (world.state_dir / STATE).exists()
    # a narrow window and no reuse rule: no warning, and the reuse change is said
    narrow = tmp_path / "narrow"
    ga_file(narrow, world.users["carol"].uid, "-D")
    again = world.admin("import-google-authenticator", "carol", str(narrow), "--force",
                        "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["warnings"] == []
    assert summary["old_file"] == str(narrow)
    assert summary["not_carried_over"][0].startswith("WINDOW_SIZE 3: not carried over")
    assert summary["not_carried_over"][-1].startswith("no DISALLOW_REUSE: the old file let")
