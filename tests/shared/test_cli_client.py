"""A ``Quiv`` that is never started is a client of a durable database (what the ``quiv`` command uses).

It reads and changes the shared state through the same operations as a
running scheduler, but registers no worker and claims no run. On SQLite
every one of its operations takes the file's lock first, so it is refused
(never half-allowed) while another process holds the file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from quiv import ConfigurationError, JobStatus, Quiv, QuivConfig, TaskStatus
from quiv._durable.store import DurableStore

DEADLINE = 15.0


def test_a_client_reads_a_fresh_sqlite_file_without_starting(sqlite_url: str) -> None:
    client = Quiv(database_url=sqlite_url)
    try:
        assert client.get_all_tasks() == []
        assert client.stats().tasks_by_status == {"active": 0, "running": 0, "paused": 0}
        assert client.count_jobs() == 0
    finally:
        client.shutdown()


@pytest.mark.parametrize(
    ("what", "call"),
    [
        ("get_all_tasks", lambda q, t: q.get_all_tasks()),
        ("get_task", lambda q, t: q.get_task(t)),
        ("stats", lambda q, t: q.stats()),
        ("get_all_jobs", lambda q, t: q.get_all_jobs()),
        ("pause_task", lambda q, t: q.pause_task(t)),
        ("resume_task", lambda q, t: q.resume_task(t)),
        ("run_task_immediately", lambda q, t: q.run_task_immediately(t)),
        ("remove_task", lambda q, t: q.remove_task(t)),
        ("cancel_job", lambda q, t: q.cancel_job("no-such-job")),
        ("get_job", lambda q, t: q.get_job("no-such-job")),
    ],
)
def test_every_operation_of_a_client_is_refused_while_a_process_holds_the_sqlite_file(
    sqlite_url: str, what: str, call: Callable[[Quiv, str], Any]
) -> None:
    app = Quiv(database_url=sqlite_url)
    task_id = app.add_task("hello", lambda: None, interval=3600, delay=3600)
    app.start()
    client = Quiv(database_url=sqlite_url)
    try:
        with pytest.raises(ConfigurationError, match="in use by another process"):
            call(client, task_id)
        assert app.get_task(task_id).status is TaskStatus.ACTIVE, f"{what} changed the task"
    finally:
        client.shutdown()
        app.shutdown()


def test_a_client_prepares_once_when_threads_read_at_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads of one client must not both lock the file: the second would be refused."""
    original = DurableStore._lock_file

    def slow_lock(self: DurableStore, path: str) -> None:
        time.sleep(0.3)  # both threads are inside prepare() by now, unless one waits for the other
        original(self, path)

    monkeypatch.setattr(DurableStore, "_lock_file", slow_lock)
    client = Quiv(database_url=sqlite_url)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def read() -> None:
        start.wait()
        try:
            client.get_all_tasks()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE)
        assert errors == []
    finally:
        client.shutdown()


def test_a_client_on_postgresql_registers_no_worker_and_runs_nothing(pg_url: str, pg_conninfo: str) -> None:
    import psycopg

    config = QuivConfig(database_url=pg_url, heartbeat_seconds=0.2, dead_after_seconds=5, poll_seconds=0.5)
    app = Quiv(config=config)
    ran = threading.Event()
    task_id = app.add_task("hello", lambda: ran.set(), interval=3600, delay=3600)
    app.start()
    client = Quiv(config=config)
    try:
        client.pause_task(task_id)
        assert app.get_task(task_id).status is TaskStatus.PAUSED
        client.run_task_immediately(task_id)  # a paused task runs once and stays paused
        assert ran.wait(DEADLINE)
        deadline = time.monotonic() + DEADLINE
        while [j.status for j in app.get_all_jobs()] != [JobStatus.COMPLETED]:
            assert time.monotonic() < deadline, app.get_all_jobs()
            time.sleep(0.05)
        (job,) = app.get_all_jobs()
        assert app.get_task(task_id).status is TaskStatus.PAUSED
        assert job.worker == app.worker_id
        client.resume_task(task_id, delay=3600)
        assert client.get_task(task_id).status is TaskStatus.ACTIVE
        with psycopg.connect(pg_conninfo) as conn:
            workers = [row[0] for row in conn.execute("SELECT id FROM quiv_workers")]
            job_workers = {row[0] for row in conn.execute("SELECT worker FROM quiv_jobs")}
        assert workers == [app.worker_id]
        assert job_workers == {app.worker_id}
        assert client.worker_id not in workers
        assert not client.running
    finally:
        client.shutdown()
        app.shutdown()


def test_a_client_lists_the_live_processes_with_their_tasks(pg_url: str) -> None:
    config = QuivConfig(database_url=pg_url, heartbeat_seconds=0.2, dead_after_seconds=5)
    app = Quiv(config=config)
    app.add_task("b-task", lambda: None, interval=3600, delay=3600)
    app.add_task("a-task", lambda: None, interval=3600, delay=3600)
    client = Quiv(config=config)
    try:
        assert client._durable is not None
        assert client._durable.workers()[1] == []
        app.start()
        now, workers = client._durable.workers()
        (worker,) = workers
        assert worker.id == app.worker_id
        assert (worker.host, worker.pid) == (os.uname().nodename, os.getpid())
        assert worker.tasks == ("a-task", "b-task")
        assert worker.started_at <= worker.heartbeat_at <= now + 1
        app.shutdown()
        assert client._durable.workers()[1] == []
    finally:
        client.shutdown()
        app.shutdown()
