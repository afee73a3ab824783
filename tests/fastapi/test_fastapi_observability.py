"""GET /metrics of a running app (uvicorn), and traces linking a "run now" request to its job."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.requests import HTTPConnection
from fastapi_support import JobEvents, ServerThread, TestClient, idle
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from quiv import Event, Quiv
from quiv.fastapi import quiv_lifespan, quiv_router
from quiv.tracing import instrument

FAR = 3600.0


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv(pool_size=2)


def make_app(scheduler: Quiv, **options: Any) -> FastAPI:
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    app.include_router(quiv_router(scheduler, **options), prefix="/quiv")
    return app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def failing() -> None:
    raise RuntimeError("upstream said no")


def test_a_running_app_serves_the_metrics_of_its_jobs(scheduler: Quiv) -> None:
    events = JobEvents(scheduler)
    ok = scheduler.add_task("ok", idle, interval=FAR, delay=FAR)
    bad = scheduler.add_task("bad", failing, interval=FAR, delay=FAR)
    with (
        ServerThread(make_app(scheduler, metrics=True)) as server,
        httpx.Client(base_url=server.http) as http,
    ):
        assert http.post(f"/quiv/tasks/{ok}/run").status_code == 202
        events.next(Event.JOB_COMPLETED)
        assert http.post(f"/quiv/tasks/{bad}/run").status_code == 202
        events.next(Event.JOB_FAILED)

        response = http.get("/quiv/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["cache-control"] == "no-store"
        scraped = samples(response.text)
    assert scraped[("quiv_jobs_total", (("status", "completed"), ("task", "ok")))] == 1
    assert scraped[("quiv_jobs_total", (("status", "failed"), ("task", "bad")))] == 1
    assert scraped[("quiv_jobs_total", (("status", "failed"), ("task", "ok")))] == 0
    assert scraped[("quiv_job_duration_seconds_count", (("task", "bad"),))] == 1
    assert scraped[("quiv_scheduler_running", ())] == 1
    assert scraped[("quiv_tasks", (("status", "active"),))] == 2
    assert scraped[("quiv_pool_size", ())] == 2


def test_the_metrics_route_answers_openmetrics_when_asked(scheduler: Quiv) -> None:
    with TestClient(make_app(scheduler, metrics=True)) as client:
        response = client.get("/quiv/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_the_metrics_route_is_behind_the_routers_dependencies(scheduler: Quiv) -> None:
    def require_token(connection: HTTPConnection) -> None:
        if connection.headers.get("x-token") != "secret":
            raise HTTPException(status_code=401, detail="token required")

    app = make_app(scheduler, metrics=True, dependencies=[Depends(require_token)])
    with ServerThread(app) as server, httpx.Client(base_url=server.http) as http:
        assert http.get("/quiv/metrics").status_code == 401
        allowed = http.get("/quiv/metrics", headers={"x-token": "secret"})
    assert allowed.status_code == 200
    assert ("quiv_scheduler_running", ()) in samples(allowed.text)


def test_the_metrics_route_exists_only_when_asked_for_and_answers_503_after_shutdown(
    scheduler: Quiv, make_quiv: Callable[..., Quiv]
) -> None:
    with TestClient(make_app(make_quiv())) as client:
        assert client.get("/quiv/metrics").status_code == 404
    with TestClient(make_app(scheduler, metrics=True)) as client:
        operation = client.get("/openapi.json").json()["paths"]["/quiv/metrics"]["get"]
        assert operation["tags"] == ["quiv"]
        assert "text/plain" in operation["responses"]["200"]["content"]
        scheduler.shutdown()
        response = client.get("/quiv/metrics")
    assert response.status_code == 503
    assert "shut down" in response.json()["detail"]


def test_the_router_imports_prometheus_client_only_for_the_metrics_route() -> None:
    script = (
        "import sys\n"
        "from quiv import Quiv\n"
        "from quiv.fastapi import quiv_router\n"
        "scheduler = Quiv()\n"
        "quiv_router(scheduler)\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "quiv_router(scheduler, metrics=True)\n"
        "assert 'prometheus_client' in sys.modules\n"
        "scheduler.shutdown()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_metrics_must_be_a_bool(scheduler: Quiv) -> None:
    from quiv import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="metrics"):
        quiv_router(scheduler, metrics="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- traces
@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def job_span_links(exporter: InMemorySpanExporter, job_id: str) -> list[tuple[int, int]]:
    (span,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "quiv.job" and (s.attributes or {})["quiv.job.id"] == job_id
    ]
    return [(link.context.trace_id, link.context.span_id) for link in span.links]


def test_a_run_now_request_carrying_a_traceparent_is_linked_from_its_job(
    scheduler: Quiv, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    instrument(scheduler, tracer_provider=provider)
    events = JobEvents(scheduler)
    task_id = scheduler.add_task("refresh", idle, interval=FAR, delay=FAR)
    with ServerThread(make_app(scheduler)) as server, httpx.Client(base_url=server.http) as http:
        with provider.get_tracer("client").start_as_current_span("click refresh") as client_span:
            headers: dict[str, str] = {}
            propagate.inject(headers)
            assert "traceparent" in headers
            assert http.post(f"/quiv/tasks/{task_id}/run", headers=headers).status_code == 202
        job = events.next(Event.JOB_COMPLETED)
        # A call without trace headers makes no link.
        assert http.post(f"/quiv/tasks/{task_id}/run").status_code == 202
        plain = events.next(Event.JOB_COMPLETED)
    caller = client_span.get_span_context()
    assert job_span_links(exporter, job.id) == [(caller.trace_id, caller.span_id)]
    assert job_span_links(exporter, plain.id) == []


def test_a_traced_request_links_its_own_span_to_the_job(
    scheduler: Quiv, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """An application that traces its requests (a middleware here): the job links to the request's span."""
    instrument(scheduler, tracer_provider=provider)
    events = JobEvents(scheduler)
    task_id = scheduler.add_task("refresh", idle, interval=FAR, delay=FAR)
    app = make_app(scheduler)
    tracer = provider.get_tracer("server")
    served: list[tuple[int, int]] = []

    @app.middleware("http")
    async def trace_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        with tracer.start_as_current_span(f"{request.method} {request.url.path}") as span:
            served.append((span.get_span_context().trace_id, span.get_span_context().span_id))
            return await call_next(request)

    with ServerThread(app) as server, httpx.Client(base_url=server.http) as http:
        assert http.post(f"/quiv/tasks/{task_id}/run").status_code == 202
        job = events.next(Event.JOB_COMPLETED)
    assert job_span_links(exporter, job.id) == served
