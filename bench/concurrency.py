"""Concurrency: 64 logins at once, of one user and of 64 users, pam-twofa vs
google-authenticator: throughput, p99 latency, and whether every decision and
every counter is exact. The bare pam_python module runs alongside as the speed
reference (it accepts any answer, so it has no decisions to get right).

Exact means, with the right code for every login:
- one user: the code is good once (pam-twofa refuses a step not newer than the
  last accepted one; google-authenticator is set up with DISALLOW_REUSE, its own
  replay rule): exactly 1 success, 63 refusals, and pam-twofa's failure counter
  is exactly 63; the secret file is intact afterwards;
- 64 users: 64 successes and each user's state records its own step.

pam_wrapper copies the stack into /tmp/pam.X, one of 62 names, so each host runs
with a private /tmp (a mount namespace): 64 can then live at once.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.world import PASSWORD, SECRET, World, code_now, percentile
from tests.harness.procs import private_tmp_cmd

CONCURRENT = 64



def _wait_mid_step(margin: float = 5.0) -> None:
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.05)


def burst(world: World, service: str | list[str], users: list[str]) -> dict[str, object]:
    """Start one login per entry of ``users`` at once (``service``: one for all, or one
    per login); wall time, latencies, exit codes."""
    _wait_mid_step()
    code = code_now()
    world.drain_log()
    procs = []
    services = service if isinstance(service, list) else [service] * len(users)
    started = time.perf_counter()
    for user, svc in zip(users, services, strict=True):
        cmd, env = private_tmp_cmd(["pamtester", svc, user, "authenticate"],
                                   world.env.wrapper_env())
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env, cwd=world.tmp)
        procs.append((time.perf_counter(), proc))
    for _, proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{PASSWORD}\n{code}\n".encode())
        proc.stdin.close()
    latencies = []
    codes = []
    logs: list[str] = []
    for begun, proc in procs:
        while proc.poll() is None:
            logs.extend(world.drain_log())
            time.sleep(0.002)
        latencies.append(time.perf_counter() - begun)
        codes.append(proc.returncode)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if "PWRAP_ERROR" in err:
            raise RuntimeError(f"pam_wrapper failed: {err}")
    wall = time.perf_counter() - started
    logs.extend(world.drain_log())
    return {"wall": wall, "latencies": latencies, "codes": codes, "logs": logs}


def _ga_file(world: World, user: str) -> Path:
    return world.env.users[user].home / ".google_authenticator"


def _ga_reset(world: World, users: list[str]) -> None:
    for user in users:
        path = _ga_file(world, user)
        path.write_text(f'{SECRET}\n" WINDOW_SIZE 3\n" DISALLOW_REUSE\n" TOTP_AUTH\n')


def _ga_intact(world: World, user: str) -> bool:
    lines = _ga_file(world, user).read_text().splitlines()
    return bool(lines) and lines[0] == SECRET and '" TOTP_AUTH' in lines


def run(world: World, users: list[str], rounds: int = 3) -> list[dict[str, object]]:
    """Both cases for both modules, ``rounds`` bursts each; one row per case."""
    world.env.service_raw("ga-reuse", world._stack(
        "auth required pam_google_authenticator.so"))
    rows = []
    cases = [("one user", [users[0]] * CONCURRENT), ("64 users", users[:CONCURRENT])]
    for case, logins in cases:
        distinct = sorted(set(logins))
        for module, service in (("floor (bare pam_python)", "floor"), ("pam-twofa", "twofa"),
                                ("google-authenticator", "ga-reuse")):
            exact_rounds = 0
            latencies: list[float] = []
            throughput = []
            details = []
            for _ in range(rounds):
                for user in distinct:
                    world.reset_twofa(user)
                _ga_reset(world, distinct)
                out = burst(world, service, logins)
                ok = sum(rc == 0 for rc in out["codes"])  # type: ignore[attr-defined]
                expected_ok = len(distinct) if module != "floor (bare pam_python)" else len(logins)
                exact = ok == expected_ok
                if module.startswith("floor"):
                    note = f"{ok} ok (accepts anything: the reference for speed only)"
                elif module == "pam-twofa":
                    failures = sum(world.counters(u)[0] for u in distinct)
                    steps = {world.counters(u)[1] for u in distinct}
                    exact = exact and failures == len(logins) - expected_ok and -1 not in steps
                    note = f"{ok} ok, failures counter {failures}"
                else:
                    intact = all(_ga_intact(world, u) for u in distinct)
                    exact = exact and intact
                    note = f"{ok} ok, files intact: {intact}"
                exact_rounds += exact
                details.append(note)
                latencies.extend(out["latencies"])  # type: ignore[arg-type]
                throughput.append(len(logins) / out["wall"])  # type: ignore[operator]
            rows.append({
                "case": case, "module": module, "rounds": rounds,
                "logins_per_s": round(sorted(throughput)[len(throughput) // 2], 1),
                "p99_ms": round(percentile(latencies, 99) * 1000, 1),
                "exact_rounds": exact_rounds, "exact": exact_rounds == rounds,
                "details": details,
            })
    return rows
