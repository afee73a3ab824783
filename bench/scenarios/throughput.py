"""Scenario 1, throughput: N run-once no-op jobs added at once to a running
scheduler; wall time from the first add until the N-th handler has run.

Completion is seen by a counter in the handler (no polling of any store): the
N-th call records the instant and sets a ``threading.Event``.

``listener=True`` (the ``throughput@listener`` case) attaches the library's
own job-completed listener before ``start()``: quiv's
``add_listener(Event.JOB_COMPLETED, cb)`` (no main loop, so it is delivered
off the loop), APScheduler's ``add_listener(cb, EVENT_JOB_EXECUTED)``. The
callback is a plain sync function that only counts; the wall time then runs
until both the N-th handler call and the N-th listener call have happened, so
a listener delivered late (queued behind the jobs) is part of the figure.
"""

from __future__ import annotations

import time
from typing import Any

from adapters import Adapter, UnsupportedError

from scenarios._common import DEFAULT_TIMEOUT, NEVER, Countdown, Result, shutdown

_countdown: Countdown | None = None
_heard: Countdown | None = None


def noop() -> None:
    """The job: count one completion. Module level so a persisted store can reference it."""
    assert _countdown is not None
    _countdown.hit()


def completed() -> None:
    """The job-completed listener: count one call."""
    if _heard is not None:
        _heard.hit()


def run_batch(adapter: Adapter, n: int, timeout: float) -> tuple[float, float]:
    """Add ``n`` run-once no-ops at once; return (seconds to add them, seconds until all ran)."""
    add_s, ran_s, _ = timed_batch(adapter, n, timeout)
    return add_s, ran_s


def timed_batch(
    adapter: Adapter, n: int, timeout: float, *, listened: bool = False
) -> tuple[float, float, float]:
    """As :func:`run_batch`, plus the seconds until every completion was also heard.

    The last figure equals the second unless ``listened``: then it is the
    instant the N-th handler and the N-th job-completed listener call have
    both happened.
    """
    global _countdown, _heard
    _countdown = countdown = Countdown(n)
    _heard = heard = Countdown(n) if listened else None
    t0 = time.perf_counter()
    for _ in range(n):
        adapter.add(noop, interval=NEVER, run_once=True)
    t_added = time.perf_counter()
    if not countdown.wait(timeout):
        raise TimeoutError(f"only {countdown.count} of {n} jobs ran within {timeout:.0f} s")
    ran = countdown.done_at - t0
    if heard is None:
        return t_added - t0, ran, ran
    if not heard.wait(timeout):
        raise TimeoutError(f"the listener heard only {heard.count} of {n} completions within {timeout:.0f} s")
    return t_added - t0, ran, max(countdown.done_at, heard.done_at) - t0


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    n = int(params["n"])
    timeout = float(params.get("timeout", DEFAULT_TIMEOUT))
    listened = bool(params.get("listener", False))
    if listened and not adapter.supports_listener:
        raise UnsupportedError(f"{adapter.name} has no job-completed listener")
    adapter.create(pool_size=int(params.get("pool_size", 10)))
    if listened:
        adapter.on_job_completed(completed)
    adapter.start()
    try:
        # A short warm-up batch so the first job's lazy imports are not timed.
        timed_batch(adapter, min(20, n), timeout, listened=listened)
        add_s, ran_s, total_s = timed_batch(adapter, n, timeout, listened=listened)
    finally:
        note = shutdown(adapter)
    metrics = {
        "jobs_per_s": n / total_s,
        "wall_s": total_s,
        "add_phase_s": add_s,
    }
    if listened:
        # Jobs/s counted on the handlers alone, to see how far the listener calls trail them.
        metrics["handler_jobs_per_s"] = n / ran_s
    return {"metrics": metrics, "info": {"n": n, "listener": listened, "shutdown": note}}
