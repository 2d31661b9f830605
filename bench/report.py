"""The bench's outputs: a text table, a JSON file and a PNG plot under bench/results/."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A fixed-width text table of ``columns`` of ``rows``."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def write_json(result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"bench-{stamp}.json"
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


def _bars(ax: Any, title: str, rows: list[dict[str, Any]]) -> None:
    names = [r["name"] for r in rows][::-1]
    med = [r["median_ms"] for r in rows][::-1]
    p90 = [r["p90_ms"] for r in rows][::-1]
    ax.barh(names, med, color="#4c72b0", label="median")
    ax.errorbar(med, names, xerr=[[0] * len(med), [b - a for a, b in zip(med, p90, strict=True)]],
                fmt="none", ecolor="black", capsize=3, label="p90")
    ratios = [x.get("ratio_to_floor") for x in rows][::-1]
    for y, (m, top, r) in enumerate(zip(med, p90, ratios, strict=True)):
        label = f"{m:.1f} ms" + (f"  ({r:.2f}x)" if r is not None else "")
        ax.text(top, y, "  " + label, va="center", fontsize=7)
    ax.set_xlim(0, max(p90) * 1.3)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("ms", fontsize=8)
    ax.tick_params(labelsize=7)


def write_png(result: dict[str, Any]) -> Path | None:
    """One figure, a panel per section; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [(k, t) for k, t in (("pam", "PAM transaction (pamtester, fresh process)"),
                                  ("ssh", "SSH login (connect, auth, true)"),
                                  ("scale", "Scale: pam-twofa TOTP login"),
                                  ("guard", "pam_twofa_guard.so: with and without"))
              if result.get(k)]
    conc = result.get("concurrency") or []
    fig, axes = plt.subplots(len(panels) + (1 if conc else 0), 1,
                             figsize=(9, 2.2 + 1.6 * (len(panels) + bool(conc)) * 1.4))
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    for ax, (key, title) in zip(axes, panels, strict=False):
        _bars(ax, title, result[key])
    if conc:
        ax = axes[-1]
        names = [f"{r['case']}: {r['module']}" + ("" if r["exact"] else " (NOT exact)")
                 for r in conc][::-1]
        ax.barh(names, [r["logins_per_s"] for r in conc][::-1], color="#55a868")
        ax.set_title("64 concurrent logins: throughput (logins/s)", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"pam-twofa bench {result['when']} ({result['machine']})", fontsize=9)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
