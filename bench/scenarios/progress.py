"""Scenario 6, progress: a job calls its injected progress hook M times
(``hook(i)``, i = 0..M-1); the progress callback runs on the main asyncio loop.

The figure is M divided by the time from the first hook call to the callback
receiving the M-th message; the callback also checks that messages arrive in
order. Meanwhile a 1 ms repeating asyncio timer on the main loop records how
late it fires (the target: never more than 10 ms, i.e. the loop is not
starved). Two phases: a plain (sync) callback, then an ``async def`` one.
APScheduler has no progress hook, so it is not measured there.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from adapters import Adapter, UnsupportedError

from scenarios._common import NEVER, Result, shutdown

_m = 0
_first_call = 0.0
_produced = 0.0


def _produce(hook: Callable[..., Any] | None) -> None:
    global _first_call, _produced
    assert hook is not None, "scheduler did not inject a progress hook"
    _first_call = time.perf_counter()
    for i in range(_m):
        hook(i)
    _produced = time.perf_counter()


def handler_underscore(_progress_hook: Callable[..., Any] | None = None) -> None:
    _produce(_progress_hook)


def handler_plain(progress_hook: Callable[..., Any] | None = None) -> None:
    _produce(progress_hook)


class _Receiver:
    """Counts messages on the main loop, checks their order, notes the last arrival."""

    def __init__(self, m: int, loop: asyncio.AbstractEventLoop) -> None:
        self.m = m
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.expected = 0
        self.out_of_order = 0
        self.off_loop = 0
        self.last_at = 0.0
        self.done = asyncio.Event()

    def receive(self, i: int) -> None:
        if threading.get_ident() != self.loop_thread:
            self.off_loop += 1
        if i != self.expected:
            self.out_of_order += 1
        self.expected = i + 1
        if i == self.m - 1:
            self.last_at = time.perf_counter()
            if self.off_loop:
                self.loop.call_soon_threadsafe(self.done.set)
            else:
                self.done.set()


async def _ticker(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - t - 0.001) * 1000.0)


async def _phase(adapter: Adapter, m: int, kind: str, timeout: float) -> dict[str, float]:
    global _m
    loop = asyncio.get_running_loop()
    rx = _Receiver(m, loop)
    callback: Callable[..., Any]
    if kind == "sync":

        def callback(i: int) -> None:
            rx.receive(i)

    else:

        async def callback(i: int) -> None:
            rx.receive(i)

    handler = handler_underscore if adapter.hooks == "underscore" else handler_plain
    _m = m
    stop = asyncio.Event()
    lags: list[float] = []
    ticker = asyncio.create_task(_ticker(stop, lags))
    await asyncio.sleep(0.05)
    lags.clear()
    adapter.add(handler, interval=NEVER, run_once=True, progress_callback=callback)
    try:
        await asyncio.wait_for(rx.done.wait(), timeout)
    except asyncio.TimeoutError:
        stop.set()
        await ticker
        raise TimeoutError(
            f"{kind} callback received {rx.expected} of {m} messages within {timeout:.0f} s"
        ) from None
    stop.set()
    await ticker
    elapsed = rx.last_at - _first_call
    return {
        "msgs_per_s": m / elapsed,
        "elapsed_s": elapsed,
        "producer_s": _produced - _first_call,
        "out_of_order": float(rx.out_of_order),
        "off_loop": float(rx.off_loop),
        "timer_max_lag_ms": max(lags) if lags else float("nan"),
        "timer_ticks": float(len(lags)),
    }


async def _main(adapter: Adapter, m: int, timeout: float) -> Result:
    loop = asyncio.get_running_loop()
    adapter.create(pool_size=10, main_loop=loop)
    adapter.start()  # inside the running loop, so both quiv flavours bind to it
    metrics: dict[str, float] = {}
    try:
        await _phase(adapter, min(200, m), "sync", timeout)  # warm-up
        for kind in ("sync", "async"):
            for key, value in (await _phase(adapter, m, kind, timeout)).items():
                metrics[f"{kind}_{key}"] = value
    finally:
        note = await asyncio.to_thread(shutdown, adapter)
    return {"metrics": metrics, "info": {"m": m, "shutdown": note}}


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    if not adapter.supports_progress:
        raise UnsupportedError(f"{adapter.name} has no progress hook")
    return asyncio.run(_main(adapter, int(params["m"]), float(params.get("timeout", 60.0))))
