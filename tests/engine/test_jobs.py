"""Jobs: how they end, cancel_job, reading them back, run-once tasks and the retention purge."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from quiv import (
    ConfigurationError,
    Event,
    JobNotFoundError,
    JobStatus,
    Quiv,
    TaskNotFoundError,
)
from quiv.models import Job
from quiv.testing import ManualClock

from .support import DEADLINE, Blocker, Calls, QuivFactory, wait_until

UNKNOWN_ID = "0b7e0a3c-0000-4000-8000-000000000000"


def noop() -> None:
    pass


def _job_ends(scheduler: Quiv) -> Calls:
    calls = Calls()
    for event in (Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED):
        scheduler.add_listener(event, calls.sync())
    return calls


# ------------------------------------------------------------------ cancel_job
def test_cancel_job_sets_the_stop_event_and_the_job_ends_cancelled(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    cancelled = Calls()
    scheduler.add_listener(Event.JOB_CANCELLED, cancelled.sync())
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()
    assert scheduler.cancel_job(job_id) is True
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert blocker.stop_seen[job_id] is True, "the handler sees its stop event set"
    assert job.status == JobStatus.CANCELLED
    assert job.error_message == "cancelled by cancel_job()"
    assert job.ended_at is not None
    (call,) = cancelled.wait_for(1)
    event, task, ended = call.args
    assert event is Event.JOB_CANCELLED
    assert task.id == task_id
    assert ended.id == job_id
    assert ended.status == JobStatus.CANCELLED


def test_cancel_job_returns_false_for_an_unknown_id(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.start()
    assert scheduler.cancel_job(UNKNOWN_ID) is False


def test_cancel_job_returns_false_for_a_finished_job(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    ends = _job_ends(scheduler)
    scheduler.add_task("t", noop, interval=3600)
    scheduler.start()
    (call,) = ends.wait_for(1)
    job_id = call.args[2].id
    scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert scheduler.cancel_job(job_id) is False
    assert scheduler.get_job(job_id).status == JobStatus.COMPLETED


def test_cancel_job_twice_returns_false_the_second_time(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    blocker = Blocker(return_on_stop=False)
    scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()
    assert scheduler.cancel_job(job_id) is True
    assert scheduler.cancel_job(job_id) is False
    blocker.release.set()
    assert scheduler.wait_for_job(job_id, timeout=DEADLINE).status == JobStatus.CANCELLED


def test_a_cancelled_handler_that_raises_fails(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    started = threading.Event()
    job_ids: list[str] = []

    def handler(_job_id: str, _stop_event: threading.Event) -> None:
        job_ids.append(_job_id)
        started.set()
        _stop_event.wait(DEADLINE)
        raise RuntimeError("stopped the hard way")

    scheduler.add_task("t", handler, interval=3600)
    scheduler.start()
    assert started.wait(DEADLINE)
    assert scheduler.cancel_job(job_ids[0]) is True
    job = scheduler.wait_for_job(job_ids[0], timeout=DEADLINE)
    assert job.status == JobStatus.FAILED
    assert job.error_message == "RuntimeError: stopped the hard way"


# ------------------------------------------------------------------- outcomes
def test_a_handler_that_raises_fails_its_job_and_the_task_keeps_its_schedule(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    def handler() -> None:
        raise ValueError("bad input")

    scheduler = make_quiv(clock=manual_clock)
    ends = _job_ends(scheduler)
    task_id = scheduler.add_task("t", handler, interval=10)
    scheduler.start()
    (call,) = ends.wait_for(1)
    assert call.args[0] is Event.JOB_FAILED
    job = call.args[2]
    assert job.status == JobStatus.FAILED
    assert job.error_message == "ValueError: bad input"
    assert job.duration_seconds is not None
    manual_clock.advance(10)
    assert ends.wait_for(2)[1].args[0] is Event.JOB_FAILED
    assert scheduler.get_task(task_id).task_name == "t"


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, GeneratorExit])
def test_a_base_exception_fails_the_job_without_taking_the_scheduler_down(
    make_quiv: QuivFactory, manual_clock: ManualClock, error: type[BaseException]
) -> None:
    def handler() -> None:
        raise error("boom")

    scheduler = make_quiv(clock=manual_clock, pool_size=1)
    ends = _job_ends(scheduler)
    scheduler.add_task("dies", handler, interval=3600)
    scheduler.start()
    (call,) = ends.wait_for(1)
    assert call.args[2].status == JobStatus.FAILED
    assert error.__name__ in (call.args[2].error_message or "")
    # The one worker is still there to run the next job.
    ran = threading.Event()
    scheduler.add_task("after", ran.set, interval=3600)
    assert ran.wait(DEADLINE)


def test_arguments_are_unpickled_afresh_for_each_run(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    seen: list[list[int]] = []

    def mutate(items: list[int], *, extra: dict[str, int]) -> None:
        seen.append(list(items))
        items.append(99)
        extra["x"] = 0

    scheduler = make_quiv(clock=manual_clock)
    ends = _job_ends(scheduler)
    task_id = scheduler.add_task("t", mutate, interval=10, args=([1, 2],), kwargs={"extra": {"x": 1}})
    scheduler.start()
    ends.wait_for(1)
    manual_clock.advance(10)
    ends.wait_for(2)
    assert seen == [[1, 2], [1, 2]]
    assert scheduler.get_task(task_id).args == ([1, 2],)
    assert scheduler.get_task(task_id).kwargs == {"extra": {"x": 1}}


# -------------------------------------------------------------------- run once
def test_a_run_once_task_runs_once_then_is_deleted_and_its_job_kept(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    removed = Calls()
    scheduler.add_listener(Event.TASK_REMOVED, removed.sync())
    ends = _job_ends(scheduler)
    task_id = scheduler.add_task("once", noop, interval=10, run_once=True)
    scheduler.start()
    (call,) = ends.wait_for(1)
    job_id = call.args[2].id
    assert call.args[1].id == task_id
    assert wait_until(lambda: scheduler.get_all_tasks(include_run_once=True) == [])
    with pytest.raises(TaskNotFoundError):
        scheduler.get_task(task_id)
    assert scheduler.get_job(job_id).status == JobStatus.COMPLETED
    assert len(removed) == 0, "TASK_REMOVED means remove_task() was called"
    manual_clock.advance(100)
    with pytest.raises(AssertionError):
        ends.wait_for(2, timeout=0.2)


def test_a_failing_run_once_task_is_deleted_too(make_quiv: QuivFactory) -> None:
    def handler() -> None:
        raise RuntimeError("nope")

    scheduler = make_quiv()
    ends = _job_ends(scheduler)
    task_id = scheduler.add_task("once", handler, interval=10, run_once=True)
    scheduler.start()
    (call,) = ends.wait_for(1)
    scheduler.wait_for_job(call.args[2].id, timeout=DEADLINE)
    with pytest.raises(TaskNotFoundError):
        scheduler.get_task(task_id)


# ------------------------------------------------------------------------ reads
def test_get_job_of_a_running_and_of_a_finished_job(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    blocker = Blocker()
    task_id = scheduler.add_task("reader", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()
    running = scheduler.get_job(job_id)
    assert isinstance(running, Job)
    assert running.id == job_id
    assert running.task_id == task_id
    assert running.task_name == "reader"
    assert running.status == JobStatus.RUNNING
    assert running.ended_at is None
    assert running.duration_seconds is None
    blocker.release.set()
    finished = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert finished.status == JobStatus.COMPLETED
    assert finished.ended_at is not None
    assert finished.duration_seconds is not None
    assert finished.duration_seconds >= 0
    assert finished.error_message is None
    assert scheduler.get_job(job_id) == finished


def test_get_job_unknown_id(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    with pytest.raises(JobNotFoundError) as caught:
        scheduler.get_job(UNKNOWN_ID)
    assert UNKNOWN_ID in str(caught.value)
    assert isinstance(caught.value, LookupError)


def test_get_all_jobs_filters_by_status_and_lists_oldest_first(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    def fail() -> None:
        raise ValueError("x")

    scheduler = make_quiv(clock=manual_clock)
    ends = _job_ends(scheduler)
    ok = scheduler.add_task("ok", noop, interval=3600)
    scheduler.start()
    ends.wait_for(1)
    manual_clock.advance(1)
    scheduler.add_task("bad", fail, interval=3600)
    ends.wait_for(2)
    manual_clock.advance(1)
    scheduler.run_task_immediately(ok)
    ends.wait_for(3)
    blocker = Blocker()
    manual_clock.advance(1)
    scheduler.add_task("blocked", blocker, interval=3600)
    running_id = blocker.next_start()

    jobs = scheduler.get_all_jobs()
    assert [j.task_name for j in jobs] == ["ok", "bad", "ok", "blocked"]
    assert [j.started_at for j in jobs] == sorted(j.started_at for j in jobs)
    assert [j.task_name for j in scheduler.get_all_jobs(status="completed")] == ["ok", "ok"]
    assert [j.task_name for j in scheduler.get_all_jobs(status=JobStatus.FAILED)] == ["bad"]
    assert [j.id for j in scheduler.get_all_jobs(status="running")] == [running_id]
    assert scheduler.get_all_jobs(status="cancelled") == []
    blocker.release.set()


def test_get_all_jobs_with_an_unknown_status(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    with pytest.raises(ConfigurationError, match="finished"):
        scheduler.get_all_jobs(status="finished")


def test_wait_for_job_times_out(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    blocker = Blocker()
    scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()
    with pytest.raises(TimeoutError):
        scheduler.wait_for_job(job_id, timeout=0.05)
    blocker.release.set()
    assert scheduler.wait_for_job(job_id, timeout=DEADLINE).status == JobStatus.COMPLETED


# -------------------------------------------------------------------- retention
def test_finished_jobs_are_purged_once_older_than_the_retention(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock, history_retention_seconds=60)
    ends = _job_ends(scheduler)
    scheduler.add_task("t", noop, interval=3600)
    scheduler.start()
    (call,) = ends.wait_for(1)
    job_id = call.args[2].id
    assert scheduler.get_job(job_id).status == JobStatus.COMPLETED

    manual_clock.advance(59)
    assert not wait_until(lambda: not _job_exists(scheduler, job_id), timeout=0.2)
    manual_clock.advance(2)
    assert wait_until(lambda: not _job_exists(scheduler, job_id)), "the job outlived its retention"
    assert scheduler.get_all_jobs() == []


def test_retention_keeps_running_jobs_and_purges_each_finished_job_on_time(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock, history_retention_seconds=30)
    ends = _job_ends(scheduler)
    scheduler.add_task("first", noop, interval=3600)
    scheduler.start()
    first = ends.wait_for(1)[0].args[2].id
    manual_clock.advance(20)
    scheduler.add_task("second", noop, interval=3600)
    second = ends.wait_for(2)[1].args[2].id
    blocker = Blocker()
    scheduler.add_task("long", blocker, interval=3600)
    long_job = blocker.next_start()

    manual_clock.advance(11)  # first ended 31 s ago, second 11 s ago
    assert wait_until(lambda: not _job_exists(scheduler, first))
    assert _job_exists(scheduler, second)
    assert _job_exists(scheduler, long_job)
    manual_clock.advance(20)  # second ended 31 s ago; the running job is never purged
    assert wait_until(lambda: not _job_exists(scheduler, second))
    assert scheduler.get_job(long_job).status == JobStatus.RUNNING
    blocker.release.set()


def test_zero_retention_keeps_no_history(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock, history_retention_seconds=0)
    ends = _job_ends(scheduler)
    scheduler.add_task("t", noop, interval=3600)
    scheduler.start()
    job_id = ends.wait_for(1)[0].args[2].id
    manual_clock.advance(1)
    assert wait_until(lambda: not _job_exists(scheduler, job_id))


def _job_exists(scheduler: Quiv, job_id: str) -> bool:
    try:
        scheduler.get_job(job_id)
    except JobNotFoundError:
        return False
    return True


def test_job_timestamps_follow_the_clock(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    scheduler.add_task("t", blocker, interval=3600)
    start = manual_clock.now()
    scheduler.start()
    job_id = blocker.next_start()
    manual_clock.advance(12.5)
    blocker.release.set()
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert job.started_at == start
    assert job.ended_at == start + timedelta(seconds=12.5)
    assert job.duration_seconds == pytest.approx(12.5)


def test_without_a_main_loop_wait_for_job_returns_after_the_end_listeners_ran(make_quiv: QuivFactory) -> None:
    calls = Calls()
    ready = threading.Event()

    def slow_listener(*args: object) -> None:
        ready.wait(0.1)  # a listener that takes a while
        calls.record(args, {})

    scheduler = make_quiv()
    scheduler.add_listener(Event.JOB_COMPLETED, slow_listener)
    scheduler.add_listener(Event.JOB_COMPLETED, calls.sync("second"))
    blocker = Blocker()
    scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()
    blocker.release.set()
    scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert len(calls) == 2, "both JOB_COMPLETED listeners have run when wait_for_job returns"


def test_jobs_start_running_and_scheduled_is_unused(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    blocker = Blocker()
    scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()
    assert scheduler.get_job(job_id).status == JobStatus.RUNNING
    assert scheduler.get_all_jobs(status=JobStatus.SCHEDULED) == []
    blocker.release.set()


# ------------------------------------------------------ arguments that stop unpickling
_UNPICKLING_BREAKS = threading.Event()


def _rebuild(value: int) -> _Fragile:
    if _UNPICKLING_BREAKS.is_set():
        raise RuntimeError("the class changed since the task was added")
    return _Fragile(value)


class _Fragile:
    """Pickles fine; unpickling fails once ``_UNPICKLING_BREAKS`` is set."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return _rebuild, (self.value,)


