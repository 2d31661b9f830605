"""Issue 11 finding 9 (last bullet): ``twofa-admin enroll --png PATH`` in a directory
another user controls. Root must write the secret only to a new file it creates, never
through a symlink, never block on a FIFO, and open it before replacing the enrollment
so a refused path changes nothing. Real CLI as root, files made by another uid."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.pamenv import PamEnv

STATE = "users/erin.json"


@pytest.fixture
def world(pam_env: PamEnv, tmp_path: Path) -> tuple[PamEnv, Path]:
    pam_env.add_user("erin")
    mallory = pam_env.add_user("mallory")
    first = pam_env.admin("enroll", "erin", "--qr", "none")  # the enrollment to keep
    assert first.returncode == 0, first.stderr
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chown(shared, mallory.uid, mallory.uid)  # mallory's directory
    return pam_env, shared


def enroll_png(env: PamEnv, png: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return env.admin("enroll", "erin", "--png", str(png), "--qr", "none", *extra, timeout=20)


def refused_unchanged(env: PamEnv, png: Path, needle: str, *extra: str) -> None:
    before = (env.state_dir / STATE).read_bytes()
    try:
        done = enroll_png(env, png, *extra)
    except subprocess.TimeoutExpired:
        pytest.fail(f"twofa-admin hung on {png}")
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert needle in done.stderr, done.stderr
    assert "Secret" not in done.stdout
    assert (env.state_dir / STATE).read_bytes() == before  # the enrollment is untouched


def test_a_file_planted_first_is_never_written(world: tuple[PamEnv, Path]) -> None:
    env, shared = world
    planted = shared / "erin.png"
    planted.write_bytes(b"")
    os.chown(planted, env.users["mallory"].uid, env.users["mallory"].uid)
    planted.chmod(0o644)
    refused_unchanged(env, planted, "exists already")
    assert planted.read_bytes() == b""  # mallory's file holds no secret
    refused_unchanged(env, planted, "exists already", "--json")


def test_a_symlinked_parent_or_final_link_is_refused(world: tuple[PamEnv, Path],
                                                      tmp_path: Path) -> None:
    env, shared = world
    elsewhere = tmp_path / "root-only"
    elsewhere.mkdir(mode=0o700)
    (shared / "dir").symlink_to(elsewhere)
    refused_unchanged(env, shared / "dir" / "erin.png", "is a symbolic link")
    assert list(elsewhere.iterdir()) == []
    victim = elsewhere / "victim"
    (shared / "link.png").symlink_to(victim)  # dangling: O_CREAT would make it
    refused_unchanged(env, shared / "link.png", "exists already")
    assert not victim.exists()


def test_a_fifo_does_not_hang(world: tuple[PamEnv, Path]) -> None:
    env, shared = world
    fifo = shared / "erin.png"
    os.mkfifo(fifo)
    os.chown(fifo, env.users["mallory"].uid, env.users["mallory"].uid)
    refused_unchanged(env, fifo, "exists already")


def test_a_new_file_is_root_only_and_a_failed_enroll_leaves_none(
        world: tuple[PamEnv, Path], tmp_path: Path) -> None:
    env, _shared = world
    png = tmp_path / "erin.png"
    bad = enroll_png(env, png, "--secret", "TOO-SHORT")
    assert bad.returncode == 2 and not png.exists(), bad.stderr
    done = enroll_png(env, png)
    assert done.returncode == 0, done.stderr
    st = png.stat()
    assert (st.st_uid, st.st_mode & 0o7777, st.st_nlink) == (0, 0o600, 1)
    uri = next(line.split()[1] for line in done.stdout.splitlines()
               if line.startswith("URI:"))
    decoded = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True,
                             text=True, check=True, timeout=30).stdout.strip()
    assert decoded == uri
