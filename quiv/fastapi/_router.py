"""``quiv_router``: the runtime control API, the dashboard page and the live stream.

Every path is relative to the router's ``prefix`` (or the one given to
``include_router``)::

    GET    /tasks                     list tasks
    GET    /tasks/{task_id}           one task                      404
    POST   /tasks/{task_id}/run       run now                (202)  404, 409
    POST   /tasks/{task_id}/pause     pause                         404
    POST   /tasks/{task_id}/resume    resume (?delay=seconds)       404, 422
    DELETE /tasks/{task_id}           remove                 (204)  404
    GET    /jobs                      jobs, newest first, paged     422
    GET    /jobs/{job_id}             one job                       404
    POST   /jobs/{job_id}/cancel      cancel a running job   (202)  404, 409
    GET    /stats                     counts for a dashboard
    GET    /metrics                   Prometheus metrics (metrics=True)
    GET    /dashboard                 the HTML dashboard
    WS     /ws                        the live event stream

Any of them answers 503 once the scheduler has been shut down. Handlers are
plain ``def`` so FastAPI runs them on its thread pool: the scheduler's reads
may touch its database and never run on the event loop.

This module does not use ``from __future__ import annotations``: FastAPI
reads the endpoints' annotations at runtime, and they refer to values of the
factory's closure (such as the page size bounds).
"""

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from fastapi import APIRouter, HTTPException, Path, Query, Request, WebSocket, params
from fastapi import status as http
from fastapi.requests import HTTPConnection
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from quiv._enums import JobStatus
from quiv._exceptions import (
    ConfigurationError,
    InvalidArgumentError,
    JobNotFoundError,
    SchedulerStoppedError,
    TaskNotFoundError,
    TaskNotScheduledError,
)
from quiv._schedule.options import MAX_SECONDS
from quiv.fastapi._schemas import (
    QuivErrorDetail,
    QuivJob,
    QuivJobPage,
    QuivRunResult,
    QuivStats,
    QuivTask,
)
from quiv.fastapi._stream import EventStream

if TYPE_CHECKING:
    from quiv import Quiv

