"""PostgreSQL, several schedulers in this process: control and reads work from any instance.

A task declared only in instance B can be run, paused, resumed, updated,
removed and its job cancelled from instance A. Task events fire where the
change was made; job events fire only in the instance that ran the job.
Reads (jobs, counts, stats, waits) show every instance's jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from quiv import Event, HandlerRegistrationError, Job, JobStatus, Quiv, TaskNotFoundError, TaskStatus

from .durable_support import DEADLINE, Events, Gate, eventually, shutdown_together, sql, workers

A, B, C = 0, 1, 2


@pytest.fixture(autouse=True)
def _stop_together(pg_url: str, make_quiv: Callable[..., Quiv]) -> Iterator[None]:
    """Shut the test's schedulers down in parallel, before its database is dropped."""
    yield
    shutdown_together()


def noop() -> None:
    """A handler that does nothing."""


def _pair(make_quiv: Callable[..., Quiv], pg_url: str, **overrides: object) -> tuple[Quiv, Quiv, Events]:
    """Two started instances A and B, and one record of both instances' events."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2, **overrides)
    events = Events(a, b)
    return a, b, events


def _start(*schedulers: Quiv) -> None:
    for scheduler in schedulers:
        scheduler.start()


def test_run_now_from_a_runs_in_b_and_only_b_hears_it(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """A asks for a run of B's task: B runs it; JOB_STARTED and JOB_COMPLETED fire in B only."""
    a, b, events = _pair(make_quiv, pg_url)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600)
    _start(a, b)
    assert a.run_task_immediately(task_id) == 1
    job_id = gate.next_start()
    gate.release.set()
    done = events.wait_job(Event.JOB_COMPLETED, job_id)
    assert events.sources(Event.JOB_STARTED, job_id) == [B]
    assert events.sources(Event.JOB_COMPLETED, job_id) == [B]
    assert done.worker == b.worker_id
    assert done.scheduled_for is not None
    seen_from_a = a.get_job(job_id)
    assert seen_from_a.status is JobStatus.COMPLETED
    assert seen_from_a.worker == b.worker_id
    assert seen_from_a.scheduled_for == done.scheduled_for


@pytest.mark.parametrize("notify", [True, False], ids=["notify", "polling"])
def test_cancel_job_from_a_stops_the_job_in_b(
    notify: bool, pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """``a.cancel_job`` sets the stop event of B's job (by NOTIFY, or by B's polling without it)."""
    a, b, events = _pair(make_quiv, pg_url, notify=notify)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600)
    _start(a, b)
    a.run_task_immediately(task_id)
    job_id = gate.next_start()
    assert a.cancel_job(job_id) is True
    cancelled = events.wait_job(Event.JOB_CANCELLED, job_id)
    assert gate.stops[job_id].is_set()
    assert not gate.release.is_set()
    assert events.sources(Event.JOB_CANCELLED, job_id) == [B]
    assert cancelled.worker == b.worker_id
    assert a.get_job(job_id).status is JobStatus.CANCELLED
    assert a.cancel_job(job_id) is False
    assert a.cancel_job("no-such-job") is False


