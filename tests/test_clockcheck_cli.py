"""twofa-clockcheck against real NTP servers on loopback (chronyd -x, libfaketime, our
own responder), its status file, and the systemd units (systemd-analyze verify)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa import clockstatus
from pam_twofa.errors import UsageError
from pam_twofa.timecheck import check as clockcheck
from pam_twofa.timecheck.check import Answer, Report, Sync
from tests.ntp_support import Chronyd, Responder, status_mode

REPO_ROOT = Path(__file__).resolve().parent.parent
UNITS = REPO_ROOT / "systemd"
SERVICE = "pam-twofa-clockcheck.service"
TIMER = "pam-twofa-clockcheck.timer"
SLACK = 3.0  # interpreter start and a loaded 2-core machine, on top of --timeout
# This host's automatic time sync, as the command sees it: "unknown" without systemd
# as PID 1 (containers, this machine); on a systemd host with sync off, a right
# offset still exits 1, so the expectations follow the host.
HOST_SYNC = clockcheck.sync_status(5)
IN_SYNC_EXIT = 1 if HOST_SYNC.ntp == "off" else 0


@pytest.fixture(scope="module")
def chrony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chronyd]:
    server = Chronyd(tmp_path_factory.mktemp("chrony"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chronyd]:
    server = Chronyd(tmp_path_factory.mktemp("chrony-shifted"), shift=60)
    yield server
    server.stop()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


def run_cli(state: Path, *args: str, stdout: int | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pam_twofa.cli.clockcheck`` with an empty policy and ``state``."""
    policy = state.parent / "policy.yaml"
    if not policy.exists():
        policy.write_text("")
    full_env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pam_twofa.cli.clockcheck", "--policy", str(policy),
         "--state-dir", str(state), *args],
        cwd=REPO_ROOT, env=full_env, text=True, stdin=subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=60, check=False)


def saved(state: Path) -> dict[str, object]:
    path = state / "clock.json"
    assert status_mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert isinstance(doc, dict)
    return doc


# ------------------------------------------------------------------ real servers
def test_in_sync_against_loopback_chronyd(chrony: Chronyd, state: Path) -> None:
    res = run_cli(state, "--server", chrony.server, "--json")
    assert res.returncode == IN_SYNC_EXIT, res.stderr
    out = json.loads(res.stdout)
    assert out["verdict"] == ("sync-off" if IN_SYNC_EXIT else "in-sync")
    assert out["server"] == chrony.server
    assert abs(out["offset"]) < 1.0
    assert 0 <= out["delay"] < 1.0
    assert out["stratum"] == 10  # `local stratum 10`
    assert out["max_offset"] == 10 and out["timeout"] == 5  # the policy defaults
    assert out["sync"] == HOST_SYNC.ntp  # "unknown" without systemd: not a failure
    doc = saved(state)
    assert doc["version"] == 1 and doc["offset"] == out["offset"]
    assert abs(float(doc["checked_at"]) - time.time()) < 60  # type: ignore[arg-type]
    status = clockstatus.read(str(state / "clock.json"))
    assert status is not None and status.verdict == out["verdict"]
    assert status.describe().endswith(
        "(automatic time sync is OFF)" if IN_SYNC_EXIT else "(in sync)")


