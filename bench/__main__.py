"""``make bench`` / ``python3 -m bench``: pam-twofa against its peers, in one run.

Sections (``--only`` picks some): pam (PAM transaction timings), ssh (SSH logins),
scale (store and policy size), conc (64 concurrent logins), guard (pam_python with and
without pam_twofa_guard.so; authenticate vs setcred), rollout (twofa-admin report over
1,000 users and doctor), fleet (a TOTP login on the fleet store, PostgreSQL through
twofa-fleetd, vs the file store; and 64 concurrent logins across 8 hosts on each).
Ratios are computed
within one run from interleaved measurements; targets are checked and printed, and
the exit status is 0 whatever they say (a bench reports, the tests decide).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bench import (
    concurrency,
    fleet,
    fleetconc,
    guardrun,
    pamrun,
    report,
    rollout,
    scale,
    sshrun,
)
from bench.world import World, ensure_pyc, median, percentile

FLOOR = "floor (bare pam_python)"
TARGETS = {"pam": 1.15, "ssh": 1.05, "scale": 1.05}


def run_pam(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    world = World()
    try:
        world.add_user("alice")
        contenders = world.add_services()
        scaled, setup = scale.add_scale_services(world)
        cpu: dict[str, list[float]] = {}
        pam = pamrun.series(world, contenders, n, cpu=cpu)
        pam_rows = pamrun.summarize(pam, FLOOR, cpu)
        base = "scale: 10 users, 10 listed"
        sc = pamrun.series(world, scaled, n, cpu=cpu)
        scale_rows = pamrun.summarize(sc, base, cpu)
        for row in scale_rows:
            row["setup_s"] = setup[str(row["name"])]
        return pam_rows, scale_rows
    finally:
        world.close()


def run_ssh(n: int) -> list[dict[str, Any]]:
    times = sshrun.series(n)
    rows = []
    for client in ("paramiko", "openssh"):
        floor = median(times[f"{FLOOR} / {client}"])
        for module in sshrun.MODULES:
            values = times[f"{module} / {client}"]
            rows.append({"name": f"{module} / {client}", "n": len(values),
                         "median_ms": round(median(values) * 1000, 1),
                         "p90_ms": round(percentile(values, 90) * 1000, 1),
                         "ratio_to_floor": round(median(values) / floor, 3)})
    return rows


def run_conc(rounds: int) -> list[dict[str, Any]]:
    world = World()
    try:
        users = ["alice", *(f"user{i:02d}" for i in range(concurrency.CONCURRENT - 1))]
        for user in users:
            world.add_user(user)
        world.add_services()
        return concurrency.run(world, users, rounds)
    finally:
        world.close()


def verdicts(result: dict[str, Any]) -> list[str]:
    out = []
    for row in result.get("pam", []):
        if row["name"] == "pam-twofa TOTP":
            ok = row["ratio_to_floor"] <= TARGETS["pam"]
            out.append(f"TOTP PAM transaction: {row['ratio_to_floor']}x the floor "
                       f"(target <= {TARGETS['pam']}x): {'met' if ok else 'NOT met'}; "
                       f"CPU time {row.get('cpu_ratio')}x")
    for row in result.get("ssh", []):
        if row["name"].startswith("pam-twofa"):
            ok = row["ratio_to_floor"] <= TARGETS["ssh"]
            out.append(f"SSH login {row['name']}: {row['ratio_to_floor']}x the floor "
                       f"(target <= {TARGETS['ssh']}x): {'met' if ok else 'NOT met'}")
    for row in result.get("scale", []):
        if row["ratio_to_floor"] != 1.0:
            ok = row["ratio_to_floor"] <= TARGETS["scale"]
            out.append(f"{row['name']}: {row['ratio_to_floor']}x the 10/10 login "
                       f"(target within 5 %): {'met' if ok else 'NOT met'}; "
                       f"CPU time {row.get('cpu_ratio')}x")
    for row in result.get("rollout", []):
        if row["name"].startswith("report"):
            ok = row["median_ms"] < rollout.TARGET_S * 1000
            out.append(f"twofa-admin {row['name']}: {row['median_ms']} ms (target < "
                       f"{rollout.TARGET_S:g} s): {'met' if ok else 'NOT met'}")
    out += fleet.verdict(result.get("fleet", []))
    for row in result.get("fleet_concurrency", []):
        out.append(f"64 logins on 8 hosts, {row['store']}: {row['logins_per_s']} logins/s "
                   f"({row['throughput_vs_file']}x the file store), p99 {row['p99_ms']} ms "
                   f"({row['p99_vs_file']}x); {'exact' if row['exact'] else 'NOT exact'}")
    for row in result.get("concurrency", []):
        if not row["module"].startswith("floor"):
            out.append(f"concurrency {row['case']}, {row['module']}: "
                       f"{'exact' if row['exact'] else 'NOT exact'} ({'; '.join(row['details'])})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="timed runs per contender (>= 30)")
    parser.add_argument("--ssh-n", type=int, default=30, help="timed SSH logins per pair")
    parser.add_argument("--rounds", type=int, default=3, help="concurrency bursts per case")
    parser.add_argument("--only", default="pam,ssh,conc,guard,rollout,fleet",
                        help="sections: pam,ssh,conc,guard,rollout,fleet (pam includes scale)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (pam_wrapper, mount namespaces, GA's file owner)")
        return 2
    ensure_pyc()
    only = set(args.only.split(","))
    load = os.getloadavg()[0]
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cpus, load {load:.2f} at start",
        "n": args.n,
    }
    if "pam" in only:
        result["pam"], result["scale"] = run_pam(args.n)
        cols = ["name", "n", "median_ms", "p90_ms", "ratio_to_floor", "cpu_median_ms",
                "cpu_ratio"]
        print(report.table("PAM transaction (pamtester, fresh process per run)",
                           result["pam"], cols), end="\n\n")
        print(report.table("Scale (pam-twofa TOTP login; ratio to 10 users / 10 listed)",
                           result["scale"], [*cols, "setup_s"]), end="\n\n")
    if "ssh" in only:
        result["ssh"] = run_ssh(args.ssh_n)
        print(report.table("SSH login: connect, password + code, run true",
                           result["ssh"], ["name", "n", "median_ms", "p90_ms",
                                           "ratio_to_floor"]), end="\n\n")
    if "conc" in only:
        result["concurrency"] = run_conc(args.rounds)
        print(report.table("64 concurrent logins (right code each)", result["concurrency"],
                           ["case", "module", "rounds", "logins_per_s", "p99_ms", "exact"]),
              end="\n\n")
    if "guard" in only:
        result["guard"] = guardrun.run(args.n)
        print(report.table("pam_twofa_guard.so (pamtester; ratio to the bare floor's "
                           "authenticate)", result["guard"],
                           ["name", "n", "median_ms", "p90_ms", "ratio_to_floor",
                            "cpu_median_ms", "cpu_ratio"]), end="\n\n")
    if "rollout" in only:
        result["rollout"] = rollout.run(args.n)
        print(report.table("twofa-admin report and doctor (fresh process per run)",
                           result["rollout"], ["name", "n", "median_ms", "p90_ms"]),
              end="\n\n")
    if "fleet" in only:
        result["fleet"] = fleet.run(args.n)
        print(report.table("Fleet store vs file store (pamtester, TOTP login; twofa-fleetd "
                           "to PostgreSQL on a Unix socket)", result["fleet"],
                           ["name", "n", "median_ms", "p90_ms", "ratio_to_file",
                            "cpu_median_ms", "cpu_ratio"]), end="\n\n")
        result["fleet_concurrency"] = fleetconc.run(args.rounds)
        print(report.table("64 concurrent logins (64 users, right code each) across 8 hosts",
                           result["fleet_concurrency"],
                           ["case", "store", "rounds", "logins_per_s", "throughput_vs_file",
                            "p99_ms", "p99_vs_file", "exact"]), end="\n\n")
    result["load_at_end"] = round(os.getloadavg()[0], 2)
    result["verdicts"] = verdicts(result)
    print("\n".join(result["verdicts"]))
    path = report.write_json(result)
    png = report.write_png(result)
    print(f"\nwrote {path}" + (f" and {png}" if png else " (no matplotlib: no PNG)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
