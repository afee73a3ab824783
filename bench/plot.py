"""Draw the benchmark PNG from the JSON results (run in the plotting venv).

Usage: ``python bench/plot.py bench/results/latest.json bench/results/latest.png``

Four panels: the dispatch latency distribution (ECDF of every sample of every
repetition), cost per job as the number of scheduled tasks grows, idle CPU and
RSS against the number of tasks.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABEL = {
    "ours": "ours",
    "quiv140": "quiv 1.4.0",
    "aps": "APScheduler (memory)",
    "aps-sqlite": "APScheduler (SQLite)",
}
COLOR = {"ours": "#d62728", "quiv140": "#7f7f7f", "aps": "#1f77b4", "aps-sqlite": "#2ca02c"}


def _by_size(runs: list[dict[str, Any]], target: str, metric: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in runs:
        if r["target"] != target or r.get("status") != "ok" or "@" not in r["case"]:
            continue
        if not r["case"].startswith(("idle@", "growth@")):
            continue
        value = (r.get("metrics") or {}).get(metric)
        if isinstance(value, (int, float)):
            out.setdefault(int(r["case"].split("@")[1]), []).append(float(value))
    return out


def _curve(ax: Any, runs: list[dict[str, Any]], targets: list[str], metric: str) -> None:
    for t in targets:
        data = _by_size(runs, t, metric)
        if not data:
            continue
        sizes = sorted(data)
        meds = [statistics.median(data[s]) for s in sizes]
        lo = [m - min(data[s]) for s, m in zip(sizes, meds, strict=True)]
        hi = [max(data[s]) - m for s, m in zip(sizes, meds, strict=True)]
        ax.errorbar(sizes, meds, yerr=[lo, hi], marker="o", capsize=3, label=LABEL[t], color=COLOR[t])
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)


def main(src: str, dst: str) -> None:
    data = json.loads(Path(src).read_text())
    runs: list[dict[str, Any]] = data["runs"]
    meta = data["meta"]
    targets = [t for t in ("ours", "quiv140", "aps", "aps-sqlite") if t in meta["targets"]]

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    for t in targets:
        samples = sorted(
            v
            for r in runs
            if r["target"] == t and r["case"] == "latency" and r.get("status") == "ok"
            for v in (r.get("samples") or {}).get("latency_ms", [])
        )
        if not samples:
            continue
        n = len(samples)
        ax.step(
            [max(v, 1e-3) for v in samples],
            [(i + 1) / n for i in range(n)],
            where="post",
            label=f"{LABEL[t]} (pooled p99 {samples[min(n - 1, int(0.99 * n))]:.2g} ms)",
            color=COLOR[t],
        )
    ax.axvline(1.0, color="black", linestyle=":", linewidth=1, label="target p99 1 ms")
    ax.set_xscale("log")
    ax.set_xlabel("dispatch latency, ms (handler start - due)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title("2. Dispatch latency distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[0][1]
    _curve(ax, runs, targets, "perjob_us")
    ax.set_yscale("log")
    ax.set_xlabel("scheduled (not due) tasks")
    ax.set_ylabel("µs per job (batch of run-once no-ops)")
    ax.set_title("7. Cost per job as the number of tasks grows")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    _curve(ax, runs, targets, "idle_cpu_s_per_10s")
    ax.axhline(0.01, color="black", linestyle=":", linewidth=1, label="target 0.01 s")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xlabel("scheduled (not due) tasks")
    ax.set_ylabel("CPU s per 10 s idle")
    ax.set_title("3. Idle CPU")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    _curve(ax, runs, targets, "rss_mb")
    ax.set_xlabel("scheduled (not due) tasks")
    ax.set_ylabel("RSS, MB (process)")
    ax.set_title("3. Resident memory")
    ax.legend(fontsize=8)

    fig.suptitle(
        f"quiv benchmarks · {meta['date']} · {meta['nproc']} CPUs {meta['cpu']} · Python {meta['python']} · "
        f"{meta['reps']} rep(s)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
