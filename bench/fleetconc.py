"""64 concurrent TOTP logins across 8 hosts: the fleet store vs the file store, in one
run. Each of the 64 users logs in once with the right code, 8 logins per host, all
started together (each pamtester in a mount namespace of its own: pam_wrapper has
only 62 /tmp names). The fleet: 8 twofa-fleetd (host1..host8, one database
connection each) in front of one PostgreSQL; the file store: the same 64 logins on
this machine's files (per-user locks, an fsync each). Throughput (logins/s, the
median round) and p99 latency (from start to exit of each pamtester); exact: 64
successes and every user's step recorded. Rounds alternate the two stores.
"""

from __future__ import annotations

from typing import Any

from bench.concurrency import CONCURRENT, burst
from bench.fleet import fleet_hosts, forget_steps
from bench.world import World, percentile

HOSTS = 8


def run(rounds: int = 3) -> list[dict[str, Any]]:
    users = [f"u{i:02d}" for i in range(CONCURRENT)]
    world = World()
    try:
        for user in users:
            world.add_user(user)
        world.env.service("twofa")
        with fleet_hosts(world, HOSTS, users) as (db, services):
            per_login = [services[i * HOSTS // CONCURRENT] for i in range(CONCURRENT)]
            stats: dict[str, dict[str, list[Any]]] = {
                name: {"wall": [], "lat": [], "exact": []} for name in ("file", "fleet")}
            for r in range(rounds):
                for name in (("file", "fleet") if r % 2 == 0 else ("fleet", "file")):
                    if name == "file":
                        for user in users:
                            world.reset_twofa(user)
                        out = burst(world, "twofa", users)
                        steps = [world.counters(u)[1] for u in users]
                    else:
                        forget_steps(db)
                        out = burst(world, per_login, users)
                        with db.connect().cursor() as cur:
                            cur.execute("SELECT last_step FROM twofa.users")
                            steps = [row[0] for row in cur.fetchall()]
                    ok = sum(rc == 0 for rc in out["codes"])  # type: ignore[attr-defined]
                    stats[name]["exact"].append(ok == CONCURRENT and -1 not in steps
                                                and len(steps) == CONCURRENT)
                    stats[name]["wall"].append(out["wall"])
                    stats[name]["lat"].extend(out["latencies"])  # type: ignore[arg-type]
        rows = []
        for name, label in (("file", "file store"), ("fleet", f"fleet store, {HOSTS} daemons")):
            st = stats[name]
            per_s = sorted(CONCURRENT / w for w in st["wall"])
            rows.append({"case": f"64 users on {HOSTS} hosts", "store": label,
                         "rounds": rounds, "logins_per_s": round(per_s[len(per_s) // 2], 1),
                         "p99_ms": round(percentile(st["lat"], 99) * 1000, 1),
                         "exact": all(st["exact"])})
        base = rows[0]
        for row in rows:
            row["throughput_vs_file"] = round(row["logins_per_s"] / base["logins_per_s"], 3)
            row["p99_vs_file"] = round(row["p99_ms"] / base["p99_ms"], 3)
        return rows
    finally:
        world.close()
