"""Scenario 9, jobs API: latency of ``GET /jobs?limit=50`` with H finished jobs kept.

Ours only (quiv 1.4.0 has no FastAPI router, APScheduler keeps no job
history). A scheduler with a 7-day ``history_retention_seconds`` runs H
run-once no-op jobs through its public API, in batches of 5,000 as in
scenario 1, so the history holds exactly H finished jobs. Going through the
public API, not the store, keeps the scenario independent of the engine's
internals (which change) at the cost of a few seconds at H = 100,000; the
fill rate is reported as ``fill_jobs_per_s``.

Then a FastAPI app with ``quiv_router(scheduler)`` included under ``/quiv``
is called in-process through ``httpx.AsyncClient`` over an
``httpx.ASGITransport`` (no socket, no server; the router's handlers are plain
``def`` and run on Starlette's thread pool, as under uvicorn). After a few
untimed calls (the first flushes the write-behind), each of C calls is timed
on its own from the client; the figures are the p50 / p99 over those C calls.
The first answer is checked: status 200, ``total`` = H and ``limit`` items.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from adapters import Adapter, UnsupportedError

from scenarios._common import DEFAULT_TIMEOUT, NEVER, Result, percentile, shutdown
from scenarios.throughput import run_batch

#: Untimed calls before the timed ones.
WARMUP_CALLS = 5


async def _call_many(app: Any, path: str, calls: int, expect_total: int, limit: int) -> list[float]:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for i in range(WARMUP_CALLS):
            resp = await client.get(path)
            if resp.status_code != 200:
                raise RuntimeError(f"GET {path} answered {resp.status_code}: {resp.text[:300]}")
            if i == 0:
                body = resp.json()
                total, items = body.get("total"), len(body.get("items", ()))
                if total != expect_total or items != min(limit, expect_total):
                    raise RuntimeError(
                        f"GET {path}: total {total} and {items} items, "
                        f"expected total {expect_total} and {min(limit, expect_total)} items"
                    )
        lat_ms: list[float] = []
        for _ in range(calls):
            t0 = time.perf_counter()
            resp = await client.get(path)
            lat_ms.append((time.perf_counter() - t0) * 1000.0)
            if resp.status_code != 200:
                raise RuntimeError(f"GET {path} answered {resp.status_code}")
    return lat_ms


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    if adapter.name != "ours":
        raise UnsupportedError(f"{adapter.name} has no quiv.fastapi router to call")
    try:
        import httpx  # noqa: F401
        from fastapi import FastAPI

        from quiv.fastapi import quiv_router
    except ImportError as exc:
        raise UnsupportedError(f"the jobs API needs fastapi, httpx and quiv.fastapi: {exc}") from exc
    history = int(params["history"])
    calls = int(params["calls"])
    limit = int(params.get("limit", 50))
    batch = int(params.get("batch", 5000))
    timeout = float(params.get("timeout", DEFAULT_TIMEOUT))

    adapter.create(pool_size=10, retention=int(NEVER))
    adapter.start()
    try:
        t0 = time.perf_counter()
        done = 0
        while done < history:
            n = min(batch, history - done)
            run_batch(adapter, n, timeout)
            done += n
        fill_s = time.perf_counter() - t0

        app = FastAPI()
        app.include_router(quiv_router(adapter.raw()), prefix="/quiv")
        path = f"/quiv/jobs?limit={limit}"
        t1 = time.perf_counter()
        lat_ms = asyncio.run(_call_many(app, path, calls, history, limit))
        calls_s = time.perf_counter() - t1
    finally:
        note = shutdown(adapter, timeout=60.0)
    return {
        "metrics": {
            "p50_ms": percentile(lat_ms, 50),
            "p99_ms": percentile(lat_ms, 99),
            "max_ms": max(lat_ms),
            "fill_jobs_per_s": history / fill_s,
        },
        "samples": {"latency_ms": lat_ms},
        "info": {
            "history": history,
            "calls": calls,
            "limit": limit,
            "calls_s": calls_s,
            "fill_s": fill_s,
            "shutdown": note,
        },
    }
