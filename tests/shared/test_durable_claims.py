"""When a claimer sleeps: the next due time it is told must cover tasks running elsewhere.

After a claim, the store says how long until the next row this process could
claim comes due; the claimer sleeps that long (at most ``poll_seconds``). A
task whose run is going on cannot be claimed now, but its next slot is known:
the claimer must wake for it. Otherwise a process whose tasks are all running
in another process sleeps a whole poll interval, wakes just after each slot
the other process took, and is locked out of the schedule for good.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from quiv import Event, Quiv
from quiv._durable.store import Claim

from .durable_support import DEADLINE, Events, Gate, shutdown_together, workers


@pytest.fixture(autouse=True)
def _stop_together() -> Iterator[None]:
    yield
    shutdown_together()


def _claim_while_running(make_quiv: Callable[..., Quiv], url: str, *, paused: bool) -> Claim:
    """Start a task every 60 s, hold its first run, optionally pause it, and claim meanwhile."""
    ((q, _log),) = workers(make_quiv, url, 1, poll_seconds=3600)
    gate = Gate()
    task = q.add_task("tick", gate, interval=60, fixed_interval=True)
    q.start()
    gate.next_start()
    if paused:
        q.pause_task(task)
    assert q._durable is not None
    coordinator = q._durable.coordinator
    try:
        return coordinator.store.claim(coordinator.worker_id, dict(coordinator.local), 4)
    finally:
        gate.release.set()


def test_a_claim_that_finds_the_task_running_waits_for_its_next_slot(
    durable_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """The task runs (its next slot 60 s on): a claim takes nothing and says to wake in about 60 s."""
    claim = _claim_while_running(make_quiv, durable_url, paused=False)
    assert claim.started == []
    assert claim.wait is not None, "a running task's next slot was not counted: the claimer would poll"
    assert 55.0 < claim.wait <= 60.0


def test_a_paused_task_running_its_last_run_is_not_waited_for(
    durable_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Paused while its run goes on: the task has no next slot to wake for."""
    claim = _claim_while_running(make_quiv, durable_url, paused=True)
    assert claim.started == []
    assert claim.wait is None


def test_two_instances_keep_sharing_a_task_without_polling(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Two instances, one task every 0.1 s, a poll floor of an hour: both keep taking slots.

    Each instance must wake for every slot, also after a claim that found the
    other one running it. Before, the instance that lost such a race slept
    for the whole poll interval, and the other ran every slot after it.
    """
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, poll_seconds=3600)
    events = Events(a, b, events=(Event.JOB_COMPLETED,))
    ran = threading.Event()
    for scheduler in (a, b):
        scheduler.add_task("tick", ran.set, interval=0.1, fixed_interval=True)
    a.start()
    b.start()
    jobs = events.wait_jobs(Event.JOB_COMPLETED, 50, timeout=DEADLINE * 3)
    late = {job.worker for job in sorted(jobs, key=lambda job: job.scheduled_for or job.started_at)[10:]}
    assert late == {a.worker_id, b.worker_id}, f"only {late} ran the last 40 slots"


class Claims:
    """Records the ``wait`` of each claim a scheduler makes, in order."""

    def __init__(self, scheduler: Quiv) -> None:
        assert scheduler._durable is not None
        store = scheduler._durable.coordinator.store
        self.original: Callable[..., Any] = store.claim
        self.waits: queue.Queue[float | None] = queue.Queue()
        store.claim = self  # type: ignore[method-assign,assignment]

    def __call__(self, *args: Any) -> Any:
        claim = self.original(*args)
        self.waits.put(claim.wait)
        return claim

    def until_asleep(self) -> None:
        """Wait for a claim that found nothing to wake for (the claimer then sleeps a whole poll)."""
        deadline = DEADLINE
        while True:
            if self.waits.get(timeout=deadline) is None:
                return

    def claimed_again(self) -> bool:
        try:
            self.waits.get(timeout=DEADLINE)
        except queue.Empty:
            return False
        return True


def test_the_end_of_a_run_that_overran_its_slot_wakes_the_other_instances(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """A run outlasts its next slot: the other instance, which then had no due time to wake for,
    sleeps its poll (an hour here); the run's end wakes it (NOTIFY) to take its share again."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, poll_seconds=3600)
    gate = Gate()
    for scheduler in (a, b):
        scheduler.add_task("slow", gate, interval=0.3, fixed_interval=True)
    claims = {scheduler: Claims(scheduler) for scheduler in (a, b)}
    events = Events(a, b, events=(Event.JOB_COMPLETED,))
    a.start()
    b.start()
    job_id = gate.next_start()
    assert a._durable is not None
    other = b if job_id in a._durable.coordinator.live else a
    claims[other].until_asleep()  # woke for the next slot, found the run still going
    while not claims[other].waits.empty():
        claims[other].waits.get()
    gate.release.set()
    assert claims[other].claimed_again(), "the end of the overrunning run did not wake the other instance"
    assert events.wait_job(Event.JOB_COMPLETED, job_id).worker != other.worker_id
