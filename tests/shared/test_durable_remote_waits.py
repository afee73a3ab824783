"""Waiting for a job that runs in another process: woken by its end, not by reading the row over and over.

``wait_for_job`` and ``wait_for_task`` in instance A on a job running in
instance B mark the task as awaited; the end of a job of an awaited task
sends ``NOTIFY quiv_ended``, which wakes A's waiter at once. A reads the
shared tables again only then, and at the floor of ``poll_seconds`` (set to
30 s here, so any read in between would come from polling). With
``notify=False`` there is no LISTEN, and the waiter reads the row every 0.1 s
as before.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from quiv import Event, Job, JobStatus, Quiv, TaskNotFoundError
from quiv._durable.schema import SCHEMA_VERSION

from .durable_support import DEADLINE, Gate, shutdown_together, sql, wait_for_listeners, workers

#: How long a job is held after its waiter is in place: a polling waiter reads the row 5 times meanwhile.
HOLD = 0.5


@pytest.fixture(autouse=True)
def _stop_together() -> Iterator[None]:
    yield
    shutdown_together()


class Reads:
    """Counts the calls a scheduler's store gets to the named read methods."""

    def __init__(self, scheduler: Quiv, names: Sequence[str]) -> None:
        assert scheduler._durable is not None
        store = scheduler._durable.coordinator.store
        self.count = 0
        for name in names:
            setattr(store, name, self._counting(getattr(store, name)))

    def _counting(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return method(*args, **kwargs)

        return counted


def _awaited(conninfo: str, task_id: str) -> bool:
    rows = sql(conninfo, "SELECT awaited_until > 0 FROM quiv_tasks WHERE id = %s", (task_id,))
    return bool(rows and rows[0][0])


def _wait_for_mark(conninfo: str, task_id: str) -> None:
    deadline = threading.Event()
    for _ in range(int(DEADLINE / 0.01)):
        if _awaited(conninfo, task_id):
            return
        deadline.wait(0.01)
    raise AssertionError("the waiter never marked the task as awaited")


def _in_thread(call: Callable[[], Job]) -> tuple[threading.Thread, list[Job | BaseException]]:
    out: list[Job | BaseException] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # examined by the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _remote_wait(
    make_quiv: Callable[..., Quiv],
    pg_url: str,
    pg_conninfo: str,
    reads_of: Sequence[str],
    wait: Callable[[Quiv, str, str], Job],
) -> tuple[list[Job | BaseException], str, int]:
    """B runs a job, held; A waits for it with ``wait(a, task_id, job_id)``, counting its reads.

    The job is released ``HOLD`` s after A marked the task as awaited. Returns
    what the wait gave, the job's id and how many reads of ``reads_of`` A made.
    """
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, poll_seconds=30)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600)
    a.start()
    b.start()
    wait_for_listeners(pg_conninfo, 2)
    job_id = gate.next_start()
    reads = Reads(a, reads_of)
    thread, out = _in_thread(lambda: wait(a, task_id, job_id))
    _wait_for_mark(pg_conninfo, task_id)
    threading.Event().wait(HOLD)  # a polling waiter would read meanwhile
    gate.release.set()
    thread.join(DEADLINE)
    return out, job_id, reads.count