def test_human_output_and_journal_prefixes(chrony: Chronyd, state: Path,
                                           tmp_path: Path) -> None:
    plain = run_cli(state, "--server", chrony.server)
    assert plain.returncode == IN_SYNC_EXIT, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0].startswith(f"server {chrony.server}: offset ")
    assert "stratum 10" in lines[0]
    if HOST_SYNC.ntp == "unknown":
        assert lines[1] == f"automatic time sync: unknown ({HOST_SYNC.why})"
    else:
        assert lines[1].startswith(f"automatic time sync: {HOST_SYNC.ntp}, synchronized: ")
    sync_priority = {"unknown": "<5>", "on": "<6>", "off": "<4>"}[HOST_SYNC.ntp]
    last = "automatic time sync is off (" if IN_SYNC_EXIT else "in sync: offset "
    assert lines[2].startswith(last) and "(limit 10 s)" in lines[2]
    # Under systemd stdout is the journal stream JOURNAL_STREAM names: prefixes.
    out = tmp_path / "journal-stream"
    with open(out, "w") as f:
        st = os.fstat(f.fileno())
        res = run_cli(state, "--server", chrony.server, stdout=f.fileno(),
                      env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert res.returncode == IN_SYNC_EXIT, res.stderr
    prefixed = out.read_text().splitlines()
    assert [line[:3] for line in prefixed] == [
        "<6>", sync_priority, "<4>" if IN_SYNC_EXIT else "<6>"]
    assert prefixed[2][3:].startswith(last)
    # A JOURNAL_STREAM that is not our stdout (inherited by a child) is ignored.
    other = run_cli(state, "--server", chrony.server, env={"JOURNAL_STREAM": "1:2"})
    assert not any(line.startswith("<") for line in other.stdout.splitlines())


def test_server_shifted_by_a_minute(shifted: Chronyd, state: Path) -> None:
    res = run_cli(state, "--server", shifted.server)
    assert res.returncode == 1, res.stdout + res.stderr
    shown = re.search(r"clock OFF: offset \+(\d+\.\d+)", res.stdout)
    assert shown is not None and abs(float(shown.group(1)) - 60) < 0.5, res.stdout
    js = run_cli(state, "--server", shifted.server, "--json")
    assert js.returncode == 1
    out = json.loads(js.stdout)
    assert out["verdict"] == "offset" and 59 < out["offset"] < 61
    doc = saved(state)
    assert doc["verdict"] == "offset" and 59 < float(doc["offset"]) < 61  # type: ignore[arg-type]


def test_limits_from_the_policy_and_the_command_line(shifted: Chronyd, state: Path) -> None:
    policy = state.parent / "policy.yaml"
    policy.write_text(f"clock:\n  servers: [{shifted.server}]\n  max_offset_seconds: 90\n"
                      "  timeout_seconds: 2\n")
    res = run_cli(state, "--json")
    assert res.returncode == IN_SYNC_EXIT, res.stderr
    out = json.loads(res.stdout)
    assert out["server"] == shifted.server and out["max_offset"] == 90 and out["timeout"] == 2
    assert run_cli(state, "--max-offset", "30").returncode == 1  # the option wins


def test_unreachable_server_exit_2_within_the_timeout(state: Path) -> None:
    hole = Responder("silent")  # receives, never answers
    try:
        start = time.monotonic()
        res = run_cli(state, "--server", hole.server, "--server", "127.0.0.1:9",
                      "--timeout", "1")
        elapsed = time.monotonic() - start
    finally:
        hole.close()
    assert res.returncode == 2, res.stdout + res.stderr
    assert elapsed < 1 + SLACK, elapsed
    assert hole.requests == 1  # it was really asked
    assert f"server {hole.server}: no answer within 1 s" in res.stdout
    assert "no NTP server answered" in res.stdout
    doc = saved(state)
    assert doc["verdict"] == "no-answer" and doc["offset"] is None


def test_median_of_three_servers(chrony: Chronyd, shifted: Chronyd, state: Path) -> None:
    # one server a minute off cannot decide alone against two good ones
    res = run_cli(state, "--server", chrony.server, "--server", shifted.server,
                  "--server", chrony.server, "--json")
    assert res.returncode == IN_SYNC_EXIT, res.stderr
    out = json.loads(res.stdout)
    assert abs(out["offset"]) < 1 and len(out["answers"]) == 3
    assert 59 < out["answers"][1]["offset"] < 61


@pytest.mark.parametrize(("mode", "error"), [
    ("kod", "kiss-o'-death"),
    ("foreign", "reply does not match our request"),
])
def test_untrusted_replies_are_not_answers(mode: str, error: str) -> None:
    server = Responder(mode)
    try:
        answer = clockcheck.query(server.server, 2)
    finally:
        server.close()
    assert answer.offset is None and answer.error is not None
    assert error in answer.error


def test_own_responder_good_reply_is_accepted() -> None:
    server = Responder("good")  # the control for the two above
    try:
        answer = clockcheck.query(server.server, 2)
    finally:
        server.close()
    assert answer.error is None and answer.stratum == 2
    assert answer.offset is not None and abs(answer.offset) < 1


def test_bad_server_argument_is_a_usage_error(state: Path) -> None:
    res = run_cli(state, "--server", "host:99999")
    assert res.returncode == 2 and "bad NTP server" in res.stderr
    assert not (state / "clock.json").exists()  # nothing was checked


def test_insecure_state_dir_fails(chrony: Chronyd, state: Path) -> None:
    state.chmod(0o755)  # open to others: the status is not written there
    res = run_cli(state, "--server", chrony.server)
    assert res.returncode == 74, res.stderr  # ExitCode.STATE
    assert "twofa-clockcheck: error:" in res.stderr and "group/other access" in res.stderr
    assert "in sync: " in res.stdout  # the check itself still reported
    assert not (state / "clock.json").exists()


# ------------------------------------------------------------------ pure parts
def test_split_server() -> None:
    assert clockcheck.split_server("ntp.example") == ("ntp.example", 123)
    assert clockcheck.split_server("10.0.0.1:1123") == ("10.0.0.1", 1123)
    assert clockcheck.split_server("[::1]:1123") == ("::1", 1123)
    assert clockcheck.split_server("fe80::1") == ("fe80::1", 123)
    for bad in ("host:0", "host:x", "host:", "[::1", "[::1]x", "", "a b"):
        with pytest.raises(UsageError):
            clockcheck.split_server(bad)


def test_host_servers_from_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert clockcheck.host_servers(str(root)) == ("pool.ntp.org",)
    chrony = root / "etc/chrony"
    (chrony / "sources.d").mkdir(parents=True)
    (chrony / "chrony.conf").write_text(
        "# comment\npool 2.debian.pool.ntp.org iburst\nserver 10.1.1.1 port 1123 iburst\n"
        "sourcedir /etc/chrony/sources.d\nmakestep 1 3\n")
    (chrony / "sources.d/local.sources").write_text("server ntp.corp.example iburst\n")
    timesyncd = root / "etc/systemd/timesyncd.conf.d"
    timesyncd.mkdir(parents=True)
    (root / "etc/systemd/timesyncd.conf").write_text("[Time]\n#NTP=\nNTP=a.example\n")
    (timesyncd / "z.conf").write_text("[Time]\nNTP=b.example c.example\n")
    ntpsec = root / "etc/ntpsec"
    ntpsec.mkdir()
    (ntpsec / "ntp.conf").write_text("server 127.127.1.0\npool d.example iburst\n")
    assert clockcheck.host_servers(str(root)) == (
        "2.debian.pool.ntp.org", "10.1.1.1:1123", "ntp.corp.example", "b.example")
    (chrony / "chrony.conf").write_text("makestep 1 3\n")
    (timesyncd / "z.conf").write_text("[Time]\nNTP=\n")  # an empty NTP= resets
    assert clockcheck.host_servers(str(root)) == ("d.example",)


def test_timedatectl_output() -> None:
    assert clockcheck.parse_timedatectl("NTP=yes\nNTPSynchronized=yes\n") == Sync(
        ntp="on", synchronized="yes")
    assert clockcheck.parse_timedatectl("NTP=no\nNTPSynchronized=no\n") == Sync(
        ntp="off", synchronized="no")
    assert clockcheck.parse_timedatectl("").ntp == "unknown"


def test_sync_status_where_systemd_is_not_running(tmp_path: Path) -> None:
    nosock = str(tmp_path / "no-chronyd.sock")  # chronyd asked instead: not running here
    sync = clockcheck.sync_status(2, str(tmp_path / "none"), nosock)
    assert (sync.ntp, sync.via) == ("unknown", "chronyc")
    assert sync.why.startswith("chronyd did not answer"), sync
    # a run dir that claims systemd: the real timedatectl answers only where it runs
    sync = clockcheck.sync_status(5, str(tmp_path), nosock)
    if os.path.isdir(clockcheck.SYSTEMD_RUN_DIR):
        assert sync == HOST_SYNC and sync.ntp in ("on", "off")
    else:  # timedatectl failed: chronyd is asked
        assert sync.ntp == "unknown" and sync.via == "chronyc", sync


def _report(offset: float | None, ntp: str) -> Report:
    answer = Answer(server="s", offset=offset, delay=0.001, stratum=2) if offset is not None \
        else Answer(server="s", error="no answer")
    return Report(checked_at=0.0, max_offset=10, timeout=5, answers=(answer,),
                  sync=Sync(ntp=ntp))


def test_verdicts_and_exit_codes() -> None:
    assert (_report(0.5, "on").verdict, _report(0.5, "on").exit_code) == ("in-sync", 0)
    assert _report(0.5, "unknown").exit_code == 0  # unknown alone never fails
    assert (_report(0.5, "off").verdict, _report(0.5, "off").exit_code) == ("sync-off", 1)
    assert (_report(-11, "on").verdict, _report(-11, "on").exit_code) == ("offset", 1)
    assert (_report(None, "off").verdict, _report(None, "off").exit_code) == ("no-answer", 2)


def test_status_reader_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    assert clockstatus.read(str(path)) is None  # none yet
    now = time.time()
    doc = {"checked_at": now, "verdict": "offset", "max_offset": 10, "offset": 60.0,
           "server": "s", "sync": "on"}
    clockstatus.write(str(path), doc)
    status = clockstatus.read(str(path))
    assert status is not None and status.offset == 60.0
    assert status.offset_beyond(30, now) == 60.0
    assert status.offset_beyond(60, now) is None  # the window covers it
    assert status.offset_beyond(30, now + clockstatus.STALE_SECONDS + 1) is None  # stale
    path.chmod(0o644)
    assert clockstatus.read(str(path)) is None  # not ours alone
    path.chmod(0o600)
    for garbage in (b"", b"{", b"[]", b'{"version": 2}', b'{"version": 1}'):
        path.write_bytes(garbage)
        assert clockstatus.read(str(path)) is None, garbage
    clockstatus.write(str(path), {**doc, "offset": "60"})
    assert clockstatus.read(str(path)) is None
    link = tmp_path / "link.json"
    link.symlink_to(path)
    assert clockstatus.read(str(link)) is None


def test_status_reader_is_cheap(tmp_path: Path) -> None:
    # the login path's reader: Debian's interpreter, no json, no socket
    path = tmp_path / "clock.json"
    clockstatus.write(str(path), {"checked_at": time.time(), "verdict": "in-sync",
                                  "max_offset": 10, "offset": 0.01})
    code = ("import sys; from pam_twofa import clockstatus as c; "
            f"s = c.read({str(path)!r}); assert s is not None and s.offset == 0.01; "
            "bad = {'json', 'socket', 'ntplib', 'subprocess', 'datetime'} & set(sys.modules); "
            "assert not bad, bad")
    done = subprocess.run(["/usr/bin/python3", "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ systemd units
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` works without systemd as PID 1, but wants ExecStart's
    binary to exist: verify copies with the path of the installed console script."""
    script = Path(sys.executable).parent / "twofa-clockcheck"
    assert script.is_file(), "pip install -e . (make deps) installs the console script"
    service = (UNITS / SERVICE).read_text()
    assert "ExecStart=/usr/bin/twofa-clockcheck\n" in service
    (tmp_path / SERVICE).write_text(service.replace("/usr/bin/twofa-clockcheck", str(script)))
    shutil.copy(UNITS / TIMER, tmp_path / TIMER)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / SERVICE), str(tmp_path / TIMER)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""  # warnings (unknown keys…) do not change rc
    for needed in ("Type=oneshot", "ProtectSystem=strict", "ReadWritePaths=/var/lib/pam-twofa\n",
                   "NoNewPrivileges=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n",
                   "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n"):
        assert needed in service, needed
    timer = (UNITS / TIMER).read_text()
    for needed in ("OnCalendar=hourly", "Persistent=true", "RandomizedDelaySec="):
        assert needed in timer, needed


def test_systemd_analyze_verify_catches_a_typo(tmp_path: Path) -> None:
    # the control for the test above: a misspelt hardening key is reported
    broken = (UNITS / SERVICE).read_text().replace("/usr/bin/twofa-clockcheck", "/bin/true")
    (tmp_path / SERVICE).write_text(broken.replace("ProtectSystem=", "ProtectSystm="))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / SERVICE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Unknown key" in done.stderr and "ProtectSystm" in done.stderr
