"""PAM transaction timings: one pamtester process per run, contenders interleaved.

Every round runs each contender once, in a shuffled order, so drift in the
machine's load spreads over all of them alike; ratios come from the same run.
A run that does not authenticate is an error, not a data point.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from bench.world import Contender, World, median, percentile


def series(world: World, contenders: Sequence[Contender], n: int, user: str = "alice",
           warmup: int = 3, seed: int = 1,
           cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """``n`` timed runs of each contender (wall seconds), after ``warmup`` untimed rounds;
    CPU seconds go into ``cpu`` when given."""
    rng = random.Random(seed)
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    if cpu is not None:
        cpu.update({c.name: [] for c in contenders})
    order = list(contenders)
    for round_no in range(warmup + n):
        rng.shuffle(order)
        for c in order:
            c.reset()
            elapsed, used, rc = world.run(c.service, user, c.answers(), c.op)
            if rc != 0:
                raise RuntimeError(f"{c.name}: pamtester exit {rc} (login refused)")
            if round_no >= warmup:
                times[c.name].append(elapsed)
                if cpu is not None:
                    cpu[c.name].append(used)
    return times


def summarize(times: dict[str, list[float]], floor: str,
              cpu: dict[str, list[float]] | None = None) -> list[dict[str, Any]]:
    """Rows of name, n, median/p90 in ms and the median's ratio to ``floor``'s
    (and the same for CPU time when given)."""
    base = median(times[floor])
    rows: list[dict[str, Any]] = []
    for name, values in times.items():
        row: dict[str, Any] = {
            "name": name,
            "n": len(values),
            "median_ms": round(median(values) * 1000, 2),
            "p90_ms": round(percentile(values, 90) * 1000, 2),
            "ratio_to_floor": round(median(values) / base, 3),
        }
        if cpu:
            row["cpu_median_ms"] = round(median(cpu[name]) * 1000, 2)
            row["cpu_ratio"] = round(median(cpu[name]) / median(cpu[floor]), 3)
        rows.append(row)
    return rows
