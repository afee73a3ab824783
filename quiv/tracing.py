"""OpenTelemetry traces of quiv's jobs: one span per job, linked to what asked for it.

Install the API with ``pip install "quiv[otel]"`` (the SDK and an exporter
are the application's choice), then attach a tracer to a scheduler::

    from quiv.tracing import instrument

    instrument(scheduler)  # the global tracer provider, or tracer_provider=...

From then on every job runs inside a span named ``quiv.job`` (a root span:
a job is not part of the request that scheduled it). The span is current
while the handler runs, so spans the handler makes (database calls, HTTP
calls) are its children. When ``add_task`` or ``run_task_immediately`` is
called inside a span (a request handler traced by the application), the
job's span carries a *link* to that span: a trace viewer goes from the
request to the run it triggered and back.

Only this module imports OpenTelemetry; a scheduler that is never
instrumented never loads it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, cast

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('quiv.tracing needs the OpenTelemetry API: pip install "quiv[otel]"') from exc

from quiv._enums import JobStatus

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.util.types import AttributeValue

    from quiv._core.scheduler import Quiv
    from quiv._core.task import JobState

__all__ = ["SPAN_NAME", "instrument"]

#: The name of every job's span.
SPAN_NAME = "quiv.job"
#: A run asked for but not started yet keeps its link at most this long per task (oldest dropped first).
_MAX_PENDING_PER_TASK = 32
#: ... and for at most this many tasks at once.
_MAX_PENDING_TASKS = 1024
#: Due times compare equal within this (seconds): they are the same stored float, give or take rounding.
_SAME_DUE = 1e-6
#: No parent: a job's span starts a trace of its own.
_ROOT = otel_context.Context()


def instrument(scheduler: Quiv, *, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every job ``scheduler`` runs from now on.

    Spans come from ``tracer_provider``, or from the global one (set with
    ``opentelemetry.trace.set_tracer_provider``) when it is None. A scheduler
    keeps the first tracer it was given: calling this again does nothing.
    Links to the calling span are only taken by ``add_task`` and
    ``run_task_immediately`` calls made after this one.
    """
    from quiv import __version__

    tracer = trace.get_tracer("quiv", __version__, tracer_provider=tracer_provider)
    scheduler._instrument(tracer=_JobSpans(tracer))


class _JobSpans:
    """The tracer a scheduler's :class:`~quiv._core.instruments.Instruments` calls."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._lock = threading.Lock()
        #: Links of runs asked for and not started yet: task id -> [(due time, link)].
        self._pending: dict[str, list[tuple[float, Link]]] = {}

    # ------------------------------------------------------------- links
    def capture(self, reason: str) -> Link | None:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return Link(span_context, {"quiv.link.reason": reason})

    def expect(self, task_id: str, due: float, link: object) -> None:
        if not isinstance(link, Link):
            return
        with self._lock:
            waiting = self._pending.pop(task_id, [])  # re-inserted last: the dict stays oldest first
            waiting.append((due, link))
            self._pending[task_id] = waiting[-_MAX_PENDING_PER_TASK:]
            while len(self._pending) > _MAX_PENDING_TASKS:
                del self._pending[next(iter(self._pending))]

    def _links(self, job: JobState) -> list[Link]:
        links: list[Link] = []
        origin = job.task.origin
        if isinstance(origin, Link):
            links.append(origin)
        if self._pending:
            task_id = job.task.id
            with self._lock:
                waiting = self._pending.pop(task_id, None)
                if waiting:
                    # The run this job is for was asked for at exactly its due time; a request
                    # due earlier was served by another job (or another process): forget it.
                    later = [(due, link) for due, link in waiting if due > job.due + _SAME_DUE]
                    links.extend(link for due, link in waiting if abs(due - job.due) <= _SAME_DUE)
                    if later:
                        self._pending[task_id] = later
        return links

    @contextlib.contextmanager
    def incoming(self, headers: Mapping[str, str]) -> Iterator[None]:
        """Make the W3C trace context of ``headers`` current, unless a span already is."""
        if trace.get_current_span().get_span_context().is_valid:
            yield
            return
        token = otel_context.attach(propagate.extract(headers))
        try:
            yield
        finally:
            otel_context.detach(token)

    # -------------------------------------------------------------- spans
    def start(self, job: JobState) -> object:
        # The task's name is given at once, for samplers that decide by it; the rest is
        # computed only for a span that records (an unsampled job costs next to nothing).
        span = self._tracer.start_span(
            SPAN_NAME,
            context=_ROOT,
            kind=SpanKind.INTERNAL,
            attributes={"quiv.task.name": job.task_name},
            links=self._links(job) or None,
        )
        if span.is_recording():
            attributes: dict[str, AttributeValue] = {
                "quiv.task.id": job.task.id,
                "quiv.job.id": job.id,
                "quiv.job.attempt": job.attempt,
                "quiv.job.scheduled_for": datetime.fromtimestamp(job.due, timezone.utc).isoformat(),
                "quiv.worker": job.worker or threading.current_thread().name,
            }
            if job.retry_of is not None:
                attributes["quiv.job.retry_of"] = job.retry_of
            span.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token

    def end(
        self,
        handle: object,
        job: JobState,
        status: JobStatus,
        error: str | None,
        exc: BaseException | None,
    ) -> None:
        span, token = cast("tuple[trace.Span, Token[otel_context.Context]]", handle)
        otel_context.detach(token)
        span.set_attribute("quiv.job.status", status.value)
        if status is JobStatus.FAILED:
            if exc is not None:
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, error))
        elif status is JobStatus.CANCELLED and error:
            span.set_attribute("quiv.job.cancel_reason", error)
        span.end()
