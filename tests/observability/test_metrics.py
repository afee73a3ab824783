"""The Prometheus collector: job counts and histograms by task, gauges read at scrape time."""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from quiv import ConfigurationError, Event, InvalidArgumentError, JobStatus, Quiv
from quiv._core.instruments import Instruments
from quiv._core.task import JobState
from quiv.metrics import QuivCollector
from quiv.testing import ManualClock

from .support import DEADLINE, Ended, eventually, parse, scrape, value

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

#: Every family the collector exposes, with its type: dashboards and alerts are built on these names.
FAMILIES = {
    "quiv_jobs": "counter",
    "quiv_job_retries": "counter",
    "quiv_job_duration_seconds": "histogram",
    "quiv_job_start_delay_seconds": "histogram",
    "quiv_scheduler_running": "gauge",
    "quiv_tasks": "gauge",
    "quiv_running_jobs": "gauge",
    "quiv_pool_size": "gauge",
    "quiv_free_workers": "gauge",
    "quiv_oldest_running_job_age_seconds": "gauge",
}
#: Only with a database_url.
SHARED_FAMILIES = {
    "quiv_live_workers": "gauge",
    "quiv_heartbeat_age_seconds": "gauge",
    "quiv_stalest_heartbeat_age_seconds": "gauge",
}


def registry_for(scheduler: Quiv, **options: list[float]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QuivCollector(scheduler, **options))
    return registry


def noop() -> None:
    pass


