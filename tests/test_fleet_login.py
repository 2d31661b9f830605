"""Logins on the fleet store: pamtester on several "hosts" (one PamEnv world and one
twofa-fleetd each, each daemon with its own host role) in front of one real
PostgreSQL. Enroll once, log in everywhere; replay and lockout count fleet-wide;
an unreachable database refuses in time, and only those it must."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_twofa import totp
from tests.fleet_support import (
    HOSTS,
    TIMEOUT,
    Daemon,
    FleetDb,
    daemons,
    fleet_db,
    fleet_template,
    hung_server,
    start,
)
from tests.harness.pamenv import PamEnv, Result
from tests.harness.procs import private_tmp_cmd
from tests.harness.wait import wait_fresh_step
from tests.pam_support import log_text, login, output, wrong_code

__all__ = ["daemons", "fleet_db", "fleet_template", "hung_server"]

OFFLINE = "the fleet database cannot be reached"
STORM_TIMEOUT = 20.0


def policy(socket: str, extra: str = "", timeout: float = TIMEOUT) -> str:
    """A host's policy: the fleet store behind ``socket``; the group twofa is required."""
    return ("mandatory:\n  scope: selected\n  groups: [twofa]\n"
            "store:\n  backend: postgresql\n  postgresql:\n"
            "    dsn: \"host=/nonexistent dbname=twofa\"\n"  # the daemon's own policy connects
            f"    socket: {socket}\n    timeout_seconds: {timeout}\n" + extra)


class Host:
    """One host: a PAM world (alice and carol in twofa, bob not) and its daemon."""

    def __init__(self, tmp: Path, name: str, daemon: Daemon | None, socket: str,
                 users: tuple[str, ...] = (), timeout: float = TIMEOUT) -> None:
        self.env = PamEnv(tmp / f"{name}-pam")
        self.daemon = daemon
        self.env.add_user("alice", groups=["twofa"])
        self.env.add_user("bob")
        self.env.add_user("carol", groups=["twofa"])
        for user in users:
            self.env.add_user(user)
        self.env.service("svc")
        self.env.write_policy(policy(socket, timeout=timeout))

    def login(self, user: str, code: str | None, **kw: object) -> Result:
        return login(self.env, user, code, **kw)


@pytest.fixture
def hosts(fleet_db: FleetDb, tmp_path: Path, daemons: list[Daemon]) -> Iterator[list[Host]]:
    """Two hosts (host1, host2) on one fleet database."""
    made: list[Host] = []
    for role in HOSTS[:2]:
        d = start(daemons, tmp_path, role, fleet_db.server.dsn(role))
        made.append(Host(tmp_path, role, d, d.socket))
    yield made
    for h in made:
        h.env.close()


def code_now(secret: str) -> str:
    return totp.totp(totp.b32decode(secret), time.time())


def test_enroll_once_log_in_on_two_hosts_replay_and_lockout_fleet_wide(
        fleet_db: FleetDb, hosts: list[Host]) -> None:
    h1, h2 = hosts
    secret = fleet_db.enroll("alice")
    wait_fresh_step()
    code = code_now(secret)
    ok = h1.login("alice", code)
    assert ok.rc == 0, ok
    assert log_text(ok) == "pam_twofa(svc:auth): user=alice rhost=- result=success reason=ok"
    replay = h2.login("alice", code)  # the same code on the other host
    assert replay.rc != 0, replay
    assert log_text(replay).endswith("result=refused reason=replay")
    assert "already used" in output(replay)
    bad = wrong_code(secret)
    texts = [log_text((h1, h2)[i % 2].login("alice", bad)) for i in range(5)]
    assert [t.split("failures=")[1].split()[0] for t in texts] == ["1", "2", "3", "4", "5"]
    assert "locked_until=" in texts[4]  # the 5th wrong code, over both hosts, locks
    for h in (h1, h2):  # locked on both: even a right code is not looked at
        locked = h.login("alice", code_now(secret))
        assert locked.rc != 0 and "reason=locked" in log_text(locked), locked
    assert fleet_db.row("alice")["failures"] == 5
    out = h1.login("bob", None)  # not enrolled, not required: the password alone
    assert out.rc == 0 and "reason=not-enrolled" in log_text(out), out


