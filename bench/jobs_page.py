"""Cost of one ``GET /jobs?limit=50`` page as the job history grows.

Usage (from the repository root)::

    python bench/jobs_page.py                  # 100 and 100,000 jobs, 200 calls each
    python bench/jobs_page.py --sizes 100,10000,100000 --calls 300

For every size a fresh scheduler gets that many finished jobs, written
straight into its store in one batch (the history retention is a year, so
nothing is purged), then the router is called through FastAPI's TestClient:
the newest page of all jobs, of a rare and a common status, of one task, and
the second page.
Calls alternate between the sizes, so that other load on the machine weighs
on every figure alike. Prints the p50 and p90 of each in milliseconds. Uses
private attributes of ``Quiv`` to reach the store; it is a measurement, not
an example.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from quiv import Quiv
from quiv._store.base import JobRow
from quiv.fastapi import quiv_router

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

TASKS = 20
YEAR = 365 * 86400


def fill(scheduler: Quiv, count: int) -> None:
    """Write ``count`` finished jobs of ``TASKS`` tasks, one every 0.1 s up to now."""
    now = time.time()
    rows = []
    for i in range(count):
        started = now - (count - i) * 0.1
        status = "failed" if i % 10 == 0 else "completed"
        rows.append(
            JobRow(
                id=f"job-{i:08d}",
                task_id=f"task-{i % TASKS:02d}",
                task_name=f"name-{i % TASKS:02d}",
                status=status,
                started_at=started,
                ended_at=started + 0.05,
                duration_seconds=0.05,
                error_message="boom" if status == "failed" else None,
                attempt=1,
                retry_of=None,
            )
        )
    with scheduler._lock:
        store = scheduler._writer.open()
    store.write([], [], rows)


def p(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] * 1000


CASES: dict[str, dict[str, object]] = {
    "all": {"limit": 50},
    "status=failed": {"limit": 50, "status": "failed"},
    "status=completed": {"limit": 50, "status": "completed"},
    "task_id": {"limit": 50, "task_id": "task-07"},
    "offset=50": {"limit": 50, "offset": 50},
}


def measure(sizes: list[int], calls: int) -> dict[tuple[int, str], list[float]]:
    """Time every case at every size, interleaved call by call so that load on the machine hits all alike."""
    schedulers: list[Quiv] = []
    clients: dict[int, TestClient] = {}
    try:
        for size in sizes:
            scheduler = Quiv(pool_size=2, history_retention_seconds=YEAR)
            schedulers.append(scheduler)
            fill(scheduler, size)
            app = FastAPI()
            app.include_router(quiv_router(scheduler, dashboard=False, websocket=False), prefix="/quiv")
            clients[size] = TestClient(app).__enter__()
            page = clients[size].get("/quiv/jobs", params={"limit": 50}).json()
            assert page["total"] == size, page["total"]
            assert [job["id"] for job in page["items"]][:1] == [f"job-{size - 1:08d}"], page["items"][:1]
        samples: dict[tuple[int, str], list[float]] = {(size, name): [] for size in sizes for name in CASES}
        for turn in range(calls + 5):
            for size in sizes:
                for name, params in CASES.items():
                    start = time.perf_counter()
                    response = clients[size].get("/quiv/jobs", params=params)
                    elapsed = time.perf_counter() - start
                    assert response.status_code == 200, response.text
                    assert response.json()["items"], response.text
                    if turn >= 5:  # the first rounds warm up
                        samples[size, name].append(elapsed)
        return samples
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)
        for scheduler in schedulers:
            scheduler.shutdown(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100,100000")
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    print(f"{'jobs':>8} {'query':<17} {'p50 ms':>8} {'p90 ms':>8}")
    sizes = [int(size) for size in options.sizes.split(",")]
    for (size, name), samples in measure(sizes, options.calls).items():
        print(f"{size:>8} {name:<17} {p(samples, 50):>8.2f} {p(samples, 90):>8.2f}")


if __name__ == "__main__":
    main()
