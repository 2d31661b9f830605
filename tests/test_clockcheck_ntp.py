"""The clock check past 2036 and with several servers (issue 12, items 10 and 12).

NTP timestamps wrap on 2036-02-07 06:28:16 UTC; ntplib read every reply after it as
1900 (and could not pack a request). ``pam_twofa.timecheck.ntp`` places each timestamp in the
era nearest the local clock: a table around the wrap, then a real chronyd serving a
clock that has passed it. Several servers by default, the median decides; and the
time sync status from chronyd itself where systemd does not run.
"""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa import schema
from pam_twofa.timecheck import check as clockcheck
from pam_twofa.timecheck import ntp
from tests.ntp_support import Chronyd

REPO = Path(__file__).resolve().parent.parent
WRAP = calendar.timegm((2036, 2, 7, 6, 28, 16))  # era 1 starts
ERA = 2**32


def test_the_era_boundary_is_2036_02_07() -> None:
    assert ntp.ERA1_START == WRAP == 2085978496


@pytest.mark.parametrize(("unix", "secs", "frac"), [
    (0.0, 2208988800, 0),  # 1970
    (1_767_225_600.5, 3_976_214_400, 2**31),  # 2026-01-01 00:00:00.5
    (WRAP - 1.0, ERA - 1, 0),  # the last second of era 0
    (WRAP - 0.25, ERA - 1, 3 * 2**30),
    (WRAP + 0.0, 0, 0),  # the first second of era 1
    (WRAP + 0.5, 0, 2**31),
    (WRAP + 86400.0, 86400, 0),
    (calendar.timegm((2100, 1, 1, 0, 0, 0)), 4_102_444_800 + 2208988800 - ERA, 0),
])
def test_timestamps_round_trip_in_the_era_nearest_the_local_clock(
        unix: float, secs: int, frac: int) -> None:
    assert ntp.to_ntp(unix) == (secs, frac)
    for local_error in (0.0, -3600.0, 3600.0, -30 * 365 * 86400.0, 30 * 365 * 86400.0):
        assert ntp.from_ntp(secs, frac, unix + local_error) == unix, local_error


@pytest.mark.parametrize(("server", "local", "offset"), [
    (WRAP + 2.0, WRAP - 3.0, 5.0),  # the server has wrapped, our clock has not
    (WRAP - 3.0, WRAP + 2.0, -5.0),  # ours has, the server's has not
    (WRAP + 60.0, WRAP + 60.0, 0.0),
])
def test_an_exchange_across_the_wrap_measures_the_true_offset(
        server: float, local: float, offset: float) -> None:
    request = ntp.request_packet(local)
    secs, frac = ntp.to_ntp(server)
    stamp = secs.to_bytes(4, "big") + frac.to_bytes(4, "big")
    reply = (bytes([0x24, 2, 6, 0xEC]) + bytes(20) + request[40:48] + stamp + stamp)
    parsed = ntp.parse_reply(reply, request, local, local)
    assert parsed is not None and parsed.matches and parsed.mode == 4
    assert parsed.offset == pytest.approx(offset, abs=1e-6)
    assert parsed.delay == pytest.approx(0.0, abs=1e-6)


def test_a_reply_that_does_not_echo_our_request_is_flagged() -> None:
    now = time.time()
    request = ntp.request_packet(now)
    stamp = request[40:48]
    other = bytes([stamp[0] ^ 1]) + stamp[1:]  # a stale or spoofed originate timestamp
    reply = bytes([0x24, 2, 6, 0xEC]) + bytes(20) + other + stamp + stamp
    parsed = ntp.parse_reply(reply, request, now, now)
    assert parsed is not None and not parsed.matches
    assert ntp.parse_reply(reply[:47], request, now, now) is None


@pytest.fixture(scope="module")
def after_wrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chronyd]:
    server = Chronyd(tmp_path_factory.mktemp("chrony-2036"), at="@2036-02-07 06:30:00")
    yield server
    server.stop()


