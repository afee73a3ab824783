"""Metrics and traces with a database_url: missed and abandoned runs, live workers, links across claims."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from prometheus_client import CollectorRegistry

from quiv import Event, JobStatus, Quiv, QuivConfig
from quiv.metrics import QuivCollector
from quiv.testing import ManualClock
from quiv.tracing import instrument

from .support import DEADLINE, Ended, Spans, scrape, value


def registry_for(scheduler: Quiv) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QuivCollector(scheduler))
    return registry


def noop() -> None:
    pass


@pytest.fixture
def schedulers() -> Iterator[list[Quiv]]:
    """Schedulers a test builds; all shut down afterwards."""
    made: list[Quiv] = []
    yield made
    for scheduler in reversed(made):
        scheduler.shutdown(timeout=5)


def test_slots_nobody_ran_are_counted_as_missed(sqlite_url: str, schedulers: list[Quiv]) -> None:
    clock = ManualClock(start=datetime(2024, 1, 1, tzinfo=timezone.utc))
    config = QuivConfig(
        database_url=sqlite_url, poll_seconds=0.05, heartbeat_seconds=1, dead_after_seconds=3600
    )
    scheduler = Quiv(config=config, clock=clock)
    schedulers.append(scheduler)
    registry = registry_for(scheduler)
    ended = Ended(scheduler)
    scheduler.add_task("every-10-s", noop, interval=10)
    scheduler.start()
    ended.next(Event.JOB_COMPLETED)
    clock.advance(35)  # the slots at +10, +20 and +30 s have all passed: skipped, each recorded as missed

    missed = ended.wait(Event.JOB_MISSED, 3)
    assert {job.status for job in missed} == {JobStatus.MISSED}
    samples = scrape(registry)
    assert value(samples, "quiv_jobs_total", task="every-10-s", status="missed") == 3
    assert value(samples, "quiv_jobs_total", task="every-10-s", status="completed") == 1
    assert value(samples, "quiv_live_workers") == 1
    assert value(samples, "quiv_heartbeat_age_seconds") is not None


def test_a_run_left_by_a_dead_process_is_counted_as_abandoned(
    sqlite_url: str, schedulers: list[Quiv]
) -> None:
    started, release = threading.Event(), threading.Event()

    def stuck() -> None:
        started.set()
        release.wait(DEADLINE)  # ignores its stop event: the process "dies" with it running

    first = Quiv(database_url=sqlite_url)
    schedulers.append(first)
    first.add_task("stuck", stuck, interval=3600)
    first.start()
    try:
        assert started.wait(DEADLINE)
        first.shutdown(timeout=0)  # gives up at once: the job stays "running" and its worker row stays
        second = Quiv(database_url=sqlite_url)
        schedulers.append(second)
        registry = registry_for(second)
        ended = Ended(second)
        second.start()  # one process per SQLite file: every other worker's run was abandoned
        assert ended.next(Event.JOB_FAILED).status is JobStatus.ABANDONED
        assert value(scrape(registry), "quiv_jobs_total", task="stuck", status="abandoned") == 1
    finally:
        release.set()


def test_shared_postgres_shows_live_workers_heartbeats_and_links_runs(
    pg_url: str, schedulers: list[Quiv]
) -> None:
    config = QuivConfig(database_url=pg_url, heartbeat_seconds=0.2, dead_after_seconds=5, poll_seconds=0.5)
    first, second = Quiv(config=config), Quiv(config=config)
    schedulers.extend([first, second])
    registry = registry_for(first)
    spans = Spans()
    instrument(first, tracer_provider=spans.provider)
    ended = Ended(first)
    task_id = first.add_task("shared-job", noop, interval=3600, delay=3600)  # declared by the first only
    first.start()
    second.start()
    with spans.provider.get_tracer("app").start_as_current_span("request") as request:
        first.run_task_immediately(task_id)
    job = ended.next(Event.JOB_COMPLETED)

    span = spans.of_job(job.id)
    (link,) = span.links
    assert link.context.span_id == request.get_span_context().span_id
    assert (span.attributes or {})["quiv.worker"] == first.worker_id == job.worker
    samples = scrape(registry)
    assert value(samples, "quiv_jobs_total", task="shared-job", status="completed") == 1
    assert value(samples, "quiv_live_workers") == 2
    own = value(samples, "quiv_heartbeat_age_seconds")
    stalest = value(samples, "quiv_stalest_heartbeat_age_seconds")
    assert own is not None
    assert stalest is not None
    assert 0 <= own <= stalest <= 5
    assert value(samples, "quiv_tasks", status="active") == 1
