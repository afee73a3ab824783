"""``GET /jobs`` pages and filters in the database: one page query and one count per request.

The history is written straight into the scheduler's store, so the tests can
hold many jobs, ties on the start time and every status without running them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi_support import TestClient

from quiv import Quiv
from quiv._store.base import JobQuery, JobRow, Store
from quiv.fastapi import quiv_lifespan, quiv_router

STATUSES = ("scheduled", "running", "completed", "cancelled", "failed")
TASKS = ("task-a", "task-b", "task-c")


def store_of(scheduler: Quiv) -> Store:
    """The scheduler's store, created if it does not exist yet."""
    with scheduler._lock:
        return scheduler._writer.open()


def write_history(scheduler: Quiv, count: int) -> list[JobRow]:
    """``count`` jobs over three tasks and every status, four per start time, newest first.

    They end in the past minute, well within the default one-day retention.
    """
    now = time.time() - 60
    rows = []
    for n in range(count):
        status = STATUSES[n % 5]
        started = now - count + n // 4
        ended = None if status in ("scheduled", "running") else started + 0.25
        rows.append(
            JobRow(
                id=f"job-{(n * 7919) % 100_000:05d}",  # ids not in start order: ties are ordered by id
                task_id=TASKS[n % 3],
                task_name=TASKS[n % 3],
                status=status,
                started_at=started,
                ended_at=ended,
                duration_seconds=None if ended is None else 0.25,
                error_message="boom" if status == "failed" else None,
                attempt=1,
                retry_of=None,
            )
        )
    store_of(scheduler).write([], [], rows)
    return rows


def newest_first(rows: list[JobRow], task_id: str | None = None, status: str | None = None) -> list[str]:
    chosen = [r for r in rows if task_id in (None, r.task_id) and status in (None, r.status)]
    return [r.id for r in sorted(chosen, key=lambda r: (r.started_at, r.id), reverse=True)]


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv()


@pytest.fixture
def client(scheduler: Quiv) -> Iterator[TestClient]:
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    app.include_router(quiv_router(scheduler, page_size=10, max_page_size=40), prefix="/quiv")
    with TestClient(app) as client:
        yield client


def get_page(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/quiv/jobs", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


@pytest.mark.parametrize("task_id", [None, "task-b", "no-such-task"])
@pytest.mark.parametrize("status", [None, "completed", "running", "failed"])
def test_pages_with_task_and_status_filters(
    scheduler: Quiv, client: TestClient, task_id: str | None, status: str | None
) -> None:
    rows = write_history(scheduler, 90)
    expected = newest_first(rows, task_id, status)
    filters = {
        key: value for key, value in {"task_id": task_id, "status": status}.items() if value is not None
    }
    seen: list[str] = []
    for offset in range(0, len(expected) + 7, 7):
        page = get_page(client, limit=7, offset=offset, **filters)
        assert page["total"] == len(expected), "total counts every matching job, not the page"
        assert (page["limit"], page["offset"]) == (7, offset)
        assert len(page["items"]) == len(expected[offset : offset + 7])
        for item in page["items"]:
            assert task_id in (None, item["task_id"])
            assert status in (None, item["status"])
        seen += [item["id"] for item in page["items"]]
    assert seen == expected


def test_default_page_is_the_newest_page_size_jobs(scheduler: Quiv, client: TestClient) -> None:
    rows = write_history(scheduler, 90)
    page = get_page(client)
    assert [item["id"] for item in page["items"]] == newest_first(rows)[:10]
    assert (page["total"], page["limit"], page["offset"]) == (90, 10, 0)
    first = page["items"][0]
    assert first["started_at"].endswith("Z")
    assert set(first) == {
        "id",
        "task_id",
        "task_name",
        "status",
        "started_at",
        "ended_at",
        "duration_seconds",
        "error_message",
        "attempt",
        "retry_of",
        "scheduled_for",
        "worker",
    }


def test_jobs_started_together_are_listed_by_id_descending(scheduler: Quiv, client: TestClient) -> None:
    rows = write_history(scheduler, 4)  # one start time for all four
    assert len({row.started_at for row in rows}) == 1
    page = get_page(client)
    assert [item["id"] for item in page["items"]] == sorted((row.id for row in rows), reverse=True)


def test_an_offset_past_the_end_gives_an_empty_page_and_the_total(
    scheduler: Quiv, client: TestClient
) -> None:
    write_history(scheduler, 25)
    assert get_page(client, offset=25) == {"items": [], "total": 25, "limit": 10, "offset": 25}
    assert get_page(client, offset=10**12, task_id="task-a") == {
        "items": [],
        "total": 9,
        "limit": 10,
        "offset": 10**12,
    }
    assert get_page(client, limit=40, offset=20)["total"] == 25


def test_a_request_reads_one_page_and_one_count(
    scheduler: Quiv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router never loads the history: the store sees exactly the page and the count it needs."""
    write_history(scheduler, 50)
    store = store_of(scheduler)
    calls: list[tuple[str, JobQuery]] = []

    def spy(name: str) -> Callable[[JobQuery], Any]:
        real = getattr(store, name)

        def call(query: JobQuery) -> Any:
            calls.append((name, query))
            return real(query)

        return call

    monkeypatch.setattr(store, "list_jobs", spy("list_jobs"))
    monkeypatch.setattr(store, "count_matching", spy("count_matching"))
    get_page(client, status="failed", task_id="task-c", limit=5, offset=2)
    query = JobQuery(task_id="task-c", status="failed", newest_first=True, limit=5, offset=2)
    assert calls == [("list_jobs", query), ("count_matching", JobQuery(task_id="task-c", status="failed"))]


def test_running_jobs_are_listed_with_the_history(scheduler: Quiv, client: TestClient) -> None:
    """The dashboard's first page shows jobs still running (they are stored as running)."""
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(10)

    write_history(scheduler, 30)
    task_id = scheduler.add_task("block", block, interval=3600, delay=3600)
    try:
        assert client.post(f"/quiv/tasks/{task_id}/run").status_code == 202
        assert started.wait(10)
        page = get_page(client, status="running")
        assert page["items"][0]["task_id"] == task_id, "the newest running job comes first"
        assert page["total"] == 7
        assert get_page(client, task_id=task_id)["total"] == 1
    finally:
        release.set()