def test_a_real_chronyd_after_the_wrap(after_wrap: Chronyd) -> None:
    """Its clock reads 2036-02-07 06:30 and on: the offset is that minus now, not -136 y."""
    expected = calendar.timegm((2036, 2, 7, 6, 30, 0)) - time.time()
    answer = clockcheck.query(after_wrap.server, 3)
    assert answer.error is None and answer.offset is not None, answer
    assert abs(answer.offset - expected) < 120, (answer.offset, expected)
    assert answer.stratum == 10 and answer.delay is not None and 0 <= answer.delay < 1


# ------------------------------------------------------------------ several servers
def test_the_default_policy_asks_several_servers() -> None:
    servers = schema.validate({})[0]["clock"]["servers"]
    assert len(servers) >= 3 and len(set(servers)) == len(servers), servers


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Chronyd]]:
    servers = [Chronyd(tmp_path_factory.mktemp("c0")), Chronyd(tmp_path_factory.mktemp("c1")),
               Chronyd(tmp_path_factory.mktemp("c2"), shift=300)]
    yield servers
    for server in servers:
        server.stop()


def test_the_median_of_the_policys_servers_decides(three: list[Chronyd],
                                                   tmp_path: Path) -> None:
    """Three real chronyds from the policy's list, one 5 minutes off: in sync."""
    policy = tmp_path / "policy.yaml"
    names = ", ".join(s.server for s in three)
    policy.write_text(f"clock:\n  servers: [{names}]\n  timeout_seconds: 3\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    res = subprocess.run(
        [sys.executable, "-m", "pam_twofa.cli.clockcheck", "--policy", str(policy),
         "--state-dir", str(state), "--json"], cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
        env={k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"})
    out = json.loads(res.stdout)
    assert [a["server"] for a in out["answers"]] == [s.server for s in three]
    offsets = [a["offset"] for a in out["answers"]]
    assert abs(offsets[0]) < 1 and abs(offsets[1]) < 1 and 299 < offsets[2] < 301, offsets
    assert abs(out["offset"]) < 1 and out["verdict"] in ("in-sync", "sync-off"), out
    assert out["server"] in (three[0].server, three[1].server)


# ------------------------------------------------------------------ chronyd's own view
@pytest.fixture(scope="module")
def commanded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chronyd]:
    server = Chronyd(tmp_path_factory.mktemp("chrony-cmd"), command_socket=True)
    yield server
    server.stop()


def test_without_systemd_chronyd_is_asked(commanded: Chronyd, tmp_path: Path) -> None:
    no_systemd = str(tmp_path / "no-systemd")
    sync = clockcheck.sync_status(5, no_systemd, str(commanded.command_socket))
    assert (sync.ntp, sync.via) == ("on", "chronyc"), sync
    assert sync.synchronized in ("yes", "no")  # `local stratum 10`: chrony says Normal
    assert sync.synchronized == "yes", sync
    report = clockcheck.check([commanded.server], 10, 3, no_systemd,
                              str(commanded.command_socket))
    assert report.sync == sync and report.verdict == "in-sync"


def test_without_systemd_or_chronyd_sync_is_unknown_with_the_reason(tmp_path: Path) -> None:
    sync = clockcheck.sync_status(5, str(tmp_path / "no-systemd"), str(tmp_path / "none.sock"))
    assert sync.ntp == "unknown" and sync.via == "chronyc"
    assert sync.why.startswith("chronyd did not answer"), sync


def test_chronyc_csv() -> None:
    normal = "7F7F0101,,10,1796150613.95,0.0,0.0,0.0,0.000,0.000,0.000,0.0,0.0,0.0,Normal\n"
    assert clockcheck.parse_chronyc(normal) == clockcheck.Sync(
        ntp="on", synchronized="yes", via="chronyc")
    unsynced = "00000000,,0,0.0,0.0,0.0,0.0,0.000,0.000,0.000,1.0,1.0,0.0,Not synchronised\n"
    assert clockcheck.parse_chronyc(unsynced).synchronized == "no"
    assert clockcheck.parse_chronyc("506 Cannot talk to daemon").ntp == "unknown"
