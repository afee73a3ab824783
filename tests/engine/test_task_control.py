"""Controlling tasks at runtime: run now, pause, resume, remove, and reading them back."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from quiv import (
    Event,
    HandlerNotRegisteredError,
    JobStatus,
    Quiv,
    TaskNotFoundError,
    TaskNotScheduledError,
    TaskStatus,
)
from quiv.models import Task
from quiv.testing import ManualClock

from .support import DEADLINE, Blocker, Calls, LoopThread, QuivFactory

UNKNOWN_ID = "6c1f9a52-0000-4000-8000-000000000000"


def noop() -> None:
    pass


def takes_anything(*args: object, **kwargs: object) -> None:
    """A handler the tests' arguments bind to (add_task checks that they do)."""


def _completed(scheduler: Quiv) -> Calls:
    calls = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, calls.sync())
    return calls


# ------------------------------------------------------------ run_task_immediately
def test_run_task_immediately_runs_the_task_now_and_returns_1(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    runs = Calls()
    task_id = scheduler.add_task("later", runs.sync(), interval=3600, delay=3600)
    scheduler.start()
    assert scheduler.run_task_immediately(task_id) == 1
    runs.wait_for(1)


def test_run_task_immediately_with_an_unknown_id(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.start()
    with pytest.raises(HandlerNotRegisteredError) as caught:
        scheduler.run_task_immediately(UNKNOWN_ID)
    assert UNKNOWN_ID in str(caught.value)
    assert isinstance(caught.value, TaskNotFoundError)
    assert isinstance(caught.value, LookupError)


def test_run_task_immediately_on_a_run_once_task_that_already_started(
    make_quiv: QuivFactory,
) -> None:
    scheduler = make_quiv()
    blocker = Blocker()
    task_id = scheduler.add_task("once", blocker, interval=60, run_once=True)
    scheduler.start()
    blocker.next_start()
    with pytest.raises(TaskNotScheduledError) as caught:
        scheduler.run_task_immediately(task_id)
    assert task_id in str(caught.value)
    assert isinstance(caught.value, TaskNotFoundError)
    blocker.release.set()


def test_run_task_immediately_on_a_run_once_task_not_yet_started(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    runs = Calls()
    task_id = scheduler.add_task("once", runs.sync(), interval=60, delay=600, run_once=True)
    scheduler.start()
    assert scheduler.run_task_immediately(task_id) == 1
    runs.wait_for(1)


def test_run_task_immediately_on_a_paused_task_runs_once_and_it_stays_paused(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    done = _completed(scheduler)
    task_id = scheduler.add_task("paused", noop, interval=60, delay=60)
    scheduler.pause_task(task_id)
    scheduler.start()
    assert scheduler.run_task_immediately(task_id) == 1
    done.wait_for(1)
    assert scheduler.get_task(task_id).status == TaskStatus.PAUSED
    manual_clock.advance(600)
    with pytest.raises(AssertionError):
        done.wait_for(2, timeout=0.2)


def test_run_task_immediately_while_its_job_runs_starts_one_run_after_it(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    task_id = scheduler.add_task("busy", blocker, interval=3600)
    scheduler.start()
    first = blocker.next_start()
    for _ in range(3):
        assert scheduler.run_task_immediately(task_id) == 1
    assert blocker.no_start_within(0.2), "a task must never run twice at once"
    blocker.release.set()
    second = blocker.next_start()
    assert second != first
    scheduler.wait_for_job(second, timeout=DEADLINE)
    assert blocker.no_start_within(0.2), "several requests while running collapse into one run"
    assert blocker.max_running == 1


# ------------------------------------------------------------------------ pause
def test_pause_blocks_future_runs(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    runs = Calls()
    task_id = scheduler.add_task("t", runs.sync(), interval=10, delay=10)
    scheduler.start()
    scheduler.pause_task(task_id)
    assert scheduler.get_task(task_id).status == TaskStatus.PAUSED
    manual_clock.advance(100)
    with pytest.raises(AssertionError):
        runs.wait_for(1, timeout=0.2)


def test_pause_while_its_job_runs_lets_it_finish_and_the_task_stays_paused(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=10)
    scheduler.start()
    job_id = blocker.next_start()
    scheduler.pause_task(task_id)
    blocker.release.set()
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert job.status == JobStatus.COMPLETED
    assert scheduler.get_task(task_id).status == TaskStatus.PAUSED
    (end,) = ends.wait_for(1)
    assert end.args[1].status == TaskStatus.PAUSED, "the JOB_COMPLETED snapshot shows the task paused"
    manual_clock.advance(100)
    assert blocker.no_start_within(0.2), "a task paused during its run must not run again"
    assert scheduler.get_task(task_id).status == TaskStatus.PAUSED


def test_pause_twice_is_harmless_and_fires_task_paused_each_time(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    paused = Calls()
    scheduler.add_listener(Event.TASK_PAUSED, paused.sync())
    task_id = scheduler.add_task("t", noop, interval=60, delay=60)
    scheduler.pause_task(task_id)
    scheduler.pause_task(task_id)
    assert len(paused.wait_for(2)) == 2
    assert scheduler.get_task(task_id).status == TaskStatus.PAUSED


def test_pause_unknown_task(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    with pytest.raises(TaskNotFoundError, match=UNKNOWN_ID):
        scheduler.pause_task(UNKNOWN_ID)


# ----------------------------------------------------------------------- resume
def test_resume_with_delay_schedules_the_next_run_that_far_from_now(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    runs = Calls()
    task_id = scheduler.add_task("t", runs.sync(), interval=3600, delay=5)
    scheduler.start()
    scheduler.pause_task(task_id)
    manual_clock.advance(10)
    resumed_at = manual_clock.now()
    scheduler.resume_task(task_id, delay=30)
    task = scheduler.get_task(task_id)
    assert task.status == TaskStatus.ACTIVE
    assert task.next_run_at == resumed_at + timedelta(seconds=30)
    manual_clock.advance(29)
    with pytest.raises(AssertionError):
        runs.wait_for(1, timeout=0.2)
    manual_clock.advance(1)
    runs.wait_for(1)


def test_resume_without_delay_runs_at_once(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    runs = Calls()
    task_id = scheduler.add_task("t", runs.sync(), interval=3600, delay=600)
    scheduler.pause_task(task_id)
    scheduler.start()
    scheduler.resume_task(task_id)
    runs.wait_for(1)


def test_resume_an_active_task_moves_its_next_run(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    task_id = scheduler.add_task("t", noop, interval=3600, delay=600)
    scheduler.resume_task(task_id, delay=5)
    task = scheduler.get_task(task_id)
    assert task.status == TaskStatus.ACTIVE
    assert task.next_run_at == manual_clock.now() + timedelta(seconds=5)


def test_resume_while_its_job_runs_starts_the_next_run_after_the_job(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    first = blocker.next_start()
    scheduler.pause_task(task_id)
    scheduler.resume_task(task_id)
    assert blocker.no_start_within(0.2), "a task must never run twice at once"
    blocker.release.set()
    assert blocker.next_start() != first
    assert blocker.max_running == 1


def test_resume_unknown_task(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    with pytest.raises(TaskNotFoundError, match=UNKNOWN_ID):
        scheduler.resume_task(UNKNOWN_ID)


# ----------------------------------------------------------------------- remove
def test_remove_task_fires_task_removed_with_a_snapshot_taken_before_deletion(
    make_quiv: QuivFactory,
) -> None:
    scheduler = make_quiv()
    seen: list[Task] = []
    lookups: list[BaseException | None] = []

    def on_removed(event: Event, task: Task) -> None:
        seen.append(task)
        try:
            scheduler.get_task(task.id)
            lookups.append(None)
        except TaskNotFoundError as exc:
            lookups.append(exc)

    scheduler.add_listener(Event.TASK_REMOVED, on_removed)
    task_id = scheduler.add_task(
        "doomed", takes_anything, interval=42, delay=60, args=(1, "a"), kwargs={"k": 2}
    )
    scheduler.pause_task(task_id)
    scheduler.remove_task(task_id)

    (snapshot,) = seen
    assert snapshot.id == task_id
    assert snapshot.task_name == "doomed"
    assert snapshot.args == (1, "a")
    assert snapshot.kwargs == {"k": 2}
    assert snapshot.interval_seconds == 42
    assert snapshot.status == TaskStatus.PAUSED
    assert isinstance(lookups[0], TaskNotFoundError), "the event fires after the task is gone"
    with pytest.raises(TaskNotFoundError):
        scheduler.get_task(task_id)
    assert scheduler.get_all_tasks(include_run_once=True) == []


def test_remove_task_during_its_job_sets_the_stop_event_and_the_job_ends_cancelled(
    make_quiv: QuivFactory,
) -> None:
    scheduler = make_quiv()
    cancelled = Calls()
    scheduler.add_listener(Event.JOB_CANCELLED, cancelled.sync())
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=60)
    scheduler.start()
    job_id = blocker.next_start()
    scheduler.remove_task(task_id)
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert blocker.stop_seen[job_id] is True
    assert job.status == JobStatus.CANCELLED
    (call,) = cancelled.wait_for(1)
    assert call.args[2].id == job_id
    assert scheduler.get_all_tasks(include_run_once=True) == []
    assert [j.id for j in scheduler.get_all_jobs()] == [job_id], "the job stays in the history"


def test_remove_unknown_task(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    with pytest.raises(TaskNotFoundError, match=UNKNOWN_ID):
        scheduler.remove_task(UNKNOWN_ID)


def test_remove_task_twice(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    task_id = scheduler.add_task("t", noop, interval=60)
    scheduler.remove_task(task_id)
    with pytest.raises(TaskNotFoundError):
        scheduler.remove_task(task_id)


# ------------------------------------------------------------------------ reads
def test_get_task_unknown_id(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    with pytest.raises(TaskNotFoundError) as caught:
        scheduler.get_task(UNKNOWN_ID)
    assert UNKNOWN_ID in str(caught.value)
    assert isinstance(caught.value, LookupError)


def test_get_all_tasks_leaves_out_run_once_tasks_unless_asked(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    recurring = scheduler.add_task("recurring", noop, interval=60, delay=60)
    once = scheduler.add_task("once", noop, interval=60, delay=60, run_once=True)
    assert [t.id for t in scheduler.get_all_tasks()] == [recurring]
    assert [t.id for t in scheduler.get_all_tasks(include_run_once=False)] == [recurring]
    assert {t.id for t in scheduler.get_all_tasks(include_run_once=True)} == {recurring, once}
    assert scheduler.get_task(once).run_once is True


def test_while_a_job_runs_the_task_is_running_and_shows_its_next_run(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=10)
    scheduler.start()
    blocker.next_start()
    task = scheduler.get_task(task_id)
    assert task.status == TaskStatus.RUNNING
    assert task.next_run_at == manual_clock.now() + timedelta(seconds=10)
    blocker.release.set()


def test_public_methods_can_be_called_from_many_threads_at_once(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.start()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait(DEADLINE)
            for i in range(10):
                task_id = scheduler.add_task(f"t{n}-{i}", noop, interval=3600, delay=3600)
                scheduler.pause_task(task_id)
                scheduler.resume_task(task_id, delay=3600)
                scheduler.get_task(task_id)
                scheduler.get_all_tasks()
                scheduler.get_all_jobs()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    assert errors == []
    assert len(scheduler.get_all_tasks()) == 80


def test_a_run_requested_just_before_a_pause_still_happens(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    """run_task_immediately overrides a pause (decisions.md); the order of the two calls must not matter."""
    scheduler = make_quiv(clock=manual_clock)
    done = _completed(scheduler)
    task_id = scheduler.add_task("t", noop, interval=3600, delay=3600)
    scheduler.start()
    assert scheduler.run_task_immediately(task_id) == 1
    scheduler.pause_task(task_id)
    done.wait_for(1)
    assert scheduler.get_task(task_id).status == TaskStatus.PAUSED


def test_resume_with_delay_while_its_job_runs_waits_for_the_later_of_the_two(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    first = blocker.next_start()
    resumed_at = manual_clock.now()
    scheduler.resume_task(task_id, delay=30)
    manual_clock.advance(5)
    blocker.release.set()
    scheduler.wait_for_job(first, timeout=DEADLINE)
    assert scheduler.get_task(task_id).next_run_at == resumed_at + timedelta(seconds=30)
    assert blocker.no_start_within(0.2)
    manual_clock.advance(25)
    second = blocker.next_start()
    assert scheduler.get_job(second).started_at == resumed_at + timedelta(seconds=30)


def test_methods_may_be_called_from_the_main_loop(loop_thread: LoopThread, make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    loop_thread.call(scheduler.start)

    async def endpoint() -> list[str]:
        task_id = scheduler.add_task("from-loop", noop, interval=3600, delay=3600)
        scheduler.pause_task(task_id)
        scheduler.resume_task(task_id, delay=3600)
        return [t.id for t in scheduler.get_all_tasks()]

    assert len(loop_thread.run(endpoint())) == 1