def test_pause_and_resume_from_a_govern_runs_in_b(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """A pauses B's busy task (B stops running it) and resumes it (B runs it again); events fire in A."""
    a, b, events = _pair(make_quiv, pg_url)
    task_id = b.add_task("tick", noop, interval=0.2)
    _start(a, b)
    events.wait_count(Event.JOB_COMPLETED, 1, source=B)

    a.pause_task(task_id)
    assert [t.id for t, _ in events.of(Event.TASK_PAUSED, source=A)] == [task_id]
    assert events.count(Event.TASK_PAUSED, source=B) == 0
    assert b.get_task(task_id).status is TaskStatus.PAUSED
    assert eventually(lambda: a.count_jobs(JobStatus.RUNNING) == 0)
    runs = b.count_jobs(task_id=task_id)
    assert not eventually(lambda: b.count_jobs(task_id=task_id) > runs, timeout=1.0)
    assert b.get_task(task_id).status is TaskStatus.PAUSED

    a.resume_task(task_id)
    assert events.count(Event.TASK_RESUMED, source=A) == 1
    assert events.count(Event.TASK_RESUMED, source=B) == 0
    completed = events.count(Event.JOB_COMPLETED, source=B)
    events.wait_count(Event.JOB_COMPLETED, completed + 1, source=B)
    assert events.count(Event.JOB_COMPLETED, source=A) == 0


def test_update_from_a_reschedules_in_b(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """A shortens the interval of B's hourly task: B starts running it, TASK_UPDATED fires in A."""
    a, b, events = _pair(make_quiv, pg_url)
    task_id = b.add_task("tick", noop, interval=3600, delay=3600)
    _start(a, b)
    updated = a.update_task(task_id, interval=0.2)
    assert updated.interval_seconds == 0.2
    ((task, _none),) = events.wait_count(Event.TASK_UPDATED, 1, source=A)
    assert task.interval_seconds == 0.2
    assert events.count(Event.TASK_UPDATED, source=B) == 0
    (job,) = events.wait_jobs(Event.JOB_COMPLETED, 1, source=B)
    assert job.task_id == task_id
    assert b.get_task(task_id).interval_seconds == 0.2


def test_remove_from_a_cancels_the_job_running_in_b(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """A removes B's task while B runs it: the job is cancelled in B, the task is gone everywhere."""
    a, b, events = _pair(make_quiv, pg_url)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600)
    _start(a, b)
    a.run_task_immediately(task_id)
    job_id = gate.next_start()
    a.remove_task(task_id)
    assert [t.id for t, _ in events.of(Event.TASK_REMOVED, source=A)] == [task_id]
    cancelled = events.wait_job(Event.JOB_CANCELLED, job_id)
    assert events.sources(Event.JOB_CANCELLED, job_id) == [B]
    assert cancelled.status is JobStatus.CANCELLED
    assert a.get_job(job_id).status is JobStatus.CANCELLED
    with pytest.raises(TaskNotFoundError):
        b.get_task(task_id)
    assert a.get_all_tasks() == []
    assert events.count(Event.TASK_REMOVED, source=B) == 0


def test_listeners_fire_once_in_the_instance_that_ran_each_job(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Three instances share a busy task: every job is started, run and ended by exactly one of them."""
    built = workers(make_quiv, pg_url, 3)
    instances = [q for q, _ in built]
    events = Events(*instances)
    ran: list[str] = []
    lock = threading.Lock()

    def tick(_job_id: str) -> None:
        with lock:
            ran.append(_job_id)

    task_id = instances[0].add_task("tick", tick, interval=0.1)
    for scheduler in instances[1:]:
        scheduler.add_task("tick", tick, interval=0.1)
    _start(*instances)
    events.wait_count(Event.JOB_COMPLETED, 8)
    instances[2].pause_task(task_id)
    assert eventually(lambda: instances[0].count_jobs(JobStatus.RUNNING) == 0)

    completed = events.jobs(Event.JOB_COMPLETED)
    ids = [job.id for job in completed]
    assert len(ids) == len(set(ids))
    assert sorted(ran) == sorted(ids)
    for job in completed:
        (where,) = events.sources(Event.JOB_COMPLETED, job.id)
        assert events.sources(Event.JOB_STARTED, job.id) == [where]
        assert job.worker == instances[where].worker_id
    slots = [job.scheduled_for for job in completed]
    assert len(set(slots)) == len(slots)
    stored = instances[1].get_all_jobs(JobStatus.COMPLETED)
    assert sorted(j.id for j in stored) == sorted(ids)
    for _scheduler, records in built:
        assert not [m for m in records.messages() if "already has a job" in m]


def test_reads_from_a_show_the_job_running_in_b(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """get_all_jobs, count_jobs, get_job and stats() on A see B's running job, then its end."""
    a, b, _events = _pair(make_quiv, pg_url)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600)
    _start(a, b)
    assert a.worker_id is not None
    assert b.worker_id is not None
    assert a.worker_id != b.worker_id
    rows = sql(pg_conninfo, "SELECT id FROM quiv_workers")
    assert sorted(r[0] for r in rows) == sorted([a.worker_id, b.worker_id])
    a.run_task_immediately(task_id)
    job_id = gate.next_start()

    (running,) = a.get_all_jobs()
    assert (running.id, running.status, running.worker) == (job_id, JobStatus.RUNNING, b.worker_id)
    assert a.get_all_jobs(JobStatus.RUNNING, task_id=task_id)[0].id == job_id
    assert a.count_jobs(JobStatus.RUNNING) == 1
    assert a.count_jobs(task_id=task_id) == 1
    assert a.get_job(job_id).status is JobStatus.RUNNING
    stats = a.stats()
    assert stats.running_jobs == 1
    assert stats.jobs_by_status["running"] == 1
    assert stats.tasks_by_status["running"] == 1
    assert stats.oldest_running_job_id == job_id
    assert stats.free_workers == stats.pool_size  # nothing runs in A itself
    assert b.stats().oldest_running_job_id == job_id

    with pytest.raises(TimeoutError):
        a.wait_for_job(job_id, timeout=0.3)
    ended: list[Job] = []
    waiter = threading.Thread(target=lambda: ended.append(a.wait_for_job(job_id, timeout=DEADLINE)))
    waiter.start()
    gate.release.set()
    waiter.join(DEADLINE + 1)
    assert [(j.id, j.status, j.worker) for j in ended] == [(job_id, JobStatus.COMPLETED, b.worker_id)]
    assert a.count_jobs(JobStatus.COMPLETED) == 1
    assert a.stats().jobs_by_status["completed"] == 1
    assert a.stats().running_jobs == 0


def test_wait_for_task_in_a_returns_the_job_b_ran(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """A waits on B's task; A's run request makes B run it; A's wait returns that job."""
    a, b, events = _pair(make_quiv, pg_url)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600)
    _start(a, b)
    ended: list[Job] = []
    waiter = threading.Thread(target=lambda: ended.append(a.wait_for_task(task_id, timeout=DEADLINE)))
    waiter.start()
    a.run_task_immediately(task_id)
    job_id = gate.next_start()
    gate.release.set()
    waiter.join(DEADLINE + 1)
    assert [(j.id, j.status, j.worker) for j in ended] == [(job_id, JobStatus.COMPLETED, b.worker_id)]
    assert events.count(Event.JOB_COMPLETED, source=A) == 0


def test_wait_for_task_ends_when_another_instance_removes_the_task(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """A waits on a task B then removes: A's wait raises ``TaskNotFoundError`` instead of timing out."""
    a, b, _events = _pair(make_quiv, pg_url)
    task_id = b.add_task("work", noop, interval=3600, delay=3600)
    _start(a, b)
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def wait() -> None:
        waiting.set()
        try:
            a.wait_for_task(task_id, timeout=DEADLINE)
        except BaseException as exc:  # examined below
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert waiting.wait(DEADLINE)
    b.remove_task(task_id)
    waiter.join(DEADLINE / 2)
    assert not waiter.is_alive(), "wait_for_task still waits on a removed task"
    assert [type(e) for e in outcome] == [TaskNotFoundError]


def test_update_task_checks_new_arguments_against_a_handler_declared_here(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Arguments the handler cannot take are refused before they are stored, as without a database."""
    ((a, _),) = workers(make_quiv, pg_url, 1)
    task_id = a.add_task("work", noop, interval=3600, delay=3600)
    a.start()
    with pytest.raises(HandlerRegistrationError):
        a.update_task(task_id, args=(1, 2, 3))
    assert a.get_task(task_id).args == ()


def test_run_requests_made_while_the_job_runs_elsewhere_collapse_into_one(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Three "run now" calls from two instances while B runs the task: exactly one more run follows."""
    a, b, events = _pair(make_quiv, pg_url)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600)
    _start(a, b)
    a.run_task_immediately(task_id)
    first = gate.next_start()
    a.run_task_immediately(task_id)
    b.run_task_immediately(task_id)
    a.run_task_immediately(task_id)
    gate.release.set()
    second = gate.next_start()
    assert second != first
    events.wait_job(Event.JOB_COMPLETED, second)
    assert not eventually(lambda: gate.calls > 2, timeout=0.8)
    assert a.count_jobs(task_id=task_id) == 2


def test_a_timeout_stops_the_job_where_it_runs(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """``timeout=`` sets the stop event of a job in the instance running it; the job ends cancelled."""
    a, b, events = _pair(make_quiv, pg_url)
    gate = Gate()
    task_id = b.add_task("work", gate, interval=3600, delay=3600, timeout=0.3)
    _start(a, b)
    a.run_task_immediately(task_id)
    job_id = gate.next_start()
    cancelled = events.wait_job(Event.JOB_CANCELLED, job_id)
    assert "timed out" in (cancelled.error_message or "")
    assert events.sources(Event.JOB_CANCELLED, job_id) == [B]
    assert a.get_job(job_id).status is JobStatus.CANCELLED
