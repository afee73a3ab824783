"""When jobs run: fixed_interval, backpressure, the late-start warning, wake-ups, timezone."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest

from quiv import Event, TaskStatus
from quiv.testing import ManualClock

from .support import DEADLINE, EPOCH, Blocker, Calls, QuivFactory, SilentClock

LATE = "busy"  # the late-start warning says the pool was busy


def noop() -> None:
    pass


# -------------------------------------------------------------- fixed_interval
@pytest.mark.parametrize(
    ("fixed_interval", "run_seconds", "next_after_start"),
    [
        (True, 3, 10),  # on the cadence: start + interval
        (True, 25, 30),  # a long run: missed points (10, 20) skipped, next point of the cadence
        (False, 3, 13),  # interval after completion
        (False, 25, 35),
    ],
)
def test_next_run_after_a_job(
    make_quiv: QuivFactory,
    manual_clock: ManualClock,
    fixed_interval: bool,
    run_seconds: float,
    next_after_start: float,
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=10, fixed_interval=fixed_interval)
    scheduler.start()
    job_id = blocker.next_start()
    manual_clock.advance(run_seconds)
    blocker.release.set()
    scheduler.wait_for_job(job_id, timeout=DEADLINE)
    task = scheduler.get_task(task_id)
    assert task.status == TaskStatus.ACTIVE
    assert task.next_run_at == EPOCH + timedelta(seconds=next_after_start)


def test_a_run_ending_exactly_on_the_cadence_is_followed_at_once(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    scheduler.add_task("t", blocker, interval=10)
    scheduler.start()
    first = blocker.next_start()
    manual_clock.advance(20)
    blocker.release.set()
    scheduler.wait_for_job(first, timeout=DEADLINE)
    second = blocker.next_start()
    assert scheduler.get_job(second).started_at == EPOCH + timedelta(seconds=20)


def test_fixed_interval_cadence_is_anchored_on_the_due_time_not_the_pickup(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    task_id = scheduler.add_task("t", noop, interval=10, delay=10)
    scheduler.start()
    manual_clock.advance(10.7)  # the run due at +10 is picked up at +10.7
    ends.wait_for(1)
    assert scheduler.get_task(task_id).next_run_at == EPOCH + timedelta(seconds=20)
    manual_clock.advance(9.8)  # +20.5
    ends.wait_for(2)
    assert scheduler.get_task(task_id).next_run_at == EPOCH + timedelta(seconds=30)


def test_fixed_interval_false_counts_from_completion(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=10, fixed_interval=False)
    scheduler.start()
    first = blocker.next_start()
    manual_clock.advance(4)
    blocker.release.set()
    scheduler.wait_for_job(first, timeout=DEADLINE)
    blocker.release.clear()
    manual_clock.advance(9.5)
    assert blocker.no_start_within(0.2), "the next run is 10 s after completion, not after start"
    manual_clock.advance(0.5)
    second = blocker.next_start()
    job = scheduler.get_job(second)
    assert job.started_at == EPOCH + timedelta(seconds=14)
    blocker.release.set()
    assert scheduler.get_task(task_id).interval_seconds == 10


# ---------------------------------------------------------------- backpressure
def test_a_full_pool_makes_due_tasks_wait_then_run(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock, pool_size=1)
    blocker = Blocker()
    scheduler.add_task("blocker", blocker, interval=3600)
    scheduler.start()
    blocked_job = blocker.next_start()
    ran = Calls()
    scheduler.add_task("waiting", ran.sync(), interval=3600)
    with pytest.raises(AssertionError):
        ran.wait_for(1, timeout=0.3)
    assert [j.id for j in scheduler.get_all_jobs()] == [blocked_job], "nothing is queued beyond the pool"
    blocker.release.set()
    ran.wait_for(1)


def test_pool_size_jobs_run_at_the_same_time(make_quiv: QuivFactory) -> None:
    barrier = threading.Barrier(3)
    finished = Calls()

    def handler() -> None:
        barrier.wait(DEADLINE)
        finished.record((), {})

    scheduler = make_quiv(pool_size=3)
    for i in range(3):
        scheduler.add_task(f"t{i}", handler, interval=3600)
    scheduler.start()
    assert len(finished.wait_for(3)) == 3


def test_a_task_never_runs_concurrently_with_itself(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock, pool_size=10)
    blocker = Blocker()
    task_id = scheduler.add_task("t", blocker, interval=1)
    scheduler.start()
    first = blocker.next_start()
    for _ in range(5):
        manual_clock.advance(1)  # due again and again while it runs
    scheduler.run_task_immediately(task_id)
    assert blocker.no_start_within(0.3)
    assert [j.id for j in scheduler.get_all_jobs(status="running")] == [first]
    blocker.release.set()
    blocker.next_start()
    assert blocker.max_running == 1


# -------------------------------------------------------- late-start warning
def _late_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and LATE in r.getMessage()]


def test_a_job_started_late_because_the_pool_was_busy_logs_a_warning(
    make_quiv: QuivFactory, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="Quiv")
    scheduler = make_quiv(clock=manual_clock, pool_size=1)
    blocker = Blocker()
    scheduler.add_task("hog", blocker, interval=3600)
    scheduler.start()
    blocker.next_start()
    waited = Calls()
    scheduler.add_task("starved", waited.sync(), interval=3600)
    manual_clock.advance(2.5)
    blocker.release.set()
    waited.wait_for(1)
    (record,) = _late_warnings(caplog)
    message = record.getMessage()
    assert "starved" in message
    assert "2.5" in message, f"the warning gives the delay: {message!r}"


def test_a_task_becoming_due_while_the_pool_is_busy_is_warned_about_too(
    make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Real time passes without waking anyone (``SilentClock``): the warning must not depend on wake-ups."""
    caplog.set_level(logging.WARNING, logger="Quiv")
    clock = SilentClock()
    scheduler = make_quiv(clock=clock, pool_size=1)
    blocker = Blocker()
    scheduler.add_task("hog", blocker, interval=3600)
    scheduler.start()
    blocker.next_start()
    waited = Calls()
    scheduler.add_task("starved", waited.sync(), interval=3600, delay=1)
    clock.advance(4)  # "starved" became due at +1 while "hog" held the only worker
    blocker.release.set()
    waited.wait_for(1)
    (record,) = _late_warnings(caplog)
    assert "starved" in record.getMessage()
    assert "3.0" in record.getMessage()


