"""``wait_for_job``, ``wait_for_job_async`` and ``wait_for_task``: woken when the job ends, no polling."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from quiv import Job, JobNotFoundError, JobStatus, Quiv, TaskNotFoundError
from quiv.testing import ManualClock

from .support import DEADLINE, Gate, QuivFactory, at, noop


class Waiter(threading.Thread):
    """Calls a blocking ``wait`` on its own thread and keeps its result, error and CPU time."""

    def __init__(self, wait: Any) -> None:
        super().__init__(daemon=True)
        self._wait = wait
        self.result: Job | None = None
        self.error: BaseException | None = None
        self.cpu = 0.0
        self.returned_at = 0.0

    def run(self) -> None:
        cpu = time.thread_time()
        try:
            self.result = self._wait()
        except BaseException as exc:
            self.error = exc
        finally:
            self.cpu = time.thread_time() - cpu
            self.returned_at = time.monotonic()


def running_job(make_quiv: QuivFactory, clock: ManualClock) -> tuple[Quiv, Gate, str, str]:
    scheduler = make_quiv(clock=clock)
    gate = Gate()
    task_id = scheduler.add_task("t", gate, interval=3600)
    scheduler.start()
    return scheduler, gate, task_id, gate.next_start()


def test_wait_for_job_returns_the_job_when_it_ends(
    make_quiv: QuivFactory, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduler, gate, task_id, job_id = running_job(make_quiv, clock)
    reads = [0]
    read_cpu = [0.0]
    get_job = scheduler.get_job

    def counting_get_job(job_id: str) -> Job:
        reads[0] += 1
        cpu = time.thread_time()
        try:
            return get_job(job_id)
        finally:
            read_cpu[0] += time.thread_time() - cpu

    monkeypatch.setattr(scheduler, "get_job", counting_get_job)
    waiter = Waiter(lambda: scheduler.wait_for_job(job_id, timeout=DEADLINE))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive(), "wait_for_job returned while the job was still running"
    clock.advance(7)
    released = time.monotonic()
    gate.release.set()
    waiter.join(DEADLINE)
    assert not waiter.is_alive()
    assert waiter.error is None
    assert waiter.result is not None
    assert (waiter.result.id, waiter.result.task_id, waiter.result.status) == (
        job_id,
        task_id,
        JobStatus.COMPLETED,
    )
    assert waiter.result.ended_at == at(7)
    assert waiter.returned_at - released < 1.0, "the waiter was not woken promptly"
    # No polling: the final state comes with the wake-up (no read at all), and the
    # blocked thread burnt no CPU.
    assert reads[0] == 0
    assert waiter.cpu - read_cpu[0] < 0.05, f"the waiting thread used {waiter.cpu - read_cpu[0]:.3f} s of CPU"


def test_wait_for_job_times_out(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler, gate, _, job_id = running_job(make_quiv, clock)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=job_id):
        scheduler.wait_for_job(job_id, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < DEADLINE
    gate.release.set()
    assert scheduler.wait_for_job(job_id, timeout=DEADLINE).status is JobStatus.COMPLETED


def test_wait_for_a_job_that_already_ended(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler, gate, _, job_id = running_job(make_quiv, clock)
    gate.release.set()
    scheduler.wait_for_job(job_id, timeout=DEADLINE)
    started = time.monotonic()
    assert scheduler.wait_for_job(job_id, timeout=0).id == job_id
    assert time.monotonic() - started < 1.0


def test_wait_for_an_unknown_job(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    scheduler.add_task("t", noop, interval=60)
    with pytest.raises(JobNotFoundError):
        scheduler.wait_for_job("no-such-job", timeout=1)


def test_wait_for_job_async_inside_asyncio_run(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler, gate, _, job_id = running_job(make_quiv, clock)

    async def main() -> tuple[Job, int]:
        ticks = 0
        stop_ticking = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop_ticking.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, gate.release.set)  # the job ends while the loop waits for it
        try:
            job = await scheduler.wait_for_job_async(job_id, timeout=DEADLINE)
        finally:
            stop_ticking.set()
            await ticking
        return job, ticks

    job, ticks = asyncio.run(main())
    assert (job.id, job.status) == (job_id, JobStatus.COMPLETED)
    assert ticks >= 5, "the event loop was blocked while waiting"


def test_wait_for_job_async_times_out(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler, gate, _, job_id = running_job(make_quiv, clock)

    async def main() -> None:
        with pytest.raises(TimeoutError, match=job_id):
            await scheduler.wait_for_job_async(job_id, timeout=0.1)

    asyncio.run(main())
    gate.release.set()
    assert scheduler.wait_for_job(job_id, timeout=DEADLINE).status is JobStatus.COMPLETED


def test_wait_for_task_waits_for_its_next_job(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, interval=60, delay=60)
    other = scheduler.add_task("other", noop, interval=30, delay=30)
    scheduler.start()
    waiter = Waiter(lambda: scheduler.wait_for_task(task_id, timeout=DEADLINE))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    clock.advance(30)  # only "other" runs
    waiter.join(0.2)
    assert waiter.is_alive(), "wait_for_task returned for another task's job"
    clock.advance(30)
    waiter.join(DEADLINE)
    assert waiter.error is None
    assert waiter.result is not None
    assert (waiter.result.task_id, waiter.result.started_at) == (task_id, at(60))
    assert waiter.result.task_id != other


def test_wait_for_task_with_a_running_job_returns_that_job(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler, gate, task_id, job_id = running_job(make_quiv, clock)
    waiter = Waiter(lambda: scheduler.wait_for_task(task_id, timeout=DEADLINE))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    gate.release.set()
    waiter.join(DEADLINE)
    assert waiter.result is not None
    assert waiter.result.id == job_id


def test_wait_for_task_times_out(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, interval=60, delay=60)
    scheduler.start()
    with pytest.raises(TimeoutError, match=task_id):
        scheduler.wait_for_task(task_id, timeout=0.1)


def test_wait_for_an_unknown_task(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    with pytest.raises(TaskNotFoundError):
        scheduler.wait_for_task("no-such-task", timeout=1)
