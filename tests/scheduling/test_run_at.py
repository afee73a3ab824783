"""``run_at``: alone it is a one-shot task; with ``interval`` it is the first run of a cadence."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from quiv import JobStatus, TaskNotFoundError
from quiv.testing import ManualClock

from .support import START, Ended, QuivFactory, at, noop


def test_run_at_alone_is_a_one_shot_task(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("once", noop, run_at=at(600))
    task = scheduler.get_task(task_id)
    assert task.run_once is True
    assert task.interval_seconds is None
    assert task.cron is None
    assert task.next_run_at == at(600)
    assert scheduler.get_all_tasks() == []  # run-once tasks are only listed when asked for
    assert [t.id for t in scheduler.get_all_tasks(include_run_once=True)] == [task_id]
    scheduler.start()
    clock.advance(599)
    assert ended.none_within(0.2), "a one-shot task ran before its run_at"
    clock.advance(1)
    job = ended.next()
    assert job.task_id == task_id
    assert job.status is JobStatus.COMPLETED
    assert job.started_at == at(600)
    with pytest.raises(TaskNotFoundError):
        scheduler.get_task(task_id)
    assert scheduler.get_all_tasks(include_run_once=True) == []
    assert [j.id for j in scheduler.get_all_jobs()] == [job.id]  # the history stays
    clock.advance(3600)
    assert ended.none_within(0.2), "a one-shot task ran twice"


def test_a_naive_run_at_is_read_as_utc(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock, timezone="America/New_York")
    task_id = scheduler.add_task("naive", noop, run_at=datetime(2024, 1, 1, 0, 10))
    assert scheduler.get_task(task_id).next_run_at == at(600)


def test_an_aware_run_at_in_another_zone(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    berlin = datetime(2024, 1, 1, 1, 10, tzinfo=ZoneInfo("Europe/Berlin"))  # 00:10 UTC
    task_id = scheduler.add_task("aware", noop, run_at=berlin)
    assert scheduler.get_task(task_id).next_run_at == at(600)


@pytest.mark.parametrize("interval", [None, 60.0], ids=["one-shot", "with-interval"])
def test_a_run_at_already_past_runs_at_once(
    make_quiv: QuivFactory, clock: ManualClock, interval: float | None
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("late", noop, interval=interval, run_at=START - timedelta(hours=1))
    assert scheduler.get_task(task_id).next_run_at == at(0)
    scheduler.start()  # the clock does not move: the run is due now
    job = ended.next()
    assert job.task_id == task_id
    assert job.started_at == at(0)


def test_run_at_with_interval_is_the_first_run_then_the_cadence(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("cadence", noop, interval=60, run_at=at(300))
    task = scheduler.get_task(task_id)
    assert task.run_once is False
    assert task.interval_seconds == 60
    assert task.next_run_at == at(300)
    scheduler.start()
    clock.advance(299)
    assert ended.none_within(0.2), "the first run came before run_at"
    for expected in (300, 360, 420):
        clock.set(at(expected))
        assert ended.next().started_at == at(expected)
        assert scheduler.get_task(task_id).next_run_at == at(expected + 60)
