"""``quiv.testing``: build a scheduler from declarations, run a declared task now, drive time."""

from __future__ import annotations

import queue
from datetime import datetime, timedelta, timezone

import pytest

from quiv import Event, JobStatus, Quiv
from quiv._declare.registry import TaskRegistry
from quiv.models import Job, Task
from quiv.testing import JobRecorder, ManualClock, fresh_scheduler, run_now

TIMEOUT = 10.0

app = Quiv()
app_registry = TaskRegistry()
app.include_registry(app_registry)
calls: queue.Queue[str] = queue.Queue()
events: queue.Queue[tuple[Event, str]] = queue.Queue()


@app.task(3600)
def nightly(_job_id: str) -> None:
    calls.put(_job_id)


@app_registry.task(60, delay=60)
def broken() -> None:
    raise RuntimeError("disk full")


@app.on(Event.JOB_COMPLETED, Event.JOB_FAILED)
def record(event: Event, task: Task, job: Job) -> None:
    events.put((event, task.task_name))


@pytest.fixture(autouse=True)
def _drain() -> None:
    for pending in (calls, events):
        while not pending.empty():
            pending.get_nowait()


def test_fresh_scheduler_builds_from_an_application_scheduler(clock: ManualClock) -> None:
    with fresh_scheduler(app, clock=clock) as scheduler:
        assert scheduler is not app
        running_inside = scheduler.running
        assert sorted(t.task_name for t in scheduler.get_all_tasks()) == ["broken", "nightly"]
    assert (running_inside, scheduler.running, app.running) == (True, False, False)


def test_fresh_scheduler_can_leave_starting_to_the_test(clock: ManualClock) -> None:
    with fresh_scheduler(app_registry, clock=clock, start=False) as scheduler:
        assert not scheduler.running
        scheduler.start()
        assert [t.task_name for t in scheduler.get_all_tasks()] == ["broken"]


def test_run_now_returns_the_job_it_asked_for(clock: ManualClock) -> None:
    with fresh_scheduler(app, clock=clock) as scheduler:
        # nightly is due at start: that run goes first, then the one run_now asked for.
        job = run_now(scheduler, nightly, timeout=TIMEOUT)
        assert job.status is JobStatus.COMPLETED
        scheduled, asked = calls.get(timeout=TIMEOUT), calls.get(timeout=TIMEOUT)
        assert job.id == asked != scheduled


def test_run_now_fires_listeners_and_reports_failures(clock: ManualClock) -> None:
    with fresh_scheduler(app, clock=clock) as scheduler:
        events.get(timeout=TIMEOUT)  # nightly's run at start
        job = run_now(scheduler, broken, timeout=TIMEOUT)
        assert job.status is JobStatus.FAILED
        assert job.error_message == "RuntimeError: disk full"
        assert events.get(timeout=TIMEOUT) == (Event.JOB_FAILED, "broken")


def test_job_recorder_follows_the_clock(clock: ManualClock) -> None:
    with fresh_scheduler(app_registry, clock=clock) as scheduler, JobRecorder(scheduler) as recorder:
        assert recorder.jobs == []
        with pytest.raises(TimeoutError, match="no job of task"):
            recorder.next(broken, timeout=0.05)  # nothing is due: the clock has not moved
        clock.advance(60)
        first = recorder.next(broken, timeout=TIMEOUT)
        clock.set(clock.now() + timedelta(seconds=60))
        second = recorder.next(scheduler.task_id(broken), timeout=TIMEOUT)
        assert first.id != second.id
        assert first.started_at == datetime.fromtimestamp(clock.now().timestamp() - 60, timezone.utc)


def test_a_recorder_opened_before_start_sees_the_first_run(clock: ManualClock) -> None:
    with fresh_scheduler(app, clock=clock, start=False) as scheduler, JobRecorder(scheduler) as recorder:
        scheduler.start()
        first = recorder.next(nightly, timeout=TIMEOUT)
        assert first.id == calls.get(timeout=TIMEOUT)
        clock.advance(3600)
        second = recorder.next(nightly, timeout=TIMEOUT)
        assert second.id == calls.get(timeout=TIMEOUT)


def test_job_recorder_must_be_open(clock: ManualClock) -> None:
    with fresh_scheduler(app_registry, clock=clock) as scheduler:
        recorder = JobRecorder(scheduler)
        with pytest.raises(RuntimeError, match="'with' block"):
            recorder.next()


def test_manual_clock_keeps_its_api() -> None:
    start = datetime(2030, 1, 1)
    clock = ManualClock(start)
    assert clock.now() == start.replace(tzinfo=timezone.utc)
    assert clock.advance(90) == clock.now() == datetime(2030, 1, 1, 0, 1, 30, tzinfo=timezone.utc)
    clock.set(datetime(2031, 1, 1, tzinfo=timezone.utc))
    assert clock.now().year == 2031
    assert clock.wait_seconds(0) is None
