"""Scenario 7, growth.

``mode="perjob"``: cost per job with S scheduled-but-not-due tasks; the same
measurement as scenario 3 (``idle``) without the idle window, used for the
small populations (10, 100) where no idle figure is wanted. The curve
10 → 100,000 joins both.

``mode="retention"``: a scheduler with a 1 s history retention runs run-once
no-op jobs in batches; RSS is read (after the retention has passed and a
``gc.collect()``) once 1,000 jobs have finished and again after 100,000.
"""

from __future__ import annotations

import time
from typing import Any

from adapters import Adapter

from scenarios import idle
from scenarios._common import DEFAULT_TIMEOUT, Result, settled_rss_mb, shutdown
from scenarios.throughput import run_batch


def _retention(adapter: Adapter, params: dict[str, Any]) -> Result:
    total = int(params["jobs"])
    first = int(params.get("first", 1000))
    batch = int(params.get("batch", 1000))
    retention = int(params.get("retention_s", 1))
    wait_s = float(params.get("wait_s", retention + 1.5))
    timeout = float(params.get("timeout", DEFAULT_TIMEOUT))
    adapter.create(pool_size=10, retention=retention)
    adapter.start()
    metrics: dict[str, float] = {}
    info: dict[str, Any] = {"jobs": total, "first": first, "batch": batch, "retention_s": retention}
    try:
        done = 0
        t0 = time.perf_counter()
        while done < first:
            n = min(batch, first - done)
            run_batch(adapter, n, timeout)
            done += n
        time.sleep(wait_s)
        metrics["rss_first_mb"] = settled_rss_mb()
        while done < total:
            n = min(batch, total - done)
            run_batch(adapter, n, timeout)
            done += n
        run_s = time.perf_counter() - t0
        time.sleep(wait_s)
        metrics["rss_all_mb"] = settled_rss_mb()
        metrics["rss_growth_mb"] = metrics["rss_all_mb"] - metrics["rss_first_mb"]
        metrics["jobs_per_s"] = total / run_s
        getter = getattr(adapter.raw(), "get_all_jobs", None)
        if callable(getter):
            info["jobs_kept_in_history"] = len(getter())
    finally:
        info["shutdown"] = shutdown(adapter, timeout=60.0)
    return {"metrics": metrics, "info": info}


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    if params.get("mode") == "retention":
        return _retention(adapter, params)
    return idle.run(adapter, {**params, "idle_s": 0.0})
