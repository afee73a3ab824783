"""``stats()``: the counts a dashboard shows."""

from __future__ import annotations

from quiv import JobStatus
from quiv.testing import ManualClock

from .support import Ended, Gate, QuivFactory, at, eventually, noop


def boom() -> None:
    raise ValueError("boom")


def test_a_fresh_scheduler(make_quiv: QuivFactory, clock: ManualClock) -> None:
    stats = make_quiv(clock=clock, pool_size=4).stats()
    assert stats.tasks_by_status == {"active": 0, "running": 0, "paused": 0}
    assert stats.jobs_by_status == {status.value: 0 for status in JobStatus}
    assert (stats.running_jobs, stats.pool_size, stats.free_workers) == (0, 4, 4)
    assert (stats.oldest_running_job_id, stats.oldest_running_job_started_at) == (None, None)
    assert (stats.completed_in_window, stats.failed_in_window) == (0, 0)
    assert stats.retention_seconds == 86400


def test_counts_tasks_jobs_and_workers(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock, pool_size=3)
    ended = Ended(scheduler)
    first_gate, second_gate = Gate(), Gate()
    scheduler.add_task("first", first_gate, interval=3600)
    scheduler.add_task("second", second_gate, interval=3600, delay=5)
    paused = scheduler.add_task("paused", noop, interval=60, delay=60)
    scheduler.pause_task(paused)
    scheduler.add_task("fails", boom, interval=3600, delay=1)
    scheduler.add_task("works", noop, interval=3600, delay=2)
    scheduler.start()
    oldest = first_gate.next_start()
    clock.advance(1)
    assert ended.next().status is JobStatus.FAILED
    clock.advance(1)
    assert ended.next().status is JobStatus.COMPLETED
    clock.advance(3)
    second_gate.next_start()

    stats = scheduler.stats()
    assert stats.tasks_by_status == {"active": 2, "running": 2, "paused": 1}
    assert stats.jobs_by_status == {
        "scheduled": 0,
        "running": 2,
        "completed": 1,
        "cancelled": 0,
        "failed": 1,
        "abandoned": 0,
        "missed": 0,
    }
    assert (stats.running_jobs, stats.pool_size, stats.free_workers) == (2, 3, 1)
    assert (stats.oldest_running_job_id, stats.oldest_running_job_started_at) == (oldest, at(0))
    assert (stats.completed_in_window, stats.failed_in_window) == (1, 1)

    assert scheduler.cancel_job(oldest)
    assert ended.next().status is JobStatus.CANCELLED
    stats = scheduler.stats()
    assert stats.jobs_by_status["cancelled"] == 1
    assert stats.jobs_by_status["running"] == 1
    assert (stats.running_jobs, stats.free_workers) == (1, 2)
    assert stats.oldest_running_job_started_at == at(5)
    assert stats.tasks_by_status == {"active": 3, "running": 1, "paused": 1}


def test_window_counts_drop_jobs_older_than_the_retention(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock, history_retention_seconds=100)
    ended = Ended(scheduler)
    scheduler.add_task("works", noop, interval=3600)
    scheduler.add_task("fails", boom, interval=3600, delay=50)
    scheduler.start()
    ended.next()
    clock.advance(50)
    ended.next()
    stats = scheduler.stats()
    assert (stats.completed_in_window, stats.failed_in_window, stats.retention_seconds) == (1, 1, 100)
    clock.advance(51)  # the completed job (ended at 0) is now 101 s old; the failed one 51 s
    assert eventually(lambda: scheduler.stats().completed_in_window == 0), "the old job was never purged"
    assert scheduler.stats().failed_in_window == 1
