"""Scenario 1, throughput: N run-once no-op jobs added at once to a running
scheduler; wall time from the first add until the N-th handler has run.

Completion is seen by a counter in the handler (no polling of any store): the
N-th call records the instant and sets a ``threading.Event``.
"""

from __future__ import annotations

import time
from typing import Any

from adapters import Adapter

from scenarios._common import DEFAULT_TIMEOUT, NEVER, Countdown, Result, shutdown

_countdown: Countdown | None = None


def noop() -> None:
    """The job: count one completion. Module level so a persisted store can reference it."""
    assert _countdown is not None
    _countdown.hit()


def run_batch(adapter: Adapter, n: int, timeout: float) -> tuple[float, float]:
    """Add ``n`` run-once no-ops at once; return (seconds to add them, seconds until all ran)."""
    global _countdown
    _countdown = countdown = Countdown(n)
    t0 = time.perf_counter()
    for _ in range(n):
        adapter.add(noop, interval=NEVER, run_once=True)
    t_added = time.perf_counter()
    if not countdown.wait(timeout):
        raise TimeoutError(f"only {countdown.count} of {n} jobs ran within {timeout:.0f} s")
    return t_added - t0, countdown.done_at - t0


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    n = int(params["n"])
    timeout = float(params.get("timeout", DEFAULT_TIMEOUT))
    adapter.create(pool_size=int(params.get("pool_size", 10)))
    adapter.start()
    try:
        # A short warm-up batch so the first job's lazy imports are not timed.
        run_batch(adapter, min(20, n), timeout)
        add_s, total_s = run_batch(adapter, n, timeout)
    finally:
        note = shutdown(adapter)
    return {
        "metrics": {
            "jobs_per_s": n / total_s,
            "wall_s": total_s,
            "add_phase_s": add_s,
        },
        "info": {"n": n, "shutdown": note},
    }
