"""``timeout``: the watchdog sets the job's stop event on time, even when every worker is busy."""

from __future__ import annotations

import threading

from quiv import Event, JobStatus
from quiv.testing import ManualClock

from .support import DEADLINE, Ended, Gate, QuivFactory, at, noop


def test_the_stop_event_is_set_when_the_clock_passes_start_plus_timeout(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    cancelled: list[Event] = []
    scheduler.add_listener(Event.JOB_CANCELLED, lambda event, task, job: cancelled.append(event))
    gate = Gate()
    task_id = scheduler.add_task("slow", gate, interval=3600, timeout=30)
    assert scheduler.get_task(task_id).timeout == 30
    scheduler.start()
    job_id = gate.next_start()
    stop = gate.stops[job_id]
    clock.advance(29.5)
    assert not stop.wait(0.2), "the stop event was set before the timeout"
    clock.advance(0.5)
    assert stop.wait(DEADLINE), "the stop event was not set when the timeout passed"
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert job.status is JobStatus.CANCELLED
    assert job.error_message is not None
    assert "timed out" in job.error_message
    assert job.ended_at == at(30)
    assert ended.next().id == job_id
    assert cancelled == [Event.JOB_CANCELLED]


def test_each_job_gets_its_own_deadline(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    gate = Gate()
    scheduler.add_task("slow", gate, interval=100, timeout=30)
    scheduler.start()
    first = gate.next_start()
    clock.advance(5)
    gate.release.set()
    assert scheduler.wait_for_job(first, timeout=DEADLINE).status is JobStatus.COMPLETED
    gate.release.clear()
    clock.set(at(100))
    second = gate.next_start()
    clock.advance(29)  # 34 s after the first job started, 29 s after the second
    assert not gate.stops[second].wait(0.2), "the second job inherited the first one's deadline"
    clock.advance(1)
    assert gate.stops[second].wait(DEADLINE)
    assert "timed out" in (scheduler.wait_for_job(second, timeout=DEADLINE).error_message or "")


def test_a_timeout_fires_with_pool_size_1_and_the_pool_full(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock, pool_size=1)
    ended = Ended(scheduler)
    gate = Gate()
    slow = scheduler.add_task("slow", gate, interval=3600, timeout=10)
    waiting = scheduler.add_task("waiting", noop, interval=3600, delay=1)
    scheduler.start()
    job_id = gate.next_start()
    clock.advance(5)  # "waiting" is due but the only worker is busy
    assert scheduler.stats().free_workers == 0
    clock.advance(5)
    assert gate.stops[job_id].wait(DEADLINE), "no timeout while the pool was full"
    timed_out = ended.next()
    assert (timed_out.task_id, timed_out.status) == (slow, JobStatus.CANCELLED)
    assert "timed out" in (timed_out.error_message or "")
    late = ended.next()
    assert (late.task_id, late.started_at) == (waiting, at(10))


def test_a_timed_out_job_is_not_retried(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    gate = Gate(fail=True)  # raises once stopped: failed, but stopped, so no retry
    task_id = scheduler.add_task("slow", gate, interval=3600, timeout=10, max_retries=3, retry_backoff=1)
    scheduler.start()
    gate.next_start()
    clock.advance(10)
    job = ended.next()
    assert job.status is JobStatus.FAILED  # a handler that raises fails its job, whatever the stop event says
    assert scheduler.get_task(task_id).next_run_at == at(3600)
    clock.advance(5)
    assert ended.none_within(0.2)


def test_a_job_ending_in_time_is_not_touched(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    gate = Gate()
    scheduler.add_task("quick", gate, interval=3600, timeout=10)
    scheduler.start()
    job_id = gate.next_start()
    clock.advance(9)
    gate.release.set()
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert job.status is JobStatus.COMPLETED
    clock.advance(60)  # long past the deadline of the job that already ended
    assert not gate.stops[job_id].is_set()


def test_no_timeout_by_default(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    gate = Gate()
    task_id = scheduler.add_task("patient", gate, interval=3600)
    assert scheduler.get_task(task_id).timeout is None
    scheduler.start()
    job_id = gate.next_start()
    clock.advance(10 * 3600)
    assert not gate.stops[job_id].wait(0.2)
    gate.release.set()
    assert scheduler.wait_for_job(job_id, timeout=DEADLINE).status is JobStatus.COMPLETED


def test_the_handler_sees_the_same_event_as_a_plain_threading_event(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    seen: list[bool] = []
    started = threading.Event()
    done = threading.Event()

    def handler(_stop_event: threading.Event) -> None:
        started.set()
        seen.append(_stop_event.wait(DEADLINE))
        done.set()

    scheduler = make_quiv(clock=clock)
    scheduler.add_task("waits", handler, interval=3600, timeout=1)
    scheduler.start()
    assert started.wait(DEADLINE)
    clock.advance(1)
    assert done.wait(DEADLINE)
    assert seen == [True]
