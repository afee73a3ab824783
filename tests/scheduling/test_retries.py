"""``max_retries``/``retry_backoff``: each attempt is a job, linked to the first; no retry after a cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from quiv import JobStatus, TaskNotFoundError
from quiv.testing import ManualClock

from .support import DEADLINE, Ended, Gate, QuivFactory, at


def failing(times: int) -> Callable[[], None]:
    """A handler that raises on its first ``times`` calls and succeeds afterwards."""
    calls = [0]
    lock = threading.Lock()

    def handler() -> None:
        with lock:
            calls[0] += 1
            call = calls[0]
        if call <= times:
            raise ValueError(f"attempt {call} failed")

    return handler


def test_every_attempt_is_its_own_job_linked_to_the_first(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("flaky", failing(100), interval=3600, max_retries=2, retry_backoff=10)
    task = scheduler.get_task(task_id)
    assert (task.max_retries, task.retry_backoff) == (2, 10)
    scheduler.start()

    first = ended.next()
    assert (first.attempt, first.retry_of, first.status) == (1, None, JobStatus.FAILED)
    assert first.error_message == "ValueError: attempt 1 failed"
    assert scheduler.get_task(task_id).next_run_at == at(10)  # backoff * 2**0

    clock.advance(10)
    second = ended.next()
    assert (second.attempt, second.retry_of, second.status) == (2, first.id, JobStatus.FAILED)
    assert second.started_at == at(10)
    assert scheduler.get_task(task_id).next_run_at == at(30)  # backoff * 2**1 after the failure

    clock.advance(20)
    third = ended.next()
    assert (third.attempt, third.retry_of, third.status) == (3, first.id, JobStatus.FAILED)
    assert third.started_at == at(30)
    # No retry left: back on the cadence of the first attempt's due time.
    assert scheduler.get_task(task_id).next_run_at == at(3600)

    jobs = scheduler.get_all_jobs()
    assert [(j.id, j.attempt, j.retry_of) for j in jobs] == [
        (first.id, 1, None),
        (second.id, 2, first.id),
        (third.id, 3, first.id),
    ]
    assert len({j.id for j in jobs}) == 3

    clock.set(at(3600))
    fresh = ended.next()
    assert (fresh.attempt, fresh.retry_of) == (1, None), "the next regular run starts a new chain"


def test_backoff_is_counted_from_the_end_of_each_failed_attempt(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    """Each attempt takes 5 s (the handler moves the clock); backoff 2 s doubles: 2, 4, 8."""

    def slow_failure() -> None:
        clock.advance(5)
        raise RuntimeError("still broken")

    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("slow", slow_failure, interval=3600, max_retries=3, retry_backoff=2)
    scheduler.start()
    expected_starts = [0, 7, 16, 29]  # start, +5 run +2 wait, +5 +4, +5 +8
    for attempt, start in enumerate(expected_starts, 1):
        job = ended.next()
        assert (job.attempt, job.started_at, job.ended_at) == (attempt, at(start), at(start + 5))
        if attempt < len(expected_starts):
            retry_at = expected_starts[attempt]
            assert scheduler.get_task(task_id).next_run_at == at(retry_at)
            clock.set(at(retry_at))
    assert scheduler.get_task(task_id).next_run_at == at(3600)


def test_a_retry_that_succeeds_ends_the_chain(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("flaky", failing(1), interval=3600, max_retries=5, retry_backoff=1)
    scheduler.start()
    assert ended.next().status is JobStatus.FAILED
    clock.advance(1)
    second = ended.next()
    assert (second.attempt, second.status) == (2, JobStatus.COMPLETED)
    assert scheduler.get_task(task_id).next_run_at == at(3600)
    assert [j.attempt for j in scheduler.get_all_jobs()] == [1, 2]


def test_no_retries_by_default(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("fails", failing(100), interval=3600)
    assert scheduler.get_task(task_id).max_retries == 0
    scheduler.start()
    assert ended.next().status is JobStatus.FAILED
    assert scheduler.get_task(task_id).next_run_at == at(3600)


def test_a_zero_backoff_retries_at_once(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    scheduler.add_task("eager", failing(2), interval=3600, max_retries=2, retry_backoff=0)
    scheduler.start()
    jobs = [ended.next() for _ in range(3)]
    assert [(j.attempt, j.status, j.started_at) for j in jobs] == [
        (1, JobStatus.FAILED, at(0)),
        (2, JobStatus.FAILED, at(0)),
        (3, JobStatus.COMPLETED, at(0)),
    ]


@pytest.mark.parametrize("raises", [False, True], ids=["returns", "raises-after-stop"])
def test_a_cancelled_job_is_never_retried(make_quiv: QuivFactory, clock: ManualClock, raises: bool) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    gate = Gate(fail=raises)
    task_id = scheduler.add_task("cancel me", gate, interval=3600, max_retries=3, retry_backoff=1)
    scheduler.start()
    job_id = gate.next_start()
    assert scheduler.cancel_job(job_id)
    job = ended.next()
    assert job.id == job_id
    assert job.status is (JobStatus.FAILED if raises else JobStatus.CANCELLED)
    assert scheduler.get_task(task_id).next_run_at == at(3600), "a retry was scheduled after a cancel"
    clock.advance(1)
    assert ended.none_within(0.2)
    assert [j.id for j in scheduler.get_all_jobs()] == [job_id]


def test_a_removed_task_is_not_retried(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    gate = Gate(fail=True)
    task_id = scheduler.add_task("removed", gate, interval=3600, max_retries=3, retry_backoff=1)
    scheduler.start()
    gate.next_start()
    scheduler.remove_task(task_id)
    assert ended.next().attempt == 1
    clock.advance(10)
    assert ended.none_within(0.2)
    assert len(scheduler.get_all_jobs()) == 1


@pytest.mark.parametrize("kind", ["run_at", "run_once"])
def test_a_run_once_task_is_deleted_only_after_its_final_attempt(
    make_quiv: QuivFactory, clock: ManualClock, kind: str
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    schedule: dict[str, object] = (
        {"run_at": at(0)} if kind == "run_at" else {"interval": 60, "run_once": True}
    )
    task_id = scheduler.add_task("one-shot", failing(100), max_retries=2, retry_backoff=1, **schedule)  # type: ignore[arg-type]
    scheduler.start()
    assert ended.next().attempt == 1
    assert scheduler.get_task(task_id).next_run_at == at(1), "deleted after the first attempt"
    clock.advance(1)
    assert ended.next().attempt == 2
    assert scheduler.get_task(task_id).next_run_at == at(3)
    clock.advance(2)
    last = ended.next()
    assert (last.attempt, last.status) == (3, JobStatus.FAILED)
    with pytest.raises(TaskNotFoundError):
        scheduler.get_task(task_id)
    assert [j.attempt for j in scheduler.get_all_jobs()] == [1, 2, 3]


def test_a_run_once_task_that_succeeds_on_a_retry_is_deleted_then(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("one-shot", failing(1), run_at=at(0), max_retries=5, retry_backoff=1)
    scheduler.start()
    assert ended.next().status is JobStatus.FAILED
    scheduler.get_task(task_id)  # still there, waiting for its retry
    clock.advance(1)
    assert ended.next(timeout=DEADLINE).status is JobStatus.COMPLETED
    with pytest.raises(TaskNotFoundError):
        scheduler.get_task(task_id)


def test_a_late_retry_is_not_skipped_by_misfire_grace(make_quiv: QuivFactory, clock: ManualClock) -> None:
    """misfire_grace drops late scheduled runs, never a pending retry."""
    scheduler = make_quiv(clock=clock, pool_size=1)
    ended = Ended(scheduler)
    hog = Gate()
    task_id = scheduler.add_task(
        "flaky", failing(1), interval=3600, max_retries=1, retry_backoff=1, misfire_grace=0
    )
    scheduler.add_task("hog", hog, interval=3600, delay=0.5)
    scheduler.start()
    assert ended.next().attempt == 1  # fails at 0; the retry is due at 1
    clock.advance(0.5)
    hog_job = hog.next_start()
    clock.advance(5)  # the retry is 4.5 s late when the hog lets go
    hog.release.set()
    assert ended.next().id == hog_job
    retry = ended.next()
    assert (retry.task_id, retry.attempt, retry.status, retry.started_at) == (
        task_id,
        2,
        JobStatus.COMPLETED,
        at(5.5),
    )
