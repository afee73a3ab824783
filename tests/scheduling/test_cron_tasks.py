"""Cron tasks end to end: they run at their cron times, in their timezone, across DST changes."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from quiv import JobStatus, TaskNotFoundError, TaskStatus
from quiv.testing import ManualClock

from .support import Ended, QuivFactory, at, noop


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)


def test_a_cron_task_runs_at_its_times(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("quarterly", noop, cron="*/15 * * * *")
    task = scheduler.get_task(task_id)
    assert task.cron == "*/15 * * * *"
    assert task.cron_timezone == "UTC"
    assert task.interval_seconds is None
    assert task.run_once is False
    assert task.next_run_at == at(900)
    scheduler.start()
    clock.advance(899)
    assert ended.none_within(0.2), "a cron task ran before its time"
    for quarter in (1, 2, 3):
        clock.set(at(900 * quarter))
        job = ended.next()
        assert job.task_id == task_id
        assert job.status is JobStatus.COMPLETED
        assert job.started_at == at(900 * quarter)
        task = scheduler.get_task(task_id)
        assert task.next_run_at == at(900 * (quarter + 1))
        assert task.status is TaskStatus.ACTIVE


def test_a_cron_task_with_a_seconds_field(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("often", noop, cron="*/20 * * * * *")
    assert scheduler.get_task(task_id).next_run_at == at(20)
    scheduler.start()
    clock.advance(20)
    assert ended.next().started_at == at(20)
    clock.advance(20)
    assert ended.next().started_at == at(40)
    assert scheduler.get_task(task_id).next_run_at == at(60)


def test_a_cron_alias(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("hourly", noop, cron="@hourly")
    assert scheduler.get_task(task_id).next_run_at == at(3600)
    assert scheduler.get_task(task_id).cron == "@hourly"


def test_cron_is_read_in_cron_timezone(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    by_name = scheduler.add_task("ny", noop, cron="0 9 * * *", cron_timezone="America/New_York")
    by_zone = scheduler.add_task("berlin", noop, cron="0 9 * * *", cron_timezone=ZoneInfo("Europe/Berlin"))
    assert scheduler.get_task(by_name).next_run_at == at(14 * 3600)  # 09:00 EST
    assert scheduler.get_task(by_name).cron_timezone == "America/New_York"
    assert scheduler.get_task(by_zone).next_run_at == at(8 * 3600)  # 09:00 CET
    assert scheduler.get_task(by_zone).cron_timezone == "Europe/Berlin"


def test_cron_timezone_defaults_to_the_scheduler_timezone(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock, timezone="Europe/Berlin")
    task_id = scheduler.add_task("berlin", noop, cron="0 9 * * *")
    task = scheduler.get_task(task_id)
    assert task.cron_timezone == "Europe/Berlin"
    assert task.next_run_at == at(8 * 3600)


def test_the_nonexistent_hour_is_skipped_end_to_end(make_quiv: QuivFactory) -> None:
    clock = ManualClock(utc("2024-03-10 05:00:00"))  # midnight EST, the day clocks go forward
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("gap", noop, cron="30 2 * * *", cron_timezone="America/New_York")
    assert scheduler.get_task(task_id).next_run_at == utc("2024-03-11 06:30:00")
    scheduler.start()
    clock.set(utc("2024-03-10 07:45:00"))  # 03:45 EDT: 02:30 never happened today
    assert ended.none_within(0.2), "a run fired for a local time that does not exist"
    clock.set(utc("2024-03-11 06:30:00"))
    assert ended.next().started_at == utc("2024-03-11 06:30:00")
    assert scheduler.get_task(task_id).next_run_at == utc("2024-03-12 06:30:00")


def test_the_repeated_hour_runs_once_end_to_end(make_quiv: QuivFactory) -> None:
    clock = ManualClock(utc("2024-11-03 04:00:00"))  # midnight EDT, the day clocks go back
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("twice?", noop, cron="30 1 * * *", cron_timezone="America/New_York")
    assert scheduler.get_task(task_id).next_run_at == utc("2024-11-03 05:30:00")  # 01:30 EDT
    scheduler.start()
    clock.set(utc("2024-11-03 05:30:00"))
    assert ended.next().started_at == utc("2024-11-03 05:30:00")
    # 01:30 EST (06:30 UTC) is the same wall time again: it does not fire.
    assert scheduler.get_task(task_id).next_run_at == utc("2024-11-04 06:30:00")
    clock.set(utc("2024-11-03 06:45:00"))
    assert ended.none_within(0.2), "the repeated 01:30 fired a second time"


def test_a_run_once_cron_task_runs_at_its_first_time_then_goes(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("once", noop, cron="*/10 * * * *", run_once=True)
    assert scheduler.get_task(task_id).run_once is True
    scheduler.start()
    clock.advance(600)
    job = ended.next()
    assert job.started_at == at(600)
    assert job.task_id == task_id
    with pytest.raises(TaskNotFoundError):
        scheduler.get_task(task_id)
