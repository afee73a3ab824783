"""The control router through FastAPI's TestClient: every endpoint, every error code."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.requests import HTTPConnection
from fastapi_support import JobEvents, Steps, TestClient, idle
from starlette.testclient import WebSocketDenialResponse

from quiv import Event, InvalidArgumentError, JobStatus, Quiv
from quiv.fastapi import EventStream, quiv_lifespan, quiv_router

FAR = 3600.0  # a delay long enough that a task never runs by itself during a test


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv(pool_size=4)


def make_app(scheduler: Quiv, **options: Any) -> FastAPI:
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    app.include_router(quiv_router(scheduler, **options), prefix="/quiv")
    return app


@pytest.fixture
def client(scheduler: Quiv) -> Iterator[TestClient]:
    with TestClient(make_app(scheduler)) as client:
        yield client


@pytest.fixture
def events(scheduler: Quiv) -> JobEvents:
    return JobEvents(scheduler)


def detail(response: Any) -> str:
    body = response.json()
    assert isinstance(body["detail"], str)
    return body["detail"]


# ----------------------------------------------------------------- tasks
def test_list_tasks_in_order_and_run_once_only_when_asked(scheduler: Quiv, client: TestClient) -> None:
    assert client.get("/quiv/tasks").json() == []
    first = scheduler.add_task("first", idle, interval=60, delay=FAR)
    once = scheduler.add_task("once", idle, interval=60, delay=FAR, run_once=True)
    second = scheduler.add_task("second", idle, interval=30, delay=FAR, fixed_interval=False)

    response = client.get("/quiv/tasks")
    assert response.status_code == 200
    assert [t["id"] for t in response.json()] == [first, second]
    everything = client.get("/quiv/tasks", params={"include_run_once": "true"}).json()
    assert [t["id"] for t in everything] == [first, once, second]
    shown = everything[2]
    assert shown["task_name"] == "second"
    assert shown["status"] == "active"
    assert shown["interval_seconds"] == 30
    assert shown["fixed_interval"] is False
    assert shown["run_once"] is False
    assert shown["next_run_at"].endswith("Z")
    assert shown["args"] is None
    assert shown["kwargs"] is None
    assert client.get("/quiv/tasks", params={"include_run_once": "maybe"}).status_code == 422


def test_get_task_and_404(scheduler: Quiv, client: TestClient) -> None:
    task_id = scheduler.add_task("one", idle, interval=60, delay=FAR)
    response = client.get(f"/quiv/tasks/{task_id}")
    assert response.status_code == 200
    assert response.json()["id"] == task_id
    missing = client.get("/quiv/tasks/no-such-task")
    assert missing.status_code == 404
    assert "no-such-task" in detail(missing)


def test_expose_arguments_shows_them_json_safe(scheduler: Quiv) -> None:
    task_id = scheduler.add_task(
        "args",
        _takes_anything,
        interval=60,
        delay=FAR,
        args=(1, "two", (3, 4)),
        kwargs={"when": datetime(2024, 1, 1, tzinfo=timezone.utc), "blob": b"\x00", "nan": float("nan")},
    )
    with TestClient(make_app(scheduler, expose_arguments=True)) as client:
        shown = client.get(f"/quiv/tasks/{task_id}").json()
    assert shown["args"] == [1, "two", [3, 4]]
    assert shown["kwargs"] == {"when": "2024-01-01T00:00:00+00:00", "blob": "b'\\x00'", "nan": "nan"}


def _takes_anything(*args: object, **kwargs: object) -> None:
    pass


def test_run_now_queues_a_run_and_404_409(scheduler: Quiv, client: TestClient, events: JobEvents) -> None:
    task_id = scheduler.add_task("later", idle, interval=60, delay=FAR)
    response = client.post(f"/quiv/tasks/{task_id}/run")
    assert response.status_code == 202
    assert response.json() == {"task_id": task_id, "queued": 1}
    assert events.next(Event.JOB_COMPLETED).task_id == task_id

    missing = client.post("/quiv/tasks/nope/run")
    assert missing.status_code == 404
    assert "nope" in detail(missing)

    steps = Steps(total=1)
    once = scheduler.add_task("once", steps.handler, interval=60, run_once=True)
    assert steps.started.wait(20)
    conflict = client.post(f"/quiv/tasks/{once}/run")
    assert conflict.status_code == 409
    assert "run-once" in detail(conflict)
    steps.release()
    events.next(Event.JOB_COMPLETED)


def test_pause_and_resume_with_delay(scheduler: Quiv, client: TestClient) -> None:
    task_id = scheduler.add_task("t", idle, interval=60, delay=FAR)
    paused = client.post(f"/quiv/tasks/{task_id}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert scheduler.get_task(task_id).status == "paused"

    before = datetime.now(timezone.utc)
    resumed = client.post(f"/quiv/tasks/{task_id}/resume", params={"delay": 120})
    after = datetime.now(timezone.utc)
    assert resumed.status_code == 200
    body = resumed.json()
    assert body["status"] == "active"
    next_run = datetime.fromisoformat(body["next_run_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=120) <= next_run <= after + timedelta(seconds=120)

    for url in ("/quiv/tasks/nope/pause", "/quiv/tasks/nope/resume"):
        response = client.post(url)
        assert response.status_code == 404, url
        assert "nope" in detail(response)


@pytest.mark.parametrize("delay", ["-1", "abc", "inf", "nan"])
def test_resume_rejects_bad_delay_with_422(scheduler: Quiv, client: TestClient, delay: str) -> None:
    task_id = scheduler.add_task("t", idle, interval=60, delay=FAR)
    response = client.post(f"/quiv/tasks/{task_id}/resume", params={"delay": delay})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "delay"]


def test_remove_answers_204_then_404(scheduler: Quiv, client: TestClient) -> None:
    task_id = scheduler.add_task("t", idle, interval=60, delay=FAR)
    response = client.delete(f"/quiv/tasks/{task_id}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/quiv/tasks/{task_id}").status_code == 404
    again = client.delete(f"/quiv/tasks/{task_id}")
    assert again.status_code == 404
    assert task_id in detail(again)


# ------------------------------------------------------------------ jobs
def _three_jobs(scheduler: Quiv, client: TestClient, events: JobEvents) -> tuple[str, list[str]]:
    task_id = scheduler.add_task("t", idle, interval=60, delay=FAR)
    job_ids = []
    for _ in range(3):
        assert client.post(f"/quiv/tasks/{task_id}/run").status_code == 202
        job_ids.append(events.next(Event.JOB_COMPLETED).id)
    return task_id, job_ids


def test_list_jobs_newest_first_with_pages(scheduler: Quiv, client: TestClient, events: JobEvents) -> None:
    task_id, job_ids = _three_jobs(scheduler, client, events)
    other = scheduler.add_task("other", idle, interval=60, delay=FAR)
    client.post(f"/quiv/tasks/{other}/run")
    other_job = events.next(Event.JOB_COMPLETED).id

    page = client.get("/quiv/jobs").json()
    assert [job["id"] for job in page["items"]] == [other_job, *reversed(job_ids)]
    assert page["total"] == 4
    assert page["limit"] == 50
    assert page["offset"] == 0
    first = page["items"][0]
    assert first["status"] == "completed"
    assert first["duration_seconds"] >= 0
    assert first["ended_at"].endswith("Z")

    two = client.get("/quiv/jobs", params={"limit": 2}).json()
    assert [job["id"] for job in two["items"]] == [other_job, job_ids[2]]
    assert two["total"] == 4
    rest = client.get("/quiv/jobs", params={"limit": 2, "offset": 2}).json()
    assert [job["id"] for job in rest["items"]] == [job_ids[1], job_ids[0]]

    mine = client.get("/quiv/jobs", params={"task_id": task_id}).json()
    assert [job["id"] for job in mine["items"]] == list(reversed(job_ids))
    assert client.get("/quiv/jobs", params={"status": "completed"}).json()["total"] == 4
    assert client.get("/quiv/jobs", params={"status": "failed"}).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "exploded"}, "status"),
    ],
)
def test_list_jobs_rejects_bad_query_with_422(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/quiv/jobs", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", field]


def test_page_size_options(scheduler: Quiv, events: JobEvents) -> None:
    with TestClient(make_app(scheduler, page_size=2, max_page_size=3)) as client:
        _three_jobs(scheduler, client, events)
        assert len(client.get("/quiv/jobs").json()["items"]) == 2
        assert len(client.get("/quiv/jobs", params={"limit": 3}).json()["items"]) == 3
        assert client.get("/quiv/jobs", params={"limit": 4}).status_code == 422


def test_get_job_and_404(scheduler: Quiv, client: TestClient, events: JobEvents) -> None:
    _, job_ids = _three_jobs(scheduler, client, events)
    response = client.get(f"/quiv/jobs/{job_ids[0]}")
    assert response.status_code == 200
    assert response.json()["id"] == job_ids[0]
    missing = client.get("/quiv/jobs/no-such-job")
    assert missing.status_code == 404
    assert "no-such-job" in detail(missing)


def test_cancel_running_job_then_409_once_finished(
    scheduler: Quiv, client: TestClient, events: JobEvents
) -> None:
    steps = Steps(total=3)
    task_id = scheduler.add_task("slow", steps.handler, interval=60, delay=FAR)
    client.post(f"/quiv/tasks/{task_id}/run")
    job_id = events.next(Event.JOB_STARTED).id

    response = client.post(f"/quiv/jobs/{job_id}/cancel")
    assert response.status_code == 202
    assert response.json()["id"] == job_id
    assert response.json()["status"] in ("running", "cancelled")
    cancelled = events.next(Event.JOB_CANCELLED)
    assert cancelled.id == job_id

    finished = client.post(f"/quiv/jobs/{job_id}/cancel")
    assert finished.status_code == 409
    assert "already ended" in detail(finished)
    missing = client.post("/quiv/jobs/nope/cancel")
    assert missing.status_code == 404
    assert "nope" in detail(missing)


def test_cancel_twice_is_409(scheduler: Quiv, client: TestClient, events: JobEvents) -> None:
    release = threading.Event()

    def stubborn() -> None:  # ignores its stop event until released
        release.wait(20)

    task_id = scheduler.add_task("stubborn", stubborn, interval=60, delay=FAR)
    client.post(f"/quiv/tasks/{task_id}/run")
    job_id = events.next(Event.JOB_STARTED).id
    assert client.post(f"/quiv/jobs/{job_id}/cancel").status_code == 202
    again = client.post(f"/quiv/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert "already being cancelled" in detail(again)
    release.set()
    assert events.next(Event.JOB_CANCELLED).id == job_id


def test_stats_counts_tasks_jobs_and_workers(scheduler: Quiv, client: TestClient, events: JobEvents) -> None:
    _three_jobs(scheduler, client, events)
    paused = scheduler.add_task("paused", idle, interval=60, delay=FAR)
    scheduler.pause_task(paused)
    stats = client.get("/quiv/stats")
    assert stats.status_code == 200
    body = stats.json()
    assert body["tasks_by_status"] == {"active": 1, "running": 0, "paused": 1}
    assert body["jobs_by_status"]["completed"] == 3
    assert body["completed_in_window"] == 3
    assert body["pool_size"] == 4
    assert body["running_jobs"] == 0
    assert body["free_workers"] == 4
    assert body["oldest_running_job_id"] is None


def test_every_route_answers_503_after_shutdown(scheduler: Quiv, client: TestClient) -> None:
    task_id = scheduler.add_task("t", idle, interval=60, delay=FAR)
    scheduler.shutdown()
    calls = [
        ("GET", "/quiv/tasks"),
        ("GET", f"/quiv/tasks/{task_id}"),
        ("POST", f"/quiv/tasks/{task_id}/run"),
        ("POST", f"/quiv/tasks/{task_id}/pause"),
        ("POST", f"/quiv/tasks/{task_id}/resume"),
        ("DELETE", f"/quiv/tasks/{task_id}"),
        ("GET", "/quiv/jobs"),
        ("GET", "/quiv/jobs/some-job"),
        ("GET", "/quiv/stats"),
    ]
    for method, url in calls:
        response = client.request(method, url)
        assert response.status_code == 503, (method, url, response.text)
        assert "shut down" in detail(response)
    # cancel_job() keeps answering after shutdown (False), and get_job refuses: still 503.
    assert client.post("/quiv/jobs/some-job/cancel").status_code == 503


# --------------------------------------------------------- router options
def test_openapi_is_complete(scheduler: Quiv, client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths) == {
        "/quiv/tasks",
        "/quiv/tasks/{task_id}",
        "/quiv/tasks/{task_id}/run",
        "/quiv/tasks/{task_id}/pause",
        "/quiv/tasks/{task_id}/resume",
        "/quiv/jobs",
        "/quiv/jobs/{job_id}",
        "/quiv/jobs/{job_id}/cancel",
        "/quiv/stats",
    }
    components = schema["components"]["schemas"]
    for name in ("QuivTask", "QuivJob", "QuivJobPage", "QuivRunResult", "QuivStats", "QuivErrorDetail"):
        assert name in components
    assert paths["/quiv/tasks"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/QuivTask"},
        "title": "Response Quiv List Tasks Quiv Tasks Get",
    }
    run = paths["/quiv/tasks/{task_id}/run"]["post"]
    assert set(run["responses"]) >= {"202", "404", "409", "422", "503"}
    assert run["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QuivErrorDetail"
    }
    assert set(paths["/quiv/jobs/{job_id}/cancel"]["post"]["responses"]) >= {"202", "404", "409"}
    assert "204" in paths["/quiv/tasks/{task_id}"]["delete"]["responses"]
    for operations in paths.values():
        for operation in operations.values():
            assert operation["tags"] == ["quiv"]
            assert operation["summary"]


def test_prefix_and_tags_are_passed_through(scheduler: Quiv) -> None:
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    app.include_router(quiv_router(scheduler, prefix="/ops/scheduler", tags=["operations"]))
    with TestClient(app) as client:
        assert client.get("/ops/scheduler/tasks").status_code == 200
        assert client.get("/ops/scheduler/dashboard").status_code == 200
        assert client.get("/quiv/tasks").status_code == 404
        schema = client.get("/openapi.json").json()
    assert schema["paths"]["/ops/scheduler/jobs"]["get"]["tags"] == ["operations"]


def test_dependencies_guard_every_route_the_websocket_included(scheduler: Quiv) -> None:
    def require_token(connection: HTTPConnection) -> None:
        if connection.headers.get("x-token") != "secret":
            raise HTTPException(status_code=401, detail="token required")

    task_id = scheduler.add_task("t", idle, interval=60, delay=FAR)
    app = make_app(scheduler, dependencies=[Depends(require_token)])
    with TestClient(app) as client:
        urls = [
            ("GET", "/quiv/tasks"),
            ("GET", f"/quiv/tasks/{task_id}"),
            ("POST", f"/quiv/tasks/{task_id}/run"),
            ("POST", f"/quiv/tasks/{task_id}/pause"),
            ("POST", f"/quiv/tasks/{task_id}/resume"),
            ("DELETE", f"/quiv/tasks/{task_id}"),
            ("GET", "/quiv/jobs"),
            ("GET", "/quiv/jobs/x"),
            ("POST", "/quiv/jobs/x/cancel"),
            ("GET", "/quiv/stats"),
            ("GET", "/quiv/dashboard"),
        ]
        for method, url in urls:
            response = client.request(method, url)
            assert response.status_code == 401, (method, url)
            assert detail(response) == "token required"
        with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect("/quiv/ws"):
            pass
        assert denied.value.status_code == 401

        allowed = client.get("/quiv/tasks", headers={"x-token": "secret"})
        assert allowed.status_code == 200
        with client.websocket_connect("/quiv/ws", headers={"x-token": "secret"}) as websocket:
            assert websocket.receive_json()["event"] == "hello"
        openapi = client.get("/openapi.json").json()
    assert "401" not in openapi["paths"]["/quiv/tasks"]["get"]["responses"]  # the app documents its own auth


def test_nothing_is_served_unless_included(scheduler: Quiv) -> None:
    quiv_router(scheduler)
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    with TestClient(app) as client:
        for url in ("/tasks", "/jobs", "/stats", "/dashboard", "/quiv/tasks"):
            assert client.get(url).status_code == 404
        assert client.get("/openapi.json").json()["paths"] == {}


def test_dashboard_page_is_self_contained(client: TestClient) -> None:
    response = client.get("/quiv/dashboard")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<title>quiv · dashboard</title>" in page
    assert '"websocket": true' in page
    assert "__QUIV_" not in page
    # No build step, no CDN: nothing is loaded from anywhere else.
    for marker in ("http://", "https://", "<link", "src=", "@import", "url("):
        assert marker not in page, marker


def test_dashboard_title_is_escaped(scheduler: Quiv) -> None:
    with TestClient(make_app(scheduler, title="<b>ops</b> & co </script>")) as client:
        page = client.get("/quiv/dashboard").text
    assert "&lt;b&gt;ops&lt;/b&gt; &amp; co" in page
    assert "<b>ops</b>" not in page
    assert page.count("</script>") == 2  # the config block and the script, nothing injected


def test_dashboard_and_websocket_can_be_left_out(scheduler: Quiv, make_quiv: Callable[..., Quiv]) -> None:
    with TestClient(make_app(scheduler, dashboard=False, websocket=False)) as client:
        assert client.get("/quiv/dashboard").status_code == 404
        with pytest.raises(Exception), client.websocket_connect("/quiv/ws"):  # noqa: B017,PT011
            pass
        assert client.get("/quiv/tasks").status_code == 200
    with TestClient(make_app(make_quiv(), websocket=False)) as client:
        assert '"websocket": false' in client.get("/quiv/dashboard").text


def test_router_options_are_checked(scheduler: Quiv, make_quiv: Callable[..., Quiv]) -> None:
    with pytest.raises(InvalidArgumentError, match="page_size"):
        quiv_router(scheduler, page_size=0)
    with pytest.raises(InvalidArgumentError, match="max_page_size"):
        quiv_router(scheduler, page_size=10, max_page_size=5)
    with pytest.raises(InvalidArgumentError, match="another scheduler"):
        quiv_router(scheduler, stream=EventStream(make_quiv()))


def test_job_status_values_match_the_engine() -> None:
    from quiv.fastapi import QuivJob

    field = QuivJob.model_fields["status"]
    assert field.annotation is JobStatus