@pytest.fixture
def unpickling_breaks() -> Iterator[None]:
    _UNPICKLING_BREAKS.set()
    try:
        yield
    finally:
        _UNPICKLING_BREAKS.clear()


@pytest.mark.parametrize("with_listeners", [False, True], ids=["no-listeners", "listeners"])
def test_arguments_that_cannot_be_unpickled_fail_the_job_with_a_message(
    make_quiv: QuivFactory, with_listeners: bool, request: pytest.FixtureRequest
) -> None:
    ran = Calls()

    def handler(item: _Fragile) -> None:
        ran.record((item.value,), {})

    scheduler = make_quiv(pool_size=1)
    ends = Calls()
    if with_listeners:
        for event in Event:
            scheduler.add_listener(event, ends.sync(event.value))
    task_id = scheduler.add_task("fragile", handler, interval=3600, delay=3600, args=(_Fragile(1),))
    scheduler.start()
    request.getfixturevalue("unpickling_breaks")
    scheduler.run_task_immediately(task_id)
    job_id = ""
    if with_listeners:
        failed = [c for c in ends.wait_for(3) if c.tag == "job_failed"]
        assert failed, [c.tag for c in ends.items]
        job_id = failed[0].args[2].id
    else:
        assert wait_until(lambda: bool(scheduler.get_all_jobs(status="failed")))
        job_id = scheduler.get_all_jobs(status="failed")[0].id
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert job.status == JobStatus.FAILED
    assert "unpickle" in (job.error_message or "")
    assert len(ran) == 0
    # The worker survived: the next job runs.
    after = threading.Event()
    scheduler.add_task("after", after.set, interval=3600)
    assert after.wait(DEADLINE)


def test_wait_for_job_async_waits_on_the_event_loop(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    blocker = Blocker()
    scheduler.add_task("t", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()

    async def waiter() -> tuple[Job, int]:
        ticks = 0
        waiting = asyncio.ensure_future(scheduler.wait_for_job_async(job_id, timeout=DEADLINE))
        while not waiting.done():
            ticks += 1  # the loop keeps turning while the job runs
            if ticks == 3:
                blocker.release.set()
            await asyncio.sleep(0.001)
        return waiting.result(), ticks

    job, ticks = asyncio.run(waiter())
    assert job.id == job_id
    assert job.status == JobStatus.COMPLETED
    assert ticks >= 3
