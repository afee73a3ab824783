"""Job ends in the durable modes: written by one end writer, several per transaction.

A worker hands its finished job to the end writer and takes the next job at
once; the writer records every end waiting in one transaction. The writer is
held open here (its store call waits on an event) to show what happens
meanwhile. Runs on PostgreSQL and on a SQLite file: the same code decides
what is written on both.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from quiv import Event, JobStatus, Quiv

from .durable_support import DEADLINE, Events, Gate, eventually, shutdown_together, workers


@pytest.fixture(autouse=True)
def _stop_together() -> Iterator[None]:
    yield
    shutdown_together()


class HeldWriter:
    """Replaces a scheduler's ``finish_many`` with one that waits for ``release`` and records its batches."""

    def __init__(self, scheduler: Quiv) -> None:
        assert scheduler._durable is not None
        store = scheduler._durable.coordinator.store
        self.original: Callable[[Sequence[Any]], Any] = store.finish_many
        self.release = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        store.finish_many = self  # type: ignore[method-assign]

    def __call__(self, batch: Sequence[Any]) -> Any:
        self.batches.append([job.task_name for job, _ in batch])
        self.entered.set()
        assert self.release.wait(DEADLINE), "the test never released the end writer"
        return self.original(batch)


def test_a_worker_takes_the_next_job_while_the_last_end_is_being_written(
    durable_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """One worker: the second task's job starts while the first one's end is still unwritten."""
    ((q, _log),) = workers(make_quiv, durable_url, 1, pool_size=1)
    writer = HeldWriter(q)
    events = Events(q)
    started: queue.Queue[str] = queue.Queue()
    q.add_task("first", lambda: started.put("first"), interval=3600)
    q.add_task("second", lambda: started.put("second"), interval=3600)
    q.start()
    assert {started.get(timeout=DEADLINE), started.get(timeout=DEADLINE)} == {"first", "second"}
    assert events.count(Event.JOB_COMPLETED) == 0  # no end recorded yet: the writer is held
    writer.release.set()
    ended = events.wait_jobs(Event.JOB_COMPLETED, 2)
    assert {job.status for job in ended} == {JobStatus.COMPLETED}
    assert sorted(name for batch in writer.batches for name in batch) == ["first", "second"]


def test_ends_that_wait_together_are_written_in_one_transaction(
    durable_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """While the writer is held on the first end, the others queue up and go in the next batch."""
    ((q, _log),) = workers(make_quiv, durable_url, 1, pool_size=4)
    writer = HeldWriter(q)
    events = Events(q)
    names = [f"t{i}" for i in range(4)]
    for name in names:
        q.add_task(name, lambda: None, interval=3600)
    q.start()
    assert writer.entered.wait(DEADLINE)
    assert q._durable is not None
    coordinator = q._durable.coordinator

    def all_handlers_returned() -> bool:
        with coordinator.lock:
            return coordinator.busy == 0 and coordinator.unwritten == len(names)

    assert eventually(all_handlers_returned)
    writer.release.set()
    events.wait_jobs(Event.JOB_COMPLETED, 4)
    first = writer.batches[0]
    assert sorted(name for batch in writer.batches for name in batch) == names
    assert len(writer.batches) == (1 if len(first) == len(names) else 2), writer.batches


def test_shutdown_waits_for_the_ends_being_written(durable_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """A job whose handler returned but whose end is not written yet is recorded before shutdown returns."""
    ((q, _log),) = workers(make_quiv, durable_url, 1)
    writer = HeldWriter(q)
    task_id = q.add_task("once", lambda: None, interval=3600)
    q.start()
    assert writer.entered.wait(DEADLINE)
    stopping = threading.Thread(target=q.shutdown, kwargs={"timeout": DEADLINE})
    stopping.start()
    writer.release.set()
    stopping.join(DEADLINE)
    assert not stopping.is_alive()
    reader = make_quiv(database_url=durable_url)
    (job,) = reader.get_all_jobs(task_id=task_id)
    assert job.status is JobStatus.COMPLETED


@pytest.mark.parametrize(("notify", "threshold"), [(True, 5), (False, None)])
def test_notify_false_turns_off_prepared_statements(
    pg_url: str, make_quiv: Callable[..., Quiv], notify: bool, threshold: int | None
) -> None:
    """Behind a transaction-mode pooler (notify=False), psycopg must not prepare statements on the server."""
    ((q, _log),) = workers(make_quiv, pg_url, 1, notify=notify)
    q.add_task("tick", lambda: None, interval=3600)
    assert q._durable is not None
    with q._durable.store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        assert raw.prepare_threshold == threshold


def test_cancel_of_a_job_whose_handler_returned_is_refused(
    durable_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Its end is still being written, but there is nothing left to stop: False, as in the default mode."""
    ((q, _log),) = workers(make_quiv, durable_url, 1)
    writer = HeldWriter(q)
    events = Events(q)
    q.add_task("once", lambda: None, interval=3600)
    q.start()
    assert writer.entered.wait(DEADLINE)
    (job_id,) = [job.id for job in q.get_all_jobs(JobStatus.RUNNING)]  # still running in the table
    assert q.cancel_job(job_id) is False
    writer.release.set()
    (ended,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
    assert ended.id == job_id


def _cancel_twice(runner: Quiv, canceller: Quiv) -> tuple[bool, bool]:
    """``runner`` runs a job that ignores its stop event; ``canceller`` cancels it twice."""
    gate = Gate(ignore_stop=True)
    runner.add_task("held", gate, interval=3600)
    runner.start()
    job_id = gate.next_start()
    try:
        return canceller.cancel_job(job_id), canceller.cancel_job(job_id)
    finally:
        gate.release.set()


def test_a_second_cancel_of_a_running_job_is_refused(
    durable_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """The first cancel sets the stop event; the second has nothing to add: False, as in the default mode."""
    ((q, _log),) = workers(make_quiv, durable_url, 1)
    assert _cancel_twice(q, q) == (True, False)


def test_a_second_cancel_from_another_process_is_refused(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """Asked from a process that does not run the job, the second request is refused too."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2)
    assert _cancel_twice(a, b) == (True, False)
