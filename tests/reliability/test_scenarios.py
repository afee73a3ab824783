"""Deterministic versions of the races the stress test can only hit by chance."""

from __future__ import annotations

from quiv import Event, JobStatus

from .conftest import RecordedFactory
from .invariants import check_invariants, shutdown_and_check


def test_run_now_queued_behind_a_full_pool_still_runs_after_pause(recorded: RecordedFactory) -> None:
    """run_task_immediately, then pause_task before the run could start: the run still happens, once,
    and the task stays paused (decisions.md: pausing stops the schedule, not explicit requests)."""
    scheduler, clock, rec = recorded(pool_size=1)
    scheduler.add_task("busy", rec.handler(), interval=100, kwargs={"key": "busy", "mode": "gate"})
    (busy_job,) = rec.wait_entered(1, key="busy")  # the only worker is taken
    target = scheduler.add_task("target", rec.handler(), interval=5, delay=50, kwargs={"key": "target"})
    assert rec.run_now(target) == 1  # cannot start: the pool is full
    assert rec.run_now(target) == 1  # a second request collapses into the same run
    rec.pause(target)
    rec.release(busy_job)
    scheduler.wait_for_job(busy_job, timeout=10)
    rec.wait_terminal(2)
    clock.advance(60)  # the schedule is stopped: no further run, even when "due"
    rec.run_now(scheduler.add_task("probe", rec.handler(), interval=100, kwargs={"key": "probe"}))
    rec.wait_terminal(3)
    assert rec.event_count(Event.JOB_STARTED, target) == 1
    assert scheduler.get_task(target).status.value == "paused"
    check_invariants(rec)
    shutdown_and_check(rec)


def test_pause_drops_the_schedule_of_a_task_waiting_for_a_worker(recorded: RecordedFactory) -> None:
    """A run that is only due by the schedule (no explicit request) does not start once paused."""
    scheduler, clock, rec = recorded(pool_size=1)
    scheduler.add_task("busy", rec.handler(), interval=100, kwargs={"key": "busy", "mode": "gate"})
    (busy_job,) = rec.wait_entered(1, key="busy")
    target = scheduler.add_task("target", rec.handler(), interval=5, delay=1, kwargs={"key": "target"})
    clock.advance(2)  # due now, but the pool is full
    rec.pause(target)
    rec.release(busy_job)
    scheduler.wait_for_job(busy_job, timeout=10)
    rec.run_now(scheduler.add_task("probe", rec.handler(), interval=100, kwargs={"key": "probe"}))
    rec.wait_terminal(2)
    assert rec.event_count(Event.JOB_STARTED, target) == 0, "the paused task started"
    check_invariants(rec)
    shutdown_and_check(rec)


def test_run_now_after_pause_runs_once_and_stays_paused(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded(pool_size=2)
    target = scheduler.add_task("target", rec.handler(), interval=5, delay=5, kwargs={"key": "t"})
    rec.pause(target)
    rec.run_now(target)
    rec.wait_terminal(1)
    clock.advance(30)
    rec.run_now(scheduler.add_task("probe", rec.handler(), interval=100, kwargs={"key": "probe"}))
    rec.wait_terminal(2)
    assert rec.event_count(Event.JOB_COMPLETED, target) == 1
    assert scheduler.get_task(target).status.value == "paused"
    check_invariants(rec)
    shutdown_and_check(rec)


def test_remove_while_running_cancels_and_never_runs_again(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded(pool_size=2)
    target = scheduler.add_task("target", rec.handler(), interval=1, kwargs={"key": "t", "mode": "gate"})
    (job_id,) = rec.wait_entered(1, key="t")
    rec.run_now(target)  # asks for another run once this one ends
    rec.remove(target)
    job = scheduler.wait_for_job(job_id, timeout=10)
    assert job.status is JobStatus.CANCELLED, job
    assert job.error_message, job
    clock.advance(10)
    rec.run_now(scheduler.add_task("probe", rec.handler(), interval=100, kwargs={"key": "probe"}))
    rec.wait_terminal(2)
    assert rec.event_count(Event.JOB_STARTED, target) == 1
    check_invariants(rec)
    shutdown_and_check(rec)


def test_pause_while_running_lets_the_job_finish_and_stays_paused(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded(pool_size=2)
    target = scheduler.add_task("target", rec.handler(), interval=1, kwargs={"key": "t", "mode": "gate"})
    (job_id,) = rec.wait_entered(1, key="t")
    rec.pause(target)
    clock.advance(5)
    rec.release(job_id)
    assert scheduler.wait_for_job(job_id, timeout=10).status is JobStatus.COMPLETED
    clock.advance(5)
    rec.run_now(scheduler.add_task("probe", rec.handler(), interval=100, kwargs={"key": "probe"}))
    rec.wait_terminal(2)
    assert rec.event_count(Event.JOB_STARTED, target) == 1
    assert scheduler.get_task(target).status.value == "paused"
    check_invariants(rec)
    shutdown_and_check(rec)