def test_hostile_answers_are_wrong_codes_counted(fleet_db: FleetDb,
                                                 hosts: list[Host]) -> None:
    secret = fleet_db.enroll("alice")
    for i, answer in enumerate(("9" * 5000, "\u0661\u0662\u0663\u0664\u0665\u0666",
                                "12345\u00e9"), start=1):
        res = hosts[0].login("alice", answer)
        assert res.rc != 0 and log_text(res).endswith(f"reason=bad-code failures={i}"), res
    assert fleet_db.row("alice")["failures"] == 3
    assert code_now(secret)  # the secret stays usable (not locked: 3 < 5)


def test_grace_and_required_users_through_the_fleet(fleet_db: FleetDb,
                                                    hosts: list[Host]) -> None:
    res = hosts[0].login("carol", None)  # required, not enrolled: grace starts fleet-wide
    assert res.rc == 0 and "reason=grace" in log_text(res), res
    first = fleet_db.connect().cursor()
    first.execute("SELECT first_seen IS NOT NULL FROM twofa.users WHERE name = 'carol'")
    assert first.fetchone() == (True,)


def test_trusted_device_on_one_host_only(fleet_db: FleetDb, hosts: list[Host]) -> None:
    h1, h2 = hosts
    for h in hosts:
        h.env.write_policy(policy(h.daemon.socket if h.daemon else "",
                                  "trusted_devices:\n  enabled: true\n"))
    secret = fleet_db.enroll("alice")
    env = {"PAM_RHOST": "192.0.2.9"}
    wait_fresh_step()
    first = h1.env.pamtester("svc", "alice", ["secret", code_now(secret), "yes"], env=env)
    assert first.rc == 0 and "trusted_device=" in log_text(first), first
    again = h1.login("alice", None, env=env)  # no code asked on host1
    assert again.rc == 0 and "reason=trusted-device" in log_text(again), again
    other = h2.login("alice", wrong_code(secret), env=env)  # host2 asks: devices are per host
    assert other.rc != 0 and "reason=bad-code" in log_text(other), other


def test_database_stopped_refuses_in_time_only_whom_it_must(
        fleet_db: FleetDb, hosts: list[Host]) -> None:
    h1 = hosts[0]
    secret = fleet_db.enroll("alice")
    wait_fresh_step()
    assert h1.login("alice", code_now(secret)).rc == 0
    fleet_db.server.stop("fast")
    for user, answers, refused, enrolled in (
            ("alice", ["secret"], True, "yes"),  # enrolled: refused before any code
            ("carol", ["secret"], True, "no"),  # required by the policy
            ("bob", ["secret"], False, "no")):  # neither: the password alone
        started = time.monotonic()
        res = h1.env.pamtester("svc", user, answers)
        took = time.monotonic() - started
        assert took < TIMEOUT + 0.5, (took, res)
        assert (res.rc != 0) is refused, res
        assert log_text(res).endswith(
            f"result={'refused' if refused else 'ignored'} reason=offline enrolled={enrolled}")
        assert (OFFLINE in output(res)) is refused, res
    assert h1.daemon is not None
    h1.daemon.stop()  # no daemon at all: nobody can say who is enrolled
    for user in ("alice", "bob"):
        started = time.monotonic()
        res = h1.env.pamtester("svc", user, ["secret"])
        assert time.monotonic() - started < TIMEOUT + 0.5, res
        assert res.rc != 0 and log_text(res).endswith(
            "result=refused reason=offline enrolled=unknown"), res
    hosts[0].daemon = None


def test_a_server_that_never_answers_refuses_in_time(
        fleet_db: FleetDb, hosts: list[Host], hung_server: int, tmp_path: Path,
        daemons: list[Daemon]) -> None:
    """The database accepts TCP and never says a word: the daemon (its enrolled list
    from a run against the real database) answers offline, the login decides in time."""
    fleet_db.enroll("alice")
    cache = tmp_path / "host1" / "enrolled.json"
    assert hosts[0].login("alice", "").rc != 0  # the daemon saw alice enrolled
    assert "alice" in cache.read_text()
    d = start(daemons, tmp_path, "hung", f"host=127.0.0.1 port={hung_server} user=host1 "
                                         "dbname=postgres sslmode=disable", cache)
    hosts[0].env.write_policy(policy(d.socket))
    for user, refused, enrolled in (("alice", True, "yes"), ("bob", False, "no"),
                                    ("carol", True, "no")):
        started = time.monotonic()
        res = hosts[0].env.pamtester("svc", user, ["secret"])
        assert time.monotonic() - started < TIMEOUT + 0.5, res
        assert (res.rc != 0) is refused, res
        assert log_text(res).endswith(
            f"result={'refused' if refused else 'ignored'} reason=offline enrolled={enrolled}")


