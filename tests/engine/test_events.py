"""The eight events, each with the arguments the documentation gives it."""

from __future__ import annotations

from datetime import timedelta

from quiv import Event, JobStatus, Quiv, TaskStatus
from quiv.models import Job, Task
from quiv.testing import ManualClock

from .support import Blocker, Call, Calls, LoopThread, QuivFactory


def noop() -> None:
    pass


def takes_anything(*args: object, **kwargs: object) -> None:
    """A handler the tests' arguments bind to (add_task checks that they do)."""


def fail() -> None:
    raise ValueError("bad input")


def _listen(scheduler: Quiv, event: Event) -> Calls:
    calls = Calls()
    scheduler.add_listener(event, calls.sync())
    return calls


def _task_event(call: Call, event: Event) -> Task:
    assert len(call.args) == 2, f"{event.name} listeners receive (event, task), got {call.args}"
    assert call.kwargs == {}
    assert call.args[0] is event
    task = call.args[1]
    assert isinstance(task, Task)
    return task


def _job_event(call: Call, event: Event) -> tuple[Task, Job]:
    assert len(call.args) == 3, f"{event.name} listeners receive (event, task, job), got {call.args}"
    assert call.kwargs == {}
    assert call.args[0] is event
    task, job = call.args[1], call.args[2]
    assert isinstance(task, Task)
    assert isinstance(job, Job)
    assert job.task_id == task.id
    assert job.task_name == task.task_name
    return task, job


def test_event_values_are_the_documented_strings() -> None:
    documented = {
        "TASK_ADDED": "task_added",
        "TASK_REMOVED": "task_removed",
        "TASK_PAUSED": "task_paused",
        "TASK_RESUMED": "task_resumed",
        "JOB_STARTED": "job_started",
        "JOB_COMPLETED": "job_completed",
        "JOB_FAILED": "job_failed",
        "JOB_CANCELLED": "job_cancelled",
    }
    assert {name: Event[name].value for name in documented} == documented


def test_task_added(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    calls = _listen(scheduler, Event.TASK_ADDED)
    task_id = scheduler.add_task("added", takes_anything, interval=60, delay=5, args=(1,))
    task = _task_event(calls.wait_for(1)[0], Event.TASK_ADDED)
    assert task.id == task_id
    assert task.task_name == "added"
    assert task.args == (1,)
    assert task.status == TaskStatus.ACTIVE
    assert task.next_run_at == manual_clock.now() + timedelta(seconds=5)


def test_task_removed(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    calls = _listen(scheduler, Event.TASK_REMOVED)
    task_id = scheduler.add_task("removed", noop, interval=60)
    scheduler.remove_task(task_id)
    task = _task_event(calls.wait_for(1)[0], Event.TASK_REMOVED)
    assert task.id == task_id
    assert task.task_name == "removed"


def test_task_paused(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    calls = _listen(scheduler, Event.TASK_PAUSED)
    task_id = scheduler.add_task("paused", noop, interval=60)
    scheduler.pause_task(task_id)
    task = _task_event(calls.wait_for(1)[0], Event.TASK_PAUSED)
    assert task.id == task_id
    assert task.status == TaskStatus.PAUSED


def test_task_resumed(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    calls = _listen(scheduler, Event.TASK_RESUMED)
    task_id = scheduler.add_task("resumed", noop, interval=60)
    scheduler.pause_task(task_id)
    scheduler.resume_task(task_id, delay=7)
    task = _task_event(calls.wait_for(1)[0], Event.TASK_RESUMED)
    assert task.id == task_id
    assert task.status == TaskStatus.ACTIVE
    assert task.next_run_at == manual_clock.now() + timedelta(seconds=7)


def test_job_started(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    calls = _listen(scheduler, Event.JOB_STARTED)
    blocker = Blocker()
    task_id = scheduler.add_task("started", blocker, interval=60)
    scheduler.start()
    job_id = blocker.next_start()
    task, job = _job_event(calls.wait_for(1)[0], Event.JOB_STARTED)
    assert task.id == task_id
    assert task.status == TaskStatus.RUNNING
    assert job.id == job_id
    assert job.status == JobStatus.RUNNING
    assert job.ended_at is None
    blocker.release.set()


def test_job_completed(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    calls = _listen(scheduler, Event.JOB_COMPLETED)
    task_id = scheduler.add_task("completed", noop, interval=60)
    scheduler.start()
    task, job = _job_event(calls.wait_for(1)[0], Event.JOB_COMPLETED)
    assert task.id == task_id
    assert task.status == TaskStatus.ACTIVE
    assert job.status == JobStatus.COMPLETED
    assert job.ended_at is not None
    assert job.duration_seconds is not None
    assert job.error_message is None


def test_job_failed(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    calls = _listen(scheduler, Event.JOB_FAILED)
    task_id = scheduler.add_task("failed", fail, interval=60)
    scheduler.start()
    task, job = _job_event(calls.wait_for(1)[0], Event.JOB_FAILED)
    assert task.id == task_id
    assert job.status == JobStatus.FAILED
    assert job.error_message == "ValueError: bad input"
    assert job.ended_at is not None
    assert job.duration_seconds is not None


def test_job_cancelled(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    calls = _listen(scheduler, Event.JOB_CANCELLED)
    blocker = Blocker()
    task_id = scheduler.add_task("cancelled", blocker, interval=60)
    scheduler.start()
    job_id = blocker.next_start()
    scheduler.cancel_job(job_id)
    task, job = _job_event(calls.wait_for(1)[0], Event.JOB_CANCELLED)
    assert task.id == task_id
    assert job.id == job_id
    assert job.status == JobStatus.CANCELLED
    assert job.ended_at is not None
    assert job.error_message


def test_job_events_of_one_job_arrive_in_order_on_the_main_loop(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    scheduler = make_quiv(main_loop=loop_thread.loop)
    for event in Event:
        scheduler.add_listener(event, calls.sync())
    task_id = scheduler.add_task("t", noop, interval=3600, delay=3600)
    scheduler.start()
    scheduler.run_task_immediately(task_id)
    calls.wait_for(3)
    scheduler.pause_task(task_id)
    items = calls.wait_for(4)
    assert [c.args[0] for c in items] == [
        Event.TASK_ADDED,
        Event.JOB_STARTED,
        Event.JOB_COMPLETED,
        Event.TASK_PAUSED,
    ]
    assert {c.thread for c in items} == {loop_thread.ident}
