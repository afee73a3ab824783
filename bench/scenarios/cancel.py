"""Scenario 5, cancellation latency.

K times in a row: a run-once job starts and polls its injected stop event
every 1 ms (``time.sleep(0.001)`` between checks); once it is polling, the
benchmark calls ``cancel_job(job_id)``. The figure is the instant the handler
sees the event set minus the instant ``cancel_job`` returned (negative when
the handler saw it before the call returned). APScheduler has no
cancellation, so it is not measured there.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from adapters import Adapter, UnsupportedError

from scenarios._common import NEVER, Result, percentile, shutdown

_state: dict[str, Any] = {}


def _body(job_id: str | None, stop_event: threading.Event | None) -> None:
    if job_id is None or stop_event is None:
        raise RuntimeError("the scheduler did not inject the job id and the stop event")
    _state["job_id"] = job_id
    started: threading.Event = _state["started"]
    started.set()
    limit = time.perf_counter() + 10.0
    while not stop_event.is_set():
        if time.perf_counter() > limit:
            _state["seen_at"] = float("nan")
            _state["seen"].set()
            return
        time.sleep(0.001)
    _state["seen_at"] = time.perf_counter()
    _state["seen"].set()


def handler_underscore(_job_id: str | None = None, _stop_event: threading.Event | None = None) -> None:
    _body(_job_id, _stop_event)


def handler_plain(job_id: str | None = None, stop_event: threading.Event | None = None) -> None:
    _body(job_id, stop_event)


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    if not adapter.supports_cancel:
        raise UnsupportedError(f"{adapter.name} has no cooperative job cancellation")
    k = int(params["k"])
    handler = handler_underscore if adapter.hooks == "underscore" else handler_plain
    adapter.create(pool_size=10)
    adapter.start()
    after_return: list[float] = []
    from_call: list[float] = []
    call: list[float] = []
    refused = 0
    try:
        for round_ in range(k + 1):  # round 0 is a warm-up
            _state.update(started=threading.Event(), seen=threading.Event(), job_id=None, seen_at=None)
            adapter.add(handler, interval=NEVER, run_once=True)
            if not _state["started"].wait(30.0):
                raise TimeoutError("the polling job never started")
            time.sleep(0.005)  # let it settle into its polling loop
            t0 = time.perf_counter()
            ok = adapter.cancel(str(_state["job_id"]))
            t1 = time.perf_counter()
            if not _state["seen"].wait(15.0):
                raise TimeoutError("handler never saw its stop event")
            seen = float(_state["seen_at"])
            if math.isnan(seen):
                raise RuntimeError("cancel_job did not set the stop event within 10 s")
            time.sleep(0.01)  # let the job end before the next round
            if round_ == 0:
                continue
            refused += 0 if ok else 1
            after_return.append((seen - t1) * 1000.0)
            from_call.append((seen - t0) * 1000.0)
            call.append((t1 - t0) * 1000.0)
    finally:
        note = shutdown(adapter)
    return {
        "metrics": {
            "p50_ms": percentile(after_return, 50),
            "p99_ms": percentile(after_return, 99),
            "max_ms": max(after_return),
            "from_call_p50_ms": percentile(from_call, 50),
            "cancel_call_ms": percentile(call, 50),
        },
        "samples": {"cancel_ms": after_return},
        "info": {"k": k, "cancel_returned_false": refused, "shutdown": note},
    }
