"""Self-test of the hermetic PAM harness, with tests/harness/fixture_module.py under a
C host (pamtester), so that failures in real tests point at the module, not the harness."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness import rundir
from tests.harness.pamenv import FIXTURE_MODULE, PAM_MARKER, PamEnv, oathtool
from tests.harness.procs import merge_env

NOBODY = 65534


@pytest.fixture
def fx(pam_env: PamEnv) -> PamEnv:
    pam_env.add_user("alice", groups=["wheel", "staff"])
    pam_env.add_user("bob")
    pam_env.service("fx", module=FIXTURE_MODULE)
    return pam_env


def _result_line(lines: list[str]) -> str:
    found = [line for line in lines if "result=" in line]
    assert len(found) == 1, lines
    return found[0]


def test_layout(pam_env: PamEnv) -> None:
    root = pam_env.root
    for name in ("passwd", "group", "passdb", "policy.yaml", "pam.d/other"):
        assert (root / name).is_file(), name
    assert (root / "home").is_dir()
    assert stat.S_IMODE((root / "state").stat().st_mode) == 0o700
    assert "pam_deny.so" in (root / "pam.d" / "other").read_text()
    assert stat.S_ISSOCK((root / "log.sock").stat().st_mode)
    pam_env.write_policy("default: require\n")
    assert pam_env.policy.read_text() == "default: require\n"


def test_accounts_and_service_files(fx: PamEnv) -> None:
    assert fx.passwd.read_text().splitlines() == [
        f"alice:x:4242:4242:alice:{fx.home}/alice:/bin/sh",
        f"bob:x:4243:4243:bob:{fx.home}/bob:/bin/sh",
    ]
    groups = fx.group.read_text().splitlines()
    assert "wheel:x:4210:alice" in groups
    assert "staff:x:4211:alice" in groups
    assert "alice:x:4242:" in groups
    fx.service("second", "debug")
    assert fx.passdb.read_text().splitlines() == [
        "alice:secret:fx",
        "alice:secret:second",
        "bob:secret:fx",
        "bob:secret:second",
    ]
    lines = (fx.pam_dir / "second").read_text().splitlines()
    assert lines[0].endswith("pam_wrapper/pam_set_items.so")
    assert lines[1].endswith(f"pam_matrix.so passdb={fx.passdb}")
    repo = Path(__file__).resolve().parent.parent
    assert lines[2] == (
        f"auth required pam_python.so {repo}/pam_twofa/pam_entry.py policy={fx.policy} "
        f"state_dir={fx.state_dir} log_socket={fx.log_socket} debug"
    )
    assert lines[-1] == "account required pam_permit.so"


def test_password_and_right_code(fx: PamEnv) -> None:
    res = fx.pamtester("fx", "alice", ["secret", "123456"])
    assert res.rc == 0, res
    assert "successfully authenticated" in res.stdout
    assert "Password: " in res.stderr and "Verification code: " in res.stderr
    line = _result_line(res.log_lines)
    assert line.startswith("<86>fixture_module[")
    assert "user=alice uid=0 " in line and line.endswith("result=ok")


def test_wrong_password(fx: PamEnv) -> None:
    res = fx.pamtester("fx", "alice", ["wrong", "123456"])
    assert res.rc != 0, res
    assert "Authentication failure" in res.stderr
    # pam_matrix is `required`, so the stack goes on and the module still asks.
    assert _result_line(res.log_lines).endswith("result=ok")


def test_wrong_code(fx: PamEnv) -> None:
    res = fx.pamtester("fx", "alice", ["secret", "654321"])
    assert res.rc != 0, res
    assert _result_line(res.log_lines).endswith("result=fail")


def test_unknown_user_is_refused(fx: PamEnv) -> None:
    res = fx.pamtester("fx", "mallory", ["secret", "123456"])
    assert res.rc != 0, res


def test_nss_wrapper_groups_visible_in_module(fx: PamEnv) -> None:
    alice = fx.pamtester("fx", "alice", ["secret", "123456"])
    assert " groups=alice,staff,wheel " in _result_line(alice.log_lines)
    bob = fx.pamtester("fx", "bob", ["secret", "123456"])
    assert " groups=bob " in _result_line(bob.log_lines)


def test_pam_rhost_reaches_module(fx: PamEnv) -> None:
    res = fx.pamtester("fx", "alice", ["secret", "123456"], env={"PAM_RHOST": "192.0.2.7"})
    assert res.rc == 0, res
    assert " rhost=192.0.2.7 " in _result_line(res.log_lines)


def test_as_uid(fx: PamEnv) -> None:
    fx.add_user("nob", uid=NOBODY, groups=["wheel"])
    res = fx.pamtester("fx", "nob", ["secret", "123456"], as_uid=NOBODY)
    assert res.rc == 0, res
    line = _result_line(res.log_lines)
    assert f"uid={NOBODY} euid={NOBODY} " in line and "groups=nob,wheel" in line
    refused = fx.pamtester("fx", "nob", ["secret", "000000"], as_uid=NOBODY)
    assert refused.rc != 0, refused
    # setpriv itself is not preloaded, so it leaves no /tmp/pam.X behind (only this
    # world's are counted: other test runs make and remove theirs meanwhile)
    assert fx.pam_tmp_dirs() == []


def test_many_log_lines_are_drained_while_running(pam_env: PamEnv) -> None:
    # the datagram queue holds about 10 messages: the harness must read during the run
    pam_env.add_user("alice")
    pam_env.service("burst", "burst=40", module=FIXTURE_MODULE)
    res = pam_env.pamtester("burst", "alice", ["secret", "123456"], timeout=10)
    assert res.rc == 0, res
    assert len(res.log_lines) == 41
    assert res.log_lines[0].endswith("burst 0") and res.log_lines[39].endswith("burst 39")


def test_log_lines_are_per_call(fx: PamEnv) -> None:
    first = fx.pamtester("fx", "alice", ["secret", "123456"])
    second = fx.pamtester("fx", "alice", ["secret", "000000"])
    assert len(first.log_lines) == 1 and len(second.log_lines) == 1
    assert second.log_lines[0].endswith("result=fail")


def test_service_raw_and_other_denies(pam_env: PamEnv) -> None:
    pam_env.add_user("alice")
    pam_env.service_raw("permit", ["auth required pam_permit.so"])
    assert pam_env.pamtester("permit", "alice", []).rc == 0
    assert "alice:secret:permit" in pam_env.passdb.read_text()
    # a service without a file falls back to `other`, which denies
    assert pam_env.pamtester("missing", "alice", []).rc != 0


def test_close_cleans_up(tmp_path: Path) -> None:
    env = PamEnv(tmp_path / "t")
    env.add_user("nob", uid=NOBODY)
    env.service("fx", module=FIXTURE_MODULE)
    assert env.pamtester("fx", "nob", ["secret", "123456"], as_uid=NOBODY).rc == 0
    # Stand-ins (unique names: another run may run this test at once) for copies of the
    # service dir that pam_wrapper left: this world's, its host gone -> removed; this
    # world's without a pid yet (a host starting) and another world's -> kept.
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
    made = [Path(tempfile.mkdtemp(prefix="pam.", dir="/tmp")) for _ in range(3)]
    leftover, starting, foreign = made
    for path, root, pid in ((leftover, env.root, dead.stdout), (starting, env.root, None),
                            (foreign, tmp_path, dead.stdout)):
        (path / PAM_MARKER).write_text(f"{root}\n")
        if pid:
            (path / "pid").write_text(pid)
    try:
        assert set(made[:2]) <= set(env.pam_tmp_dirs()) and foreign not in env.pam_tmp_dirs()
        env.close()
        assert not leftover.exists()
        assert starting.exists() and foreign.exists()
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
    assert not env.log_socket.exists()
    # allow_uid() opened only this run's dirs (they go with the run dir), no parent above
    assert stat.S_IMODE(tmp_path.stat().st_mode) & stat.S_IXOTH and rundir.may_chmod(tmp_path)


def test_oathtool_rfc6238_vectors() -> None:
    seed_b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # b"12345678901234567890"
    assert oathtool(seed_b32, at=59, digits=8) == "94287082"
    assert oathtool(seed_b32, at=1111111109, digits=8) == "07081804"
    assert oathtool(seed_b32, at=20000000000, digits=8) == "65353130"
    assert oathtool(seed_b32, at=59, digits=6) == "287082"
    sha256_seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA"  # 32 bytes
    assert oathtool(sha256_seed, at=59, digits=8, algorithm="SHA256") == "46119246"
    assert len(oathtool(seed_b32)) == 6
    assert PamEnv.oathtool(seed_b32, at=59, period=60) == oathtool(seed_b32, at=0, period=60)


def test_environment_is_not_inherited(fx: PamEnv) -> None:
    env = fx.wrapper_env()
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert ".pyenv" not in env["PATH"]
    assert env["LD_PRELOAD"] == "libpam_wrapper.so libnss_wrapper.so"
    merged = merge_env(env, {"LD_PRELOAD": "libfaketime.so.1", "PAM_TTY": "pts/1"})
    assert merged["LD_PRELOAD"] == "libpam_wrapper.so libnss_wrapper.so libfaketime.so.1"
    assert merged["PAM_TTY"] == "pts/1"
    assert os.environ.get("PATH") is not None


def test_admin_command_line(pam_env: PamEnv) -> None:
    # a stand-in interpreter shows what admin() runs, where, as whom, with which NSS files
    fake = pam_env.root / "fakepy"
    fake.write_text('#!/bin/sh\necho "$(id -u) $PWD $NSS_WRAPPER_PASSWD $*"\n')
    fake.chmod(0o755)
    pam_env.add_user("nob", uid=NOBODY)
    done = pam_env.admin("enroll", "alice", python=str(fake))
    repo = Path(__file__).resolve().parent.parent
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "0",
        str(repo),
        str(pam_env.passwd),
        "-m",
        "pam_twofa.cli.admin",
        "--policy",
        str(pam_env.policy),
        "--state-dir",
        str(pam_env.state_dir),
        "enroll",
        "alice",
    ]
    as_nobody = pam_env.admin("list", python=str(fake), as_uid=NOBODY)
    assert as_nobody.returncode == 0, as_nobody.stderr
    assert as_nobody.stdout.split()[0] == str(NOBODY)