def test_failmode_safe_argument_refused_with_the_fleet(hosts: list[Host]) -> None:
    env = hosts[0].env
    env.service("safe", "failmode=safe")
    res = env.pamtester("safe", "bob", ["secret"])
    assert res.rc != 0, res
    text = log_text(res, "safe")
    assert "reason=bad-argument" in text and "result=refused" in text, res


# ------------------------------------------------------------------ 64 logins, 8 hosts
@pytest.fixture
def eight(fleet_db: FleetDb, outside_tmp_path: Path,
          daemons: list[Daemon]) -> Iterator[list[Host]]:
    """Eight hosts outside /tmp: their pamtesters run with a /tmp of their own
    (``procs.private_tmp_cmd``: pam_wrapper has 62 /tmp/pam.X names for everyone).
    The storm counts exactness, not time: a generous ``timeout_seconds`` (64 logins
    started at once on 2 busy cores queue for seconds; an offline answer would be a
    refusal the count cannot tell from a wrong one)."""
    tmp_path = outside_tmp_path
    made = []
    users = tuple(f"u{i:02d}" for i in range(64))
    for role in HOSTS:
        d = start(daemons, tmp_path, role, fleet_db.server.dsn(role), timeout=STORM_TIMEOUT)
        made.append(Host(tmp_path, role, d, d.socket, users, timeout=STORM_TIMEOUT))
    yield made
    for h in made:
        h.env.close()


def storm(hosts: list[Host], answers: list[tuple[str, str]]) -> tuple[int, list[str]]:
    """64 pamtester logins started at once, 8 per host (``answers[i]`` on host i // 8):
    the successes and every log line (each host's socket drained while they run,
    as ``procs.run_many`` does for one command)."""
    procs: list[subprocess.Popen[str]] = []
    for i, (user, _code) in enumerate(answers):
        env = hosts[i // 8].env
        cmd, penv = private_tmp_cmd(["pamtester", "-v", "svc", user, "authenticate"],
                                    env.wrapper_env())
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, cwd=env.root, env=penv)
        procs.append(proc)
    for proc, (_user, code) in zip(procs, answers, strict=True):
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # one that died early: its stderr says
            proc.stdin.write(f"secret\n{code}\n")
            proc.stdin.close()
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        for h in hosts:
            lines.extend(h.env._log.drain())
        time.sleep(0.01)
    codes = [p.wait(timeout=5) for p in procs]
    errors = [p.stderr.read() for p in procs if p.stderr is not None]
    assert [e for e in errors if "Verification code: " not in e] == []  # every one asked
    for h in hosts:
        lines.extend(h.env._log.drain())
    return sum(1 for rc in codes if rc == 0), lines


def reasons(lines: list[str]) -> list[str]:
    return [line.split("reason=")[1].split()[0] for line in lines
            if "pam_twofa(svc:auth)" in line]


def test_64_concurrent_logins_across_8_hosts(fleet_db: FleetDb, eight: list[Host]) -> None:
    fleet_db.settings(max_failures=1000)  # 64 wrong codes, none locked out
    secret = fleet_db.enroll("alice")
    secrets = {f"u{i:02d}": fleet_db.enroll(f"u{i:02d}") for i in range(64)}
    wait_fresh_step()
    wins, lines = storm(eight, [("alice", code_now(secret))] * 64)
    assert wins == 1 and sorted(reasons(lines)) == ["ok"] + ["replay"] * 63
    assert fleet_db.row("alice")["failures"] == 0
    wait_fresh_step()
    wins, lines = storm(eight, [(u, code_now(s)) for u, s in secrets.items()])
    assert wins == 64 and reasons(lines) == ["ok"] * 64
    wins, lines = storm(eight, [("alice", wrong_code(secret))] * 64)
    assert wins == 0 and reasons(lines) == ["bad-code"] * 64
    assert fleet_db.row("alice")["failures"] == 64


def test_inline_enrollment_with_the_fleet_is_a_policy_error(tmp_path: Path) -> None:
    """Inline enrollment shows a secret before the code: with the fleet (which cannot
    take it yet) the policy refuses it rather than a login showing and then failing."""
    from pam_twofa import policyfile
    from pam_twofa.errors import PolicyError
    from pam_twofa.paths import Paths

    path = tmp_path / "policy.yaml"
    path.write_text(policy("/run/x.sock", "enrollment:\n  mode: inline\n"))
    path.chmod(0o600)
    with pytest.raises(PolicyError, match="inline is not available"):
        policyfile.load(Paths(policy=str(path), policy_explicit=True,
                              state_dir=str(tmp_path / "state")))