def test_wait_for_job_in_another_instance_is_woken_by_its_end(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    out, job_id, reads = _remote_wait(
        make_quiv, pg_url, pg_conninfo, ["get_job"], lambda a, _task, job: a.wait_for_job(job, DEADLINE)
    )
    assert [(j.id, j.status) for j in out if isinstance(j, Job)] == [(job_id, JobStatus.COMPLETED)], out
    assert reads <= 3, f"the waiter read the job {reads} times: it polled"


def test_wait_for_task_in_another_instance_is_woken_by_its_end(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    out, job_id, reads = _remote_wait(
        make_quiv,
        pg_url,
        pg_conninfo,
        ["list_jobs", "task_view"],
        lambda a, task, _job: a.wait_for_task(task, DEADLINE),
    )
    assert [(j.id, j.status) for j in out if isinstance(j, Job)] == [(job_id, JobStatus.COMPLETED)], out
    assert reads <= 6, f"the waiter read the jobs {reads} times: it polled"


def test_a_removal_elsewhere_wakes_wait_for_task_at_once(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, poll_seconds=30)
    task_id = b.add_task("work", lambda: None, interval=3600, delay=3600)
    a.start()
    b.start()
    wait_for_listeners(pg_conninfo, 2)
    thread, out = _in_thread(lambda: a.wait_for_task(task_id, timeout=DEADLINE * 2))
    _wait_for_mark(pg_conninfo, task_id)
    b.remove_task(task_id)
    thread.join(DEADLINE)  # less than the poll floor: only the notification can end it this soon
    assert not thread.is_alive(), "wait_for_task still waits on a task removed elsewhere"
    assert [type(e) for e in out] == [TaskNotFoundError]


def test_an_abandoned_job_wakes_its_waiter_in_another_instance(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """B's worker row is deleted (as when presumed dead): a sweep abandons the job, A's wait returns it."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, poll_seconds=30)
    gate = Gate(ignore_stop=True)
    task_id = b.add_task("work", gate, interval=3600)
    a.start()
    b.start()
    wait_for_listeners(pg_conninfo, 2)
    job_id = gate.next_start()
    thread, out = _in_thread(lambda: a.wait_for_job(job_id, timeout=DEADLINE))
    _wait_for_mark(pg_conninfo, task_id)
    sql(pg_conninfo, "DELETE FROM quiv_workers WHERE id = %s", (b.worker_id,))
    thread.join(DEADLINE)
    gate.release.set()
    assert [(j.id, j.status) for j in out if isinstance(j, Job)] == [(job_id, JobStatus.ABANDONED)], out


def test_without_notify_a_remote_wait_still_ends(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, notify=False)
    gate = Gate()
    b.add_task("work", gate, interval=3600)
    a.start()
    b.start()
    job_id = gate.next_start()
    thread, out = _in_thread(lambda: a.wait_for_job(job_id, timeout=DEADLINE))
    gate.release.set()
    thread.join(DEADLINE)
    assert [(j.id, j.status) for j in out if isinstance(j, Job)] == [(job_id, JobStatus.COMPLETED)], out


def test_a_version_1_schema_is_upgraded_with_the_awaited_column(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Tables of schema 1 (no ``awaited_until``) with a task in them: the next start upgrades them."""
    assert SCHEMA_VERSION == 2
    ((first, _),) = workers(make_quiv, pg_url, 1)
    task_id = first.add_task("kept", lambda: None, interval=3600, delay=3600)
    first.shutdown()
    sql(pg_conninfo, "ALTER TABLE quiv_tasks DROP COLUMN awaited_until")
    sql(pg_conninfo, "UPDATE quiv_meta SET value = '1' WHERE key = 'schema_version'")
    ((second, _),) = workers(make_quiv, pg_url, 1)
    second.add_task("kept", lambda: None, interval=3600, delay=3600)
    second.start()
    assert second.get_task(task_id).task_name == "kept"
    assert sql(pg_conninfo, "SELECT value FROM quiv_meta WHERE key = 'schema_version'") == [("2",)]
    assert sql(pg_conninfo, "SELECT awaited_until FROM quiv_tasks WHERE id = %s", (task_id,)) == [(0.0,)]


def test_a_version_1_sqlite_file_is_upgraded_with_the_awaited_column(
    sqlite_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """The same upgrade on a durable SQLite file."""
    path = sqlite_url.removeprefix("sqlite:///")
    ((first, _),) = workers(make_quiv, sqlite_url, 1)
    task_id = first.add_task("kept", lambda: None, interval=3600, delay=3600)
    first.shutdown()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("ALTER TABLE quiv_tasks DROP COLUMN awaited_until")
        conn.execute("UPDATE quiv_meta SET value = '1' WHERE key = 'schema_version'")
    ((second, _),) = workers(make_quiv, sqlite_url, 1)
    second.add_task("kept", lambda: None, interval=3600, delay=3600)
    second.start()
    assert second.get_task(task_id).task_name == "kept"
    second.shutdown()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT value FROM quiv_meta").fetchall() == [("2",)]
        assert conn.execute("SELECT awaited_until FROM quiv_tasks").fetchall() == [(0.0,)]


def test_a_job_that_ends_while_the_task_is_being_marked_is_the_one_returned(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """A run that ends after the waiter read the jobs already ended, but before its mark of the
    task committed (both held here in that order), is the next job to end: the wait returns it."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, poll_seconds=30)
    completed: queue.Queue[str] = queue.Queue()
    b.add_listener(Event.JOB_COMPLETED, lambda _event, _task, job: completed.put(job.id))
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600)
    a.start()
    b.start()
    assert a._durable is not None
    store = a._durable.coordinator.store
    read, mark = store.list_jobs, store.await_task
    ran: list[str] = []

    def read_then_release(query: Any) -> Any:
        rows = read(query)
        gate.release.set()  # the run may end once the waiter knows which jobs had ended
        return rows

    def mark_after_the_run(task: str, seconds: float) -> bool:
        ran.append(completed.get(timeout=DEADLINE))
        return mark(task, seconds)

    store.list_jobs = read_then_release  # type: ignore[method-assign]
    store.await_task = mark_after_the_run  # type: ignore[method-assign,assignment]
    a.run_task_immediately(task_id)
    gate.next_start()
    job = a.wait_for_task(task_id, timeout=5)
    assert (job.id, job.status) == (ran[0], JobStatus.COMPLETED)
