"""OpenTelemetry: a span per job, current while the handler runs, linked to the call that asked for it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from quiv import Event, JobStatus, Quiv
from quiv.testing import ManualClock
from quiv.tracing import SPAN_NAME, instrument

from .support import DEADLINE, Ended, Spans


@pytest.fixture
def spans() -> Spans:
    return Spans()


def noop() -> None:
    pass


def test_each_job_gets_one_root_span_with_its_attributes(
    make_quiv: Callable[..., Quiv], spans: Spans, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("report", noop, interval=3600)
    scheduler.start()
    job = ended.next(Event.JOB_COMPLETED)

    (span,) = spans.jobs()
    assert span.name == SPAN_NAME == "quiv.job"
    assert span.parent is None
    assert span.kind is SpanKind.INTERNAL
    assert span.links == ()
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "quiv.task.name": "report",
        "quiv.task.id": task_id,
        "quiv.job.id": job.id,
        "quiv.job.attempt": 1,
        "quiv.job.scheduled_for": manual_clock.now().isoformat(),
        "quiv.worker": "quiv-worker-0",
        "quiv.job.status": "completed",
    }
    assert job.scheduled_for == datetime.fromisoformat(str((span.attributes or {})["quiv.job.scheduled_for"]))
    assert job.scheduled_for is not None
    assert job.scheduled_for.tzinfo == timezone.utc


def test_a_failed_job_records_its_exception_and_an_error_status(
    make_quiv: Callable[..., Quiv], spans: Spans
) -> None:
    scheduler = make_quiv()
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)

    def broken() -> None:
        raise KeyError("missing-row")

    scheduler.add_task("broken", broken, interval=3600, max_retries=1, retry_backoff=0)
    scheduler.start()
    first, second = ended.wait(Event.JOB_FAILED, 2)

    span = spans.of_job(first.id)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "KeyError: 'missing-row'"
    (event,) = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == "KeyError"
    assert "missing-row" in str((event.attributes or {})["exception.message"])
    assert (span.attributes or {})["quiv.job.status"] == "failed"
    retry = spans.of_job(second.id)
    assert (retry.attributes or {})["quiv.job.attempt"] == 2
    assert (retry.attributes or {})["quiv.job.retry_of"] == first.id


def test_a_cancelled_job_says_why(make_quiv: Callable[..., Quiv], spans: Spans) -> None:
    scheduler = make_quiv()
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)

    def waits(_stop_event: threading.Event) -> None:
        _stop_event.wait(DEADLINE)

    scheduler.add_task("waits", waits, interval=3600, timeout=0.05)
    scheduler.start()
    job = ended.next(Event.JOB_CANCELLED)
    span = spans.of_job(job.id)
    assert span.status.status_code is StatusCode.UNSET
    assert (span.attributes or {})["quiv.job.status"] == "cancelled"
    assert "timed out" in str((span.attributes or {})["quiv.job.cancel_reason"])


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_handlers_own_spans_are_children_of_the_job_span(
    make_quiv: Callable[..., Quiv], spans: Spans, kind: str
) -> None:
    scheduler = make_quiv()
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)
    tracer = spans.provider.get_tracer("app")

    def sync_handler() -> None:
        with tracer.start_as_current_span("query"):
            pass

    async def async_handler() -> None:
        await asyncio.sleep(0)
        with tracer.start_as_current_span("query"):
            pass

    scheduler.add_task("work", sync_handler if kind == "sync" else async_handler, interval=3600)
    scheduler.start()
    job = ended.next(Event.JOB_COMPLETED)

    job_span = spans.of_job(job.id)
    (query,) = [s for s in spans.finished() if s.name == "query"]
    assert query.parent is not None
    assert query.parent.span_id == job_span.context.span_id
    assert query.context.trace_id == job_span.context.trace_id


def test_run_task_immediately_in_a_span_links_the_run_to_it(
    make_quiv: Callable[..., Quiv], spans: Spans
) -> None:
    scheduler = make_quiv()
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("on-demand", noop, interval=3600, delay=3600)
    scheduler.start()
    with spans.provider.get_tracer("app").start_as_current_span("POST /refresh") as request:
        scheduler.run_task_immediately(task_id)
    job = ended.next(Event.JOB_COMPLETED)

    (link,) = spans.of_job(job.id).links
    assert link.context.span_id == request.get_span_context().span_id
    assert link.context.trace_id == request.get_span_context().trace_id
    assert dict(link.attributes or {}) == {"quiv.link.reason": "run_task_immediately"}
    # The job's span is not a child of the request: a trace of its own, pointing back.
    assert spans.of_job(job.id).context.trace_id != request.get_span_context().trace_id


def test_a_run_asked_for_while_a_job_runs_links_the_next_job_not_the_running_one(
    make_quiv: Callable[..., Quiv], spans: Spans
) -> None:
    scheduler = make_quiv()
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(DEADLINE)

    task_id = scheduler.add_task("hold", hold, interval=3600)
    scheduler.start()
    assert started.wait(DEADLINE)
    with spans.provider.get_tracer("app").start_as_current_span("request") as request:
        scheduler.run_task_immediately(task_id)
    release.set()
    first, second = ended.wait(Event.JOB_COMPLETED, 2)

    assert spans.of_job(first.id).links == ()
    (link,) = spans.of_job(second.id).links
    assert link.context.span_id == request.get_span_context().span_id


def test_add_task_in_a_span_links_every_job_of_the_task(make_quiv: Callable[..., Quiv], spans: Spans) -> None:
    scheduler = make_quiv()
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)
    scheduler.start()
    with spans.provider.get_tracer("app").start_as_current_span("POST /tasks") as request:
        task_id = scheduler.add_task("created", noop, interval=3600)
    first = ended.next(Event.JOB_COMPLETED)
    scheduler.run_task_immediately(task_id)  # outside any span: only the origin link
    second = ended.wait(Event.JOB_COMPLETED, 2)[1]

    for job in (first, second):
        (link,) = spans.of_job(job.id).links
        assert link.context.span_id == request.get_span_context().span_id
        assert dict(link.attributes or {}) == {"quiv.link.reason": "add_task"}


def test_calls_outside_any_span_make_no_links(make_quiv: Callable[..., Quiv], spans: Spans) -> None:
    scheduler = make_quiv()
    instrument(scheduler, tracer_provider=spans.provider)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("plain", noop, interval=3600, delay=3600)
    scheduler.start()
    scheduler.run_task_immediately(task_id)
    job = ended.next(Event.JOB_COMPLETED)
    assert spans.of_job(job.id).links == ()


def test_a_second_instrument_call_keeps_the_first_tracer(
    make_quiv: Callable[..., Quiv], spans: Spans
) -> None:
    scheduler = make_quiv()
    other = Spans()
    instrument(scheduler, tracer_provider=spans.provider)
    instrument(scheduler, tracer_provider=other.provider)
    ended = Ended(scheduler)
    scheduler.add_task("once", noop, interval=3600)
    scheduler.start()
    assert ended.next(Event.JOB_COMPLETED).status is JobStatus.COMPLETED
    assert len(spans.jobs()) == 1
    assert other.jobs() == []


def test_without_the_extras_quiv_never_imports_opentelemetry_or_prometheus() -> None:
    """A job runs, end to end, in a fresh interpreter: neither library is loaded."""
    script = textwrap.dedent(
        """
        import sys
        import threading

        import quiv

        done = threading.Event()
        scheduler = quiv.Quiv(pool_size=2)
        task_id = scheduler.add_task("job", done.set, interval=3600, delay=3600)
        scheduler.start()
        scheduler.run_task_immediately(task_id)
        assert done.wait(20), "the job did not run"
        scheduler.stats()
        scheduler.shutdown()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("opentelemetry", "prometheus_client"))
        assert not loaded, loaded
        print("clean")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"
