"""Scenario 2, dispatch latency: M run-once jobs, each due at a known instant,
staggered a few ms apart; latency = handler start minus due time.

The due instant of job ``i`` is ``t_before_add + delay_i`` where
``t_before_add`` is read just before its ``add_task`` call, so the figure is
independent of how long adding takes.
"""

from __future__ import annotations

import math
import time
from typing import Any

from adapters import Adapter

from scenarios._common import DEFAULT_TIMEOUT, NEVER, Countdown, Result, percentile, shutdown

_started: list[float] = []
_countdown: Countdown | None = None


def record(i: int) -> None:
    """The job: note when it started. Module level so a persisted store can reference it."""
    _started[i] = time.perf_counter()
    assert _countdown is not None
    _countdown.hit()


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    global _started, _countdown
    m = int(params["m"])
    stagger = float(params["stagger_s"])
    lead = float(params.get("lead_s", 0.3))
    timeout = float(params.get("timeout", DEFAULT_TIMEOUT))
    adapter.create(pool_size=int(params.get("pool_size", 10)))
    adapter.start()
    try:
        # Warm-up: one job through the whole path before timing anything.
        _started = [math.nan]
        _countdown = Countdown(1)
        adapter.add(record, interval=NEVER, run_once=True, args=(0,))
        if not _countdown.wait(timeout):
            raise TimeoutError("warm-up job never ran")

        _started = [math.nan] * m
        _countdown = Countdown(m)
        due = [0.0] * m
        base = time.perf_counter() + lead
        for i in range(m):
            now = time.perf_counter()
            delay = max(0.0, base + i * stagger - now)
            due[i] = now + delay
            adapter.add(record, interval=NEVER, delay=delay, run_once=True, args=(i,))
        if not _countdown.wait(timeout + lead + m * stagger):
            raise TimeoutError(f"only {_countdown.count} of {m} jobs ran")
    finally:
        note = shutdown(adapter)
    lat_ms = [(s - d) * 1000.0 for s, d in zip(_started, due, strict=True)]
    return {
        "metrics": {
            "p50_ms": percentile(lat_ms, 50),
            "p99_ms": percentile(lat_ms, 99),
            "max_ms": max(lat_ms),
            "min_ms": min(lat_ms),
        },
        "samples": {"latency_ms": lat_ms},
        "info": {"m": m, "stagger_ms": stagger * 1000.0, "shutdown": note},
    }