def test_jobs_are_counted_by_task_and_final_status_with_retries(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv(pool_size=3)
    registry = registry_for(scheduler)
    ended = Ended(scheduler)

    def flaky() -> None:
        raise RuntimeError("the service is down")

    started: queue.Queue[str] = queue.Queue()

    def stoppable(_job_id: str, _stop_event: threading.Event) -> None:
        started.put(_job_id)
        _stop_event.wait(DEADLINE)

    scheduler.add_task("ok", noop, interval=3600)
    scheduler.add_task("flaky", flaky, interval=3600, max_retries=2, retry_backoff=0)
    scheduler.add_task("stoppable", stoppable, interval=3600)
    scheduler.start()
    ended.wait(Event.JOB_FAILED, 3, task="flaky")
    ended.next(Event.JOB_COMPLETED, task="ok")
    job_id = started.get(timeout=DEADLINE)
    assert scheduler.cancel_job(job_id)
    assert scheduler.wait_for_job(job_id, timeout=DEADLINE).status is JobStatus.CANCELLED

    samples = scrape(registry)
    expected = {
        ("ok", "completed"): 1,
        ("flaky", "failed"): 3,
        ("stoppable", "cancelled"): 1,
    }
    for task in ("ok", "flaky", "stoppable"):
        for status in ("completed", "failed", "cancelled", "abandoned", "missed"):
            assert value(samples, "quiv_jobs_total", task=task, status=status) == expected.get(
                (task, status), 0
            )
    assert value(samples, "quiv_job_retries_total", task="flaky") == 2
    assert value(samples, "quiv_job_retries_total", task="ok") == 0
    # Each job is in the duration histogram once it ended, in the delay histogram once it started.
    assert value(samples, "quiv_job_duration_seconds_count", task="flaky") == 3
    assert value(samples, "quiv_job_start_delay_seconds_count", task="flaky") == 3
    assert value(samples, "quiv_job_duration_seconds_count", task="stoppable") == 1


def test_histograms_put_duration_and_start_delay_in_their_buckets(
    make_quiv: Callable[..., Quiv], manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    registry = registry_for(scheduler, duration_buckets=[0.05, 60], delay_buckets=[1, 10])
    ended = Ended(scheduler)

    def takes_a_while() -> None:
        time.sleep(0.06)  # the job's own work: measured as its duration

    scheduler.add_task("late", takes_a_while, interval=3600, delay=10)
    scheduler.start()
    manual_clock.advance(15)  # due at +10 s, found at +15 s: five seconds late
    ended.next(Event.JOB_COMPLETED)

    samples = scrape(registry)
    assert value(samples, "quiv_job_start_delay_seconds_bucket", task="late", le="1.0") == 0
    assert value(samples, "quiv_job_start_delay_seconds_bucket", task="late", le="10.0") == 1
    assert value(samples, "quiv_job_start_delay_seconds_bucket", task="late", le="+Inf") == 1
    assert value(samples, "quiv_job_start_delay_seconds_sum", task="late") == pytest.approx(5.0)
    assert value(samples, "quiv_job_duration_seconds_bucket", task="late", le="0.05") == 0
    assert value(samples, "quiv_job_duration_seconds_bucket", task="late", le="60.0") == 1
    duration = value(samples, "quiv_job_duration_seconds_sum", task="late")
    assert duration is not None
    assert 0.06 <= duration < 60


def test_gauges_show_tasks_running_jobs_free_workers_and_the_oldest_job(
    make_quiv: Callable[..., Quiv], manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(pool_size=2, clock=manual_clock)
    registry = registry_for(scheduler)
    ended = Ended(scheduler)
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(DEADLINE)

    scheduler.add_task("hold", hold, interval=3600)
    scheduler.pause_task(scheduler.add_task("idle", noop, interval=3600, delay=600))
    scheduler.add_task("waiting", noop, interval=3600, delay=600)
    samples = scrape(registry)
    assert value(samples, "quiv_scheduler_running") == 0
    scheduler.start()
    assert started.wait(DEADLINE)
    manual_clock.advance(42)

    samples = scrape(registry)
    assert value(samples, "quiv_scheduler_running") == 1
    assert value(samples, "quiv_tasks", status="running") == 1
    assert value(samples, "quiv_tasks", status="paused") == 1
    assert value(samples, "quiv_tasks", status="active") == 1
    assert value(samples, "quiv_running_jobs") == 1
    assert value(samples, "quiv_pool_size") == 2
    assert value(samples, "quiv_free_workers") == 1
    assert value(samples, "quiv_oldest_running_job_age_seconds") == pytest.approx(42.0)
    assert value(samples, "quiv_live_workers") is None  # only with a database_url

    release.set()
    ended.next(Event.JOB_COMPLETED)
    samples = scrape(registry)
    assert value(samples, "quiv_running_jobs") == 0
    assert value(samples, "quiv_free_workers") == 2
    assert value(samples, "quiv_oldest_running_job_age_seconds") == 0
    assert value(samples, "quiv_tasks", status="running") == 0


def test_a_run_skipped_by_misfire_grace_counts_as_missed(
    make_quiv: Callable[..., Quiv], manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    registry = registry_for(scheduler)
    ran = threading.Event()
    scheduler.add_task("tight", ran.set, interval=60, delay=60, misfire_grace=1)
    scheduler.start()
    manual_clock.advance(90)  # due at +60 s, found 30 s late: later than the grace allows

    eventually(
        lambda: value(scrape(registry), "quiv_jobs_total", task="tight", status="missed") == 1, "a miss"
    )
    assert not ran.is_set()
    assert value(scrape(registry), "quiv_jobs_total", task="tight", status="completed") == 0


def test_after_shutdown_the_counts_stay_and_the_state_goes(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv()
    registry = registry_for(scheduler)
    ended = Ended(scheduler)
    scheduler.add_task("once", noop, interval=3600)
    scheduler.start()
    ended.next(Event.JOB_COMPLETED)
    scheduler.shutdown()

    samples = scrape(registry)
    assert value(samples, "quiv_jobs_total", task="once", status="completed") == 1
    assert value(samples, "quiv_scheduler_running") == 0
    assert value(samples, "quiv_running_jobs") is None
    assert value(samples, "quiv_tasks", status="active") is None


def test_every_family_has_its_documented_name_and_type_before_any_job(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv()
    collector = QuivCollector(scheduler)
    assert {m.name: m.type for m in collector.describe()} == FAMILIES
    assert {m.name: m.type for m in collector.collect()} == FAMILIES
    # A registry that describes collectors on registration reads no state to do so.
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    assert parse(generate_latest(registry).decode())[1] == FAMILIES


def test_the_operations_guide_lists_every_metric() -> None:
    documented = set(re.findall(r"^\| `(quiv_[a-z_]+)`", DOCS.read_text(), flags=re.MULTILINE))
    exposed = set()
    for name, kind in {**FAMILIES, **SHARED_FAMILIES}.items():
        exposed.add(f"{name}_total" if kind == "counter" else name)
    assert documented == exposed


def test_collectors_of_one_scheduler_share_its_counts(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv()
    first, second = registry_for(scheduler), registry_for(scheduler)
    ended = Ended(scheduler)
    scheduler.add_task("once", noop, interval=3600)
    scheduler.start()
    ended.next(Event.JOB_COMPLETED)
    for registry in (first, second):
        assert value(scrape(registry), "quiv_jobs_total", task="once", status="completed") == 1


def test_bucket_options_are_checked(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv()
    QuivCollector(scheduler, duration_buckets=[1, 2])
    QuivCollector(scheduler, duration_buckets=[1, 2])  # the same: fine
    with pytest.raises(ConfigurationError, match="other histogram buckets"):
        QuivCollector(scheduler, duration_buckets=[1, 3])
    other = make_quiv()
    for bad in ([], [2, 1], [1, 1], [0, 1], [1, float("inf")], ["x"]):
        with pytest.raises(ConfigurationError):
            QuivCollector(other, delay_buckets=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        QuivCollector("not a scheduler")  # type: ignore[arg-type]


def test_a_failing_instrument_is_logged_and_the_job_still_runs(
    make_quiv: Callable[..., Quiv], caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def capture(self, reason: str) -> object | None:
            raise RuntimeError("capture")

        def expect(self, task_id: str, due: float, link: object) -> None:
            raise RuntimeError("expect")

        def incoming(self, headers: object) -> object:
            raise RuntimeError("incoming")

        def start(self, job: JobState) -> object:
            raise RuntimeError("start")

        def end(self, *args: object) -> None:
            raise RuntimeError("end")

    scheduler = make_quiv()
    scheduler._instrument(tracer=Broken())  # type: ignore[arg-type]
    registry = registry_for(scheduler)
    ended = Ended(scheduler)
    with caplog.at_level(logging.ERROR, logger="Quiv"):
        task_id = scheduler.add_task("robust", noop, interval=3600, delay=3600)
        scheduler.start()
        scheduler.run_task_immediately(task_id)
        assert ended.next(Event.JOB_COMPLETED).task_name == "robust"
    assert "instrumentation failed" in caplog.text
    assert value(scrape(registry), "quiv_jobs_total", task="robust", status="completed") == 1


def attached(scheduler: Quiv) -> Instruments | None:
    return scheduler._engine.runner.instruments


def test_without_instruments_the_runner_has_none(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv()
    assert attached(scheduler) is None
    QuivCollector(scheduler)
    instruments = attached(scheduler)
    assert instruments is not None
    assert instruments.tracer is None
    assert instruments.metrics is not None