__all__ = ["quiv_router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": QuivErrorDetail, "description": "No task or job has this id."},
    409: {"model": QuivErrorDetail, "description": "The operation conflicts with the current state."},
    503: {"model": QuivErrorDetail, "description": "The scheduler has been shut down."},
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: _ERRORS[code] for code in (*codes, 503)}


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    """Turn the scheduler's errors into HTTP answers with a JSON ``detail``."""
    try:
        yield
    except SchedulerStoppedError as exc:
        raise HTTPException(http.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    except TaskNotScheduledError as exc:
        raise HTTPException(http.HTTP_409_CONFLICT, str(exc)) from exc
    except (TaskNotFoundError, JobNotFoundError) as exc:
        raise HTTPException(http.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConfigurationError as exc:
        raise HTTPException(422, str(exc)) from exc


_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _origin_guard(allowed: frozenset[str] | None) -> Callable[[HTTPConnection], None]:
    """A dependency refusing cross-site browser requests: the WebSocket, and cookie-borne changes."""

    def check_origin(connection: HTTPConnection) -> None:
        origin = connection.headers.get("origin")
        if origin is None:
            return  # not a browser's cross-site request
        if connection.scope["type"] == "http" and (
            connection.scope.get("method") not in _UNSAFE_METHODS or "cookie" not in connection.headers
        ):
            return
        if allowed is not None:
            if "*" in allowed or origin.rstrip("/") in allowed:
                return
        else:
            scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
            host = connection.headers.get("host")
            if host is not None and origin.rstrip("/").lower() == f"{scheme}://{host}".lower():
                return
        raise HTTPException(http.HTTP_403_FORBIDDEN, f"origin {origin!r} is not allowed")

    return check_origin


_STOPPED_PAGE = (
    "<!doctype html><meta charset=utf-8><title>quiv: stopped</title>"
    "<p>This scheduler has been shut down: there is nothing to show. Restart the application.</p>"
)


def _dashboard_html(title: str, websocket: bool, page_size: int) -> str:
    template = resources.files("quiv.fastapi").joinpath("dashboard.html").read_text(encoding="utf-8")
    config = json.dumps({"title": title, "websocket": websocket, "pageSize": page_size})
    # "</" cannot end the <script> element early once escaped like this.
    config = config.replace("</", "<\\/")
    return template.replace("__QUIV_TITLE__", _escape(title)).replace("__QUIV_CONFIG__", config)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


TaskId = Annotated[str, Path(description="The task id returned by add_task.")]
JobId = Annotated[str, Path(description="The job id (also the handler's _job_id).")]


def quiv_router(
    scheduler: "Quiv",
    *,
    prefix: str = "",
    tags: list[str | Enum] | None = None,
    dependencies: Sequence[params.Depends] | None = None,
    dashboard: bool = True,
    websocket: bool = True,
    stream: EventStream | None = None,
    page_size: int = 50,
    max_page_size: int = 500,
    expose_arguments: bool = False,
    title: str = "quiv",
    allowed_origins: Sequence[str] | None = None,
    metrics: bool = False,
) -> APIRouter:
    """Build an ``APIRouter`` that controls ``scheduler``; nothing is served until it is included.

    ``prefix``, ``tags`` (default ``["quiv"]``) and ``dependencies`` go to
    the ``APIRouter`` as they are, so ``dependencies=[Depends(auth)]``
    protects every route, the dashboard and the WebSocket included.
    ``dashboard`` and ``websocket`` turn those two routes off; ``stream``
    supplies the :class:`EventStream` to serve (one is made otherwise).
    ``GET /jobs`` returns ``page_size`` jobs unless ``limit`` asks for more,
    up to ``max_page_size``. Task arguments are left out of answers unless
    ``expose_arguments`` (they may hold secrets).

    A browser's ``Origin`` is checked on the WebSocket handshake and on every
    state-changing request that carries a cookie: it must be one of
    ``allowed_origins`` (``"*"`` allows any), or, by default, the origin of the
    request itself (same scheme, host and port). Anything else is answered 403.
    Requests without an ``Origin`` (scripts, servers) are not affected.

    ``metrics=True`` adds ``GET /metrics``: the scheduler's Prometheus
    metrics (:class:`quiv.metrics.QuivCollector`, which needs
    ``quiv[prometheus]``), behind the same dependencies as every other route.
    """
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise InvalidArgumentError(f"page_size must be an int >= 1, got {page_size!r}")
    if isinstance(max_page_size, bool) or not isinstance(max_page_size, int) or max_page_size < page_size:
        raise InvalidArgumentError(f"max_page_size must be an int >= page_size, got {max_page_size!r}")
    if not isinstance(metrics, bool):
        raise InvalidArgumentError(f"metrics must be a bool, got {metrics!r}")
    if stream is not None and stream.scheduler is not scheduler:
        raise InvalidArgumentError("stream was built for another scheduler")
    if allowed_origins is not None and (
        isinstance(allowed_origins, str)
        or not isinstance(allowed_origins, (list, tuple, set, frozenset))
        or not all(isinstance(o, str) for o in allowed_origins)
    ):
        raise InvalidArgumentError(f"allowed_origins must be a sequence of str, got {allowed_origins!r}")
    origins = None if allowed_origins is None else frozenset(o.rstrip("/") for o in allowed_origins)
    guard = params.Depends(_origin_guard(origins))
    router = APIRouter(
        prefix=prefix,
        tags=["quiv"] if tags is None else tags,
        dependencies=[guard, *(dependencies or ())],
    )

    def task_out(task_id: str) -> QuivTask:
        return QuivTask.from_task(scheduler.get_task(task_id), expose_arguments=expose_arguments)

    @router.get("/tasks", name="quiv_list_tasks", responses=_responses())
    def list_tasks(
        include_run_once: Annotated[bool, Query(description="Also list run-once tasks.")] = False,
    ) -> list[QuivTask]:
        """Every task, in the order they were added."""
        with _http_errors():
            tasks = scheduler.get_all_tasks(include_run_once=include_run_once)
        return [QuivTask.from_task(task, expose_arguments=expose_arguments) for task in tasks]

    @router.get("/tasks/{task_id}", name="quiv_get_task", responses=_responses(404))
    def get_task(task_id: TaskId) -> QuivTask:
        """One task."""
        with _http_errors():
            return task_out(task_id)

    @router.post(
        "/tasks/{task_id}/run",
        name="quiv_run_task",
        status_code=http.HTTP_202_ACCEPTED,
        responses=_responses(404, 409),
    )
    def run_task(task_id: TaskId, request: Request) -> QuivRunResult:
        """Run the task now, outside its schedule (a paused task runs once and stays paused).

        409 if it is a run-once task that has already started.
        """
        # With tracing on, the job links to the caller's trace (its traceparent header).
        with _http_errors(), scheduler._incoming_trace(request.headers):
            queued = scheduler.run_task_immediately(task_id)
        return QuivRunResult(task_id=task_id, queued=queued)

    @router.post("/tasks/{task_id}/pause", name="quiv_pause_task", responses=_responses(404))
    def pause_task(task_id: TaskId) -> QuivTask:
        """Stop future runs; a job already running finishes."""
        with _http_errors():
            scheduler.pause_task(task_id)
            return task_out(task_id)

    @router.post("/tasks/{task_id}/resume", name="quiv_resume_task", responses=_responses(404))
    def resume_task(
        task_id: TaskId,
        delay: Annotated[
            float,
            Query(
                ge=0,
                le=MAX_SECONDS,
                allow_inf_nan=False,
                description="Seconds from now until the next run (at most 100 years).",
            ),
        ] = 0,
    ) -> QuivTask:
        """Re-activate the task; its next run is ``delay`` seconds from now."""
        with _http_errors():
            scheduler.resume_task(task_id, delay=delay)
            return task_out(task_id)

    @router.delete(
        "/tasks/{task_id}",
        name="quiv_remove_task",
        status_code=http.HTTP_204_NO_CONTENT,
        responses=_responses(404),
    )
    def remove_task(task_id: TaskId) -> None:
        """Delete the task; a job of it that is running is asked to stop."""
        with _http_errors():
            scheduler.remove_task(task_id)

    @router.get("/jobs", name="quiv_list_jobs", responses=_responses())
    def list_jobs(
        status: Annotated[JobStatus | None, Query(description="Only jobs with this status.")] = None,
        task_id: Annotated[str | None, Query(description="Only jobs of this task.")] = None,
        limit: Annotated[int, Query(ge=1, le=max_page_size, description="Page size.")] = page_size,
        offset: Annotated[int, Query(ge=0, description="Matching jobs to skip.")] = 0,
    ) -> QuivJobPage:
        """Jobs kept in the history, newest first, one page at a time.

        Jobs that started at the same instant are ordered by id, descending.
        """
        with _http_errors():
            jobs = scheduler.get_all_jobs(
                status=status, task_id=task_id, limit=limit, offset=offset, newest_first=True
            )
            total = scheduler.count_jobs(status=status, task_id=task_id)
        page = [QuivJob.from_job(job) for job in jobs]
        return QuivJobPage(items=page, total=total, limit=limit, offset=offset)

    @router.get("/jobs/{job_id}", name="quiv_get_job", responses=_responses(404))
    def get_job(job_id: JobId) -> QuivJob:
        """One job, running or kept in the history."""
        with _http_errors():
            return QuivJob.from_job(scheduler.get_job(job_id))

    @router.post(
        "/jobs/{job_id}/cancel",
        name="quiv_cancel_job",
        status_code=http.HTTP_202_ACCEPTED,
        responses=_responses(404, 409),
    )
    def cancel_job(job_id: JobId) -> QuivJob:
        """Ask a running job to stop (cooperative: its handler must check ``_stop_event``).

        409 if the job has already ended or is already being cancelled.
        """
        with _http_errors():
            job = scheduler.get_job(job_id)
            if not job.status.is_terminal and not scheduler.cancel_job(job_id):
                job = scheduler.get_job(job_id)  # it may have ended meanwhile
                if not job.status.is_terminal:
                    raise HTTPException(http.HTTP_409_CONFLICT, f"job {job_id!r} is already being cancelled")
            if job.status.is_terminal:
                raise HTTPException(
                    http.HTTP_409_CONFLICT, f"job {job_id!r} has already ended ({job.status})"
                )
            return QuivJob.from_job(scheduler.get_job(job_id))

    @router.get("/stats", name="quiv_stats", responses=_responses())
    def stats() -> QuivStats:
        """Tasks and jobs by status, workers in use, the longest-running job."""
        with _http_errors():
            return QuivStats.model_validate(scheduler.stats().model_dump())

    if metrics:
        _add_metrics_route(router, scheduler)

    if dashboard:
        html = _dashboard_html(title, websocket, page_size)

        @router.get("/dashboard", name="quiv_dashboard", response_class=HTMLResponse, include_in_schema=False)
        def show_dashboard() -> HTMLResponse:
            """The dashboard page (self-contained: no external script, style or font)."""
            if scheduler.stopped:
                return HTMLResponse(_STOPPED_PAGE, status_code=503, headers={"Cache-Control": "no-store"})
            return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    if websocket:
        live = stream if stream is not None else EventStream(scheduler)

        @router.websocket("/ws", name="quiv_stream")
        async def stream_events(websocket: WebSocket) -> None:
            """Lifecycle events and progress reports as JSON text messages."""
            await live.serve(websocket)

    _answer_405_with_every_allowed_method(router)
    return router


def _add_metrics_route(router: APIRouter, scheduler: "Quiv") -> None:
    """``GET /metrics``: the scheduler's metrics in the format the scraper asks for."""
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        from quiv.metrics import QuivCollector
    except ImportError:
        raise ConfigurationError(
            'quiv_router(metrics=True) needs prometheus-client: pip install "quiv[prometheus]"'
        ) from None
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QuivCollector(scheduler))

    @router.get(
        "/metrics",
        name="quiv_metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition."},
            503: _ERRORS[503],
        },
    )
    def show_metrics(request: Request) -> Response:
        """The scheduler's Prometheus metrics: job counts and histograms by task, workers, tasks."""
        if scheduler.stopped:
            raise HTTPException(http.HTTP_503_SERVICE_UNAVAILABLE, "the scheduler has been shut down")
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), media_type=content_type, headers={"Cache-Control": "no-store"})


class _AllowEveryMethod(APIRoute):
    """A route that answers a method it does not serve with every method its path serves.

    Starlette answers 405 with the methods of the first route whose path
    matched, so ``PUT /tasks/{id}`` said ``Allow: GET`` although ``DELETE`` is
    served too. Each path's routes get a subclass naming all of them (a class
    attribute, so it survives ``include_router`` copying the routes). The 405
    is answered before any dependency runs, as Starlette's own is.
    """

    every_method: ClassVar[frozenset[str]] = frozenset()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.every_method or self.methods))
            response = JSONResponse(
                {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow}
            )
            await response(scope, receive, send)
            return
        await super().handle(scope, receive, send)


def _answer_405_with_every_allowed_method(router: APIRouter) -> None:
    """Give every route of ``router`` the full list of methods its path serves."""
    served: dict[str, set[str]] = {}
    for route in router.routes:
        if isinstance(route, APIRoute):
            served.setdefault(route.path, set()).update(route.methods or ())
    classes = {
        path: type("AllowEveryMethod", (_AllowEveryMethod,), {"every_method": frozenset(methods)})
        for path, methods in served.items()
    }
    for route in router.routes:
        if isinstance(route, APIRoute):
            route.__class__ = classes[route.path]