def test_a_short_wait_for_a_worker_is_not_warned_about(
    make_quiv: QuivFactory, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="Quiv")
    scheduler = make_quiv(clock=manual_clock, pool_size=1)
    blocker = Blocker()
    scheduler.add_task("hog", blocker, interval=3600)
    scheduler.start()
    blocker.next_start()
    waited = Calls()
    scheduler.add_task("patient", waited.sync(), interval=3600)
    manual_clock.advance(0.5)
    blocker.release.set()
    waited.wait_for(1)
    assert _late_warnings(caplog) == []


def test_a_late_start_with_free_workers_is_not_blamed_on_the_pool(
    make_quiv: QuivFactory, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="Quiv")
    scheduler = make_quiv(clock=manual_clock, pool_size=2)
    ran = Calls()
    scheduler.add_task("t", ran.sync(), interval=3600, delay=1)
    scheduler.start()
    manual_clock.advance(5)  # the clock jumps past the due time; the pool is idle
    ran.wait_for(1)
    assert _late_warnings(caplog) == []


# ------------------------------------------------------------------- timezone
@pytest.mark.parametrize(("zone", "offset"), [("Asia/Tokyo", "+09:00"), ("UTC", "+00:00")])
def test_timezone_only_changes_times_in_log_lines(
    make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture, zone: str, offset: str
) -> None:
    caplog.set_level(logging.WARNING, logger="Quiv")
    clock = ManualClock(start=EPOCH)
    scheduler = make_quiv(clock=clock, pool_size=1, timezone=zone)
    blocker = Blocker()
    scheduler.add_task("hog", blocker, interval=3600)
    scheduler.start()
    hog_job = blocker.next_start()
    waited = Calls()
    task_id = scheduler.add_task("starved", waited.sync(), interval=3600, delay=60)
    assert scheduler.get_task(task_id).next_run_at == datetime(2024, 1, 1, 0, 1, tzinfo=timezone.utc)
    clock.advance(65)
    blocker.release.set()
    waited.wait_for(1)
    job = scheduler.wait_for_job(hog_job, timeout=DEADLINE)
    assert job.started_at == EPOCH
    assert job.started_at.utcoffset() == timedelta(0)
    (record,) = _late_warnings(caplog)
    assert offset in record.getMessage(), record.getMessage()


