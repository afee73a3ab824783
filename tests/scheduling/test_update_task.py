"""``update_task``: change a task's schedule, arguments or options; its id and history stay."""

from __future__ import annotations

import math
import queue
from datetime import timedelta, timezone
from typing import Any

import pytest

from quiv import (
    ConfigurationError,
    Event,
    InvalidArgumentError,
    InvalidTimezoneError,
    JobStatus,
    Quiv,
    Task,
    TaskNotFoundError,
)
from quiv.testing import ManualClock

from .support import DEADLINE, Ended, Gate, QuivFactory, at, noop


class Echo:
    """A handler that puts what it was called with on a queue (quiv's injected ``_`` names left out)."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[tuple[Any, ...], dict[str, Any]]] = queue.Queue()

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.put((args, {key: value for key, value in kwargs.items() if not key.startswith("_")}))

    def next(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        try:
            return self.calls.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError("the handler was not called") from None


def updates(scheduler: Quiv) -> queue.Queue[Task]:
    received: queue.Queue[Task] = queue.Queue()

    def listener(event: Event, task: Task) -> None:
        assert event is Event.TASK_UPDATED
        received.put(task)

    scheduler.add_listener(Event.TASK_UPDATED, listener)
    return received


def test_changes_arguments_and_keeps_id_history_and_next_run(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    echo = Echo()
    task_id = scheduler.add_task("echo", echo, interval=60, args=(1,), kwargs={"k": "old"})
    scheduler.start()
    assert echo.next() == ((1,), {"k": "old"})
    first = ended.next()
    received = updates(scheduler)

    updated = scheduler.update_task(task_id, args=(2, 3), kwargs={"k": "new"})

    assert updated.id == task_id
    assert (updated.args, updated.kwargs) == ((2, 3), {"k": "new"})
    assert updated.next_run_at == at(60)  # arguments alone do not move the schedule
    event_task = received.get(timeout=DEADLINE)
    assert event_task == updated
    assert scheduler.get_task(task_id) == updated
    assert [j.id for j in scheduler.get_all_jobs()] == [first.id]
    assert scheduler.get_job(first.id).task_id == task_id
    clock.advance(60)
    assert echo.next() == ((2, 3), {"k": "new"})
    second = ended.next()
    assert second.task_id == task_id


def test_a_new_interval_starts_from_now_or_after_delay(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("t", noop, interval=3600, delay=3600)
    scheduler.start()
    clock.advance(100)
    updated = scheduler.update_task(task_id, interval=30, delay=30)
    assert (updated.interval_seconds, updated.next_run_at) == (30, at(130))
    clock.advance(30)
    assert ended.next().started_at == at(130)
    assert scheduler.get_task(task_id).next_run_at == at(160)


def test_update_to_run_at(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, interval=60, delay=60)
    updated = scheduler.update_task(task_id, run_at=at(500))
    assert updated.next_run_at == at(500)
    assert updated.interval_seconds == 60


def test_interval_to_cron_and_back(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("t", noop, interval=60, delay=60)
    received = updates(scheduler)
    as_cron = scheduler.update_task(task_id, cron="0 * * * *", cron_timezone="Europe/Berlin")
    assert (as_cron.cron, as_cron.cron_timezone, as_cron.interval_seconds) == (
        "0 * * * *",
        "Europe/Berlin",
        None,
    )
    assert as_cron.next_run_at == at(3600)
    assert received.get(timeout=DEADLINE).cron == "0 * * * *"
    scheduler.start()
    clock.advance(3600)
    assert ended.next().started_at == at(3600)
    as_interval = scheduler.update_task(task_id, interval=120, delay=10)
    assert (as_interval.cron, as_interval.cron_timezone, as_interval.interval_seconds) == (None, None, 120)
    assert as_interval.next_run_at == at(3610)
    assert received.get(timeout=DEADLINE).interval_seconds == 120


def test_cron_timezone_alone_moves_a_cron_task(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, cron="0 9 * * *")
    assert scheduler.get_task(task_id).next_run_at == at(9 * 3600)
    updated = scheduler.update_task(task_id, cron_timezone="America/New_York")
    assert (updated.cron, updated.next_run_at) == ("0 9 * * *", at(14 * 3600))


def test_options_change_without_moving_the_schedule(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, interval=60, delay=60)
    updated = scheduler.update_task(
        task_id,
        task_name="renamed",
        max_retries=3,
        retry_backoff=2.5,
        timeout=30,
        jitter=0.5,
        misfire="run_once",
        misfire_grace=10,
    )
    assert (
        updated.task_name,
        updated.max_retries,
        updated.retry_backoff,
        updated.timeout,
        updated.jitter,
        updated.misfire,
        updated.misfire_grace,
    ) == ("renamed", 3, 2.5, 30, 0.5, "run_once", 10)
    assert updated.next_run_at == at(60)
    assert scheduler.get_task(task_id) == updated


def test_new_options_apply_to_the_next_run(make_quiv: QuivFactory, clock: ManualClock) -> None:
    """A timeout added by update_task stops the next job."""
    scheduler = make_quiv(clock=clock)
    gate = Gate()
    task_id = scheduler.add_task("t", gate, interval=60, delay=60)
    scheduler.update_task(task_id, timeout=5)
    scheduler.start()
    clock.advance(60)
    job_id = gate.next_start()
    clock.advance(5)
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert job.status is JobStatus.CANCELLED
    assert "timed out" in (job.error_message or "")


def test_a_new_handler(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    old, new = Echo(), Echo()
    task_id = scheduler.add_task("t", old, interval=60, delay=60, args=("x",))
    scheduler.update_task(task_id, func=new)
    scheduler.start()
    clock.advance(60)
    assert new.next() == (("x",), {})
    assert old.calls.empty()


def test_a_running_job_is_not_affected(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    gate = Gate()
    task_id = scheduler.add_task("t", gate, interval=60)
    scheduler.start()
    job_id = gate.next_start()
    scheduler.update_task(task_id, interval=10, timeout=1)
    assert scheduler.get_job(job_id).status is JobStatus.RUNNING
    clock.advance(5)
    gate.release.set()
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert job.status is JobStatus.COMPLETED  # the new timeout is for later jobs
    assert scheduler.get_task(task_id).interval_seconds == 10


def test_a_one_shot_task_keeps_its_run_at_when_other_options_change(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    echo = Echo()
    task_id = scheduler.add_task("once", echo, run_at=at(600), args=(1,))
    updated = scheduler.update_task(task_id, args=(2,), max_retries=1)
    assert (updated.args, updated.run_once, updated.next_run_at, updated.max_retries) == (
        (2,),
        True,
        at(600),
        1,
    )
    scheduler.start()
    clock.advance(600)
    assert echo.next() == ((2,), {})
    assert ended.next().started_at == at(600)


def test_unknown_option_is_an_invalid_argument_error(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, interval=60)
    before = scheduler.get_task(task_id)
    with pytest.raises(InvalidArgumentError, match="intervall"):
        scheduler.update_task(task_id, intervall=5)  # type: ignore[call-arg]
    assert scheduler.get_task(task_id) == before


def test_unknown_task_is_task_not_found(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    with pytest.raises(TaskNotFoundError, match="no-such-task"):
        scheduler.update_task("no-such-task", interval=5)


# (changes, error, text the message must contain)
BAD_UPDATES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"interval": 0}, ConfigurationError, "0"),
    ({"interval": "5"}, InvalidArgumentError, "'5'"),
    ({"cron": "every day"}, ConfigurationError, "'every day'"),
    ({"cron": "0 0 30 2 *"}, ConfigurationError, "'0 0 30 2 *'"),
    ({"cron": "0 * * * *", "interval": 5}, ConfigurationError, "interval"),
    ({"cron": "0 * * * *", "cron_timezone": "Mars/Base"}, InvalidTimezoneError, "'Mars/Base'"),
    ({"run_at": "tomorrow"}, InvalidArgumentError, "'tomorrow'"),
    ({"max_retries": -1}, ConfigurationError, "-1"),
    ({"max_retries": 2.0}, InvalidArgumentError, "2.0"),
    ({"retry_backoff": -0.5}, ConfigurationError, "-0.5"),
    ({"timeout": 0}, ConfigurationError, "0"),
    ({"timeout": math.inf}, ConfigurationError, "inf"),
    ({"jitter": -1}, ConfigurationError, "-1"),
    ({"misfire": "later"}, ConfigurationError, "'later'"),
    ({"misfire_grace": -1}, ConfigurationError, "-1"),
    ({"task_name": ""}, ConfigurationError, "task_name"),
    ({"args": [1]}, InvalidArgumentError, "[1]"),
]


@pytest.mark.parametrize(("changes", "error", "named"), BAD_UPDATES, ids=[str(c[0]) for c in BAD_UPDATES])
def test_bad_values_change_nothing(
    make_quiv: QuivFactory, clock: ManualClock, changes: dict[str, Any], error: type[Exception], named: str
) -> None:
    scheduler = make_quiv(clock=clock)
    received = updates(scheduler)
    task_id = scheduler.add_task("t", noop, interval=60, delay=60, args=(1,), max_retries=1)
    before = scheduler.get_task(task_id)
    with pytest.raises(error) as caught:
        scheduler.update_task(task_id, **changes)
    assert named in str(caught.value)
    assert scheduler.get_task(task_id) == before
    assert scheduler.get_all_tasks() == [before]
    assert received.empty()


def test_a_paused_task_stays_paused(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("t", noop, interval=60, delay=60)
    scheduler.pause_task(task_id)
    updated = scheduler.update_task(task_id, interval=10, delay=10)
    assert updated.status.value == "paused"
    assert updated.next_run_at == at(10)
    scheduler.start()
    clock.advance(100)
    assert ended.none_within(0.2), "a paused task ran after update_task"


def test_a_cron_task_with_a_fixed_offset_zone_can_be_updated(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    """``cron_timezone`` may be any tzinfo, not only an IANA name: later updates must still work."""
    scheduler = make_quiv(clock=clock)
    plus_two = timezone(timedelta(hours=2))
    task_id = scheduler.add_task("t", noop, cron="0 9 * * *", cron_timezone=plus_two)
    before = scheduler.get_task(task_id)
    assert before.next_run_at == at(7 * 3600)
    updated = scheduler.update_task(task_id, max_retries=2)
    assert updated.max_retries == 2
    assert (updated.cron, updated.next_run_at) == ("0 9 * * *", at(7 * 3600))


def test_a_cron_task_in_a_scheduler_with_a_tzinfo_timezone_can_be_updated(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock, timezone=timezone(timedelta(hours=-5)))
    task_id = scheduler.add_task("t", noop, cron="0 9 * * *")
    assert scheduler.get_task(task_id).next_run_at == at(14 * 3600)
    updated = scheduler.update_task(task_id, args=(1,))
    assert (updated.args, updated.next_run_at) == ((1,), at(14 * 3600))
