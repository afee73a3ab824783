"""Scenario 3, idle cost (and the per-job half of scenario 7, growth).

S interval tasks, none of them due during the run, are added to a running
scheduler. After a settle period (at least ``settle_s``, then until the
process has been quiet for 0.25 s: work a scheduler defers past the last add,
such as a write-behind flush, is reported apart as ``after_add_cpu_s``), the
process's CPU time (all threads,
``time.process_time``) is read over ``idle_s`` seconds of doing nothing, and
the RSS is read, also as the growth over the RSS measured after the library
was imported and before the scheduler existed. Then, with the S tasks still scheduled, N run-once no-op jobs
are pushed through (as in scenario 1) to get the cost per job at that
population: scenario 7 compares it from 10 to 100,000 scheduled tasks.
"""

from __future__ import annotations

import time
from typing import Any

from adapters import Adapter

from scenarios._common import DEFAULT_TIMEOUT, NEVER, Result, rss_mb, settled_rss_mb, shutdown
from scenarios.throughput import noop, run_batch


def idle_task() -> None:
    """Never runs during the benchmark (its first run is a week away)."""


def _settle(minimum: float, maximum: float, slice_s: float = 0.25) -> tuple[float, float]:
    """Sleep at least ``minimum`` s, then until a slice passes with < 1% CPU; return (CPU s, wall s)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(minimum)
    while time.perf_counter() - wall0 < maximum:
        c = time.process_time()
        time.sleep(slice_s)
        if time.process_time() - c < 0.01 * slice_s:
            break
    return time.process_time() - cpu0, time.perf_counter() - wall0


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    size = int(params["size"])
    idle_s = float(params.get("idle_s", 0.0))
    settle_s = float(params.get("settle_s", 1.0))
    perjob_n = int(params.get("perjob_n", 0))
    timeout = float(params.get("timeout", DEFAULT_TIMEOUT))

    adapter.preload()
    rss_before = settled_rss_mb()
    adapter.create(pool_size=int(params.get("pool_size", 10)))
    adapter.start()
    metrics: dict[str, float] = {}
    try:
        # The per-job path is warmed up (lazy imports, first job) before the population exists.
        if perjob_n:
            run_batch(adapter, 10, timeout)
        t0 = time.perf_counter()
        for _ in range(size):
            adapter.add(idle_task, interval=NEVER, delay=NEVER)
        setup_s = time.perf_counter() - t0
        metrics["populate_us_per_task"] = setup_s / max(size, 1) * 1e6
        # Work deferred past the last add (a write-behind flush, say) is not idling: wait until
        # the process goes quiet, and report that work on its own.
        settle_cpu, settle_wait = _settle(settle_s, float(params.get("settle_max_s", 30.0)))
        metrics["after_add_cpu_s"] = settle_cpu
        metrics["after_add_busy_s"] = settle_wait
        metrics["rss_mb"] = settled_rss_mb()
        # What the scheduler and its tasks add beyond the imported library.
        metrics["rss_delta_mb"] = metrics["rss_mb"] - rss_before
        if idle_s > 0:
            cpu0 = time.process_time()
            w0 = time.perf_counter()
            time.sleep(idle_s)
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - w0
            metrics["idle_cpu_s"] = cpu
            metrics["idle_cpu_s_per_10s"] = cpu * 10.0 / wall
        if perjob_n:
            _, total_s = run_batch(adapter, perjob_n, timeout)
            metrics["perjob_us"] = total_s / perjob_n * 1e6
        metrics["rss_end_mb"] = rss_mb()
    finally:
        note = shutdown(adapter, timeout=60.0)
    assert noop is not None
    return {
        "metrics": metrics,
        "info": {
            "size": size,
            "idle_s": idle_s,
            "perjob_n": perjob_n,
            "rss_before_mb": rss_before,
            "shutdown": note,
        },
    }