# ------------------------------------------------------------------- wake-ups
def test_advancing_the_clock_wakes_the_scheduler_at_once(
    make_quiv: QuivFactory, manual_clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    ran = Calls()
    scheduler.add_task("t", ran.sync(), interval=3600, delay=3600)
    scheduler.start()
    manual_clock.advance(3600)
    ran.wait_for(1)


def test_a_job_due_soon_starts_on_time_with_the_system_clock(make_quiv: QuivFactory) -> None:
    """No polling tick: the scheduler sleeps until the due time, then starts within milliseconds."""
    started: list[datetime] = []
    ran = threading.Event()

    def handler() -> None:
        started.append(datetime.now(timezone.utc))
        ran.set()

    scheduler = make_quiv()
    scheduler.start()
    task_id = scheduler.add_task("soon", handler, interval=3600, delay=0.3)
    due = scheduler.get_task(task_id).next_run_at
    assert ran.wait(DEADLINE)
    lateness = (started[0] - due).total_seconds()
    assert -0.01 <= lateness < 0.15, f"started {lateness:.3f} s after it was due"


def test_a_new_earlier_task_wakes_a_scheduler_sleeping_for_a_later_one(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.add_task("much-later", noop, interval=3600, delay=3600)
    scheduler.start()
    ran = threading.Event()
    scheduler.add_task("now", ran.set, interval=3600)
    assert ran.wait(DEADLINE)


def test_late_start_warnings_are_limited_to_one_a_second_and_count_the_rest(
    make_quiv: QuivFactory, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="Quiv")
    scheduler = make_quiv(clock=manual_clock, pool_size=1)
    hog = Blocker()
    scheduler.add_task("hog", hog, interval=3600)
    scheduler.start()
    hog.next_start()
    ran = Calls()
    for name in ("a", "b", "c"):
        scheduler.add_task(name, ran.sync(name), interval=3600)
    manual_clock.advance(2)
    hog.release.set()
    ran.wait_for(3)
    assert len(_late_warnings(caplog)) == 1, "three late starts in the same second: one line"

    second_hog = Blocker()
    scheduler.add_task("hog-2", second_hog, interval=3600)
    second_hog.next_start()
    scheduler.add_task("d", ran.sync("d"), interval=3600)
    manual_clock.advance(2)
    second_hog.release.set()
    ran.wait_for(4)
    first, second = _late_warnings(caplog)
    assert "'a'" in first.getMessage()
    assert "'d'" in second.getMessage()
    assert "2 more" in second.getMessage(), second.getMessage()


def test_workers_are_named_and_never_more_than_pool_size(make_quiv: QuivFactory) -> None:
    names: set[str] = set()
    lock = threading.Lock()
    done = Calls()

    def handler() -> None:
        with lock:
            names.add(threading.current_thread().name)
        done.record((), {})

    scheduler = make_quiv(pool_size=2)
    for i in range(8):
        scheduler.add_task(f"t{i}", handler, interval=3600)
    scheduler.start()
    done.wait_for(8)
    assert 1 <= len(names) <= 2
    assert all(name.startswith("quiv-worker-") for name in names), names
