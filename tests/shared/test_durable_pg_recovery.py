"""PostgreSQL: dead processes, fenced ends, the one-job-per-slot backstop, missed slots.

A dead process is staged directly in the tables (a worker row whose heartbeat
is an hour old and a ``running`` job it owns), so the live instances' sweep
is what the test watches. A process presumed dead while it still runs is
staged by deleting its worker row under it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, insert, select, text, update

from quiv import Event, Job, JobStatus, Quiv
from quiv._durable import schema
from quiv._schedule.options import MisfirePolicy

from .durable_support import (
    Events,
    Gate,
    eventually,
    offset,
    shutdown_together,
    sql,
    workers,
)

A, B = 0, 1
DEAD_WORKER = "dead-worker-0000"
DEAD_JOB = "dead-job-0000"


@pytest.fixture(autouse=True)
def _stop_together(pg_url: str, make_quiv: Callable[..., Quiv]) -> Iterator[None]:
    """Shut the test's schedulers down in parallel, before its database is dropped."""
    yield
    shutdown_together()


def noop() -> None:
    """A handler that does nothing."""


def stage_dead_worker(url: str, task_id: str) -> float:
    """A worker silent for an hour, running the task's current slot; returns that slot.

    Written with quiv's own table definitions, so columns added later get their defaults.
    """
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            now = float(conn.execute(text("SELECT extract(epoch FROM now())")).scalar_one())
            slot = float(
                conn.execute(select(schema.tasks.c.nominal).where(schema.tasks.c.id == task_id)).scalar_one()
            )
            conn.execute(
                insert(schema.workers).values(
                    id=DEAD_WORKER,
                    started_at=now - 3600,
                    heartbeat_at=now - 3600,
                    host="gone",
                    pid=1,
                    tasks="work",
                )
            )
            conn.execute(
                insert(schema.jobs).values(
                    id=DEAD_JOB,
                    task_id=task_id,
                    task_name="work",
                    status="running",
                    started_at=now - 60,
                    attempt=1,
                    scheduled_for=slot,
                    worker=DEAD_WORKER,
                )
            )
            conn.execute(
                update(schema.tasks)
                .where(schema.tasks.c.id == task_id)
                .values(running_job=DEAD_JOB, status="running", cycle_due=slot, started_once=True)
            )
    finally:
        engine.dispose()
    return slot


def test_a_dead_workers_job_is_abandoned_once_and_retried(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Two live instances sweep: the dead job ends abandoned, JOB_FAILED fires once, a retry runs."""
    (a, a_log), (b, b_log) = workers(make_quiv, pg_url, 2, heartbeat_seconds=0.2, dead_after_seconds=0.5)
    events = Events(a, b)
    task_id = a.add_task("work", noop, interval=3600, delay=3600, max_retries=1, retry_backoff=0)
    b.add_task("work", noop, interval=3600, delay=3600, max_retries=1, retry_backoff=0)
    a.start()
    b.start()
    stage_dead_worker(pg_url, task_id)

    (failed,) = events.wait_jobs(Event.JOB_FAILED, 1)
    assert failed.id == DEAD_JOB
    assert failed.status is JobStatus.ABANDONED
    assert failed.worker == DEAD_WORKER
    assert "abandoned" in (failed.error_message or "")
    assert DEAD_WORKER in (failed.error_message or "")
    (retry,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
    assert (retry.attempt, retry.retry_of, retry.task_id) == (2, DEAD_JOB, task_id)
    assert retry.worker in (a.worker_id, b.worker_id)

    assert a.get_job(DEAD_JOB).status is JobStatus.ABANDONED
    assert sql(pg_conninfo, "SELECT count(*) FROM quiv_workers WHERE id = %s", (DEAD_WORKER,)) == [(0,)]
    assert not eventually(lambda: events.count(Event.JOB_FAILED) > 1, timeout=0.6)
    logged = [m for _q, log in ((a, a_log), (b, b_log)) for m in log.messages() if DEAD_JOB in m]
    assert len(logged) == 1
    assert "abandoned" in logged[0]


@pytest.mark.parametrize("how", ["presumed-dead", "marked-by-sql"])
def test_the_end_of_a_job_abandoned_meanwhile_is_dropped(
    how: str, pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """A job's row becomes ``abandoned`` while its handler runs: its end is not written, a warning says so.

    ``presumed-dead`` deletes the instance's worker row (its own sweep then ends the job and it carries on
    under a new worker id); ``marked-by-sql`` only rewrites the job row.
    """
    ((a, log),) = workers(make_quiv, pg_url, 1, heartbeat_seconds=0.2, dead_after_seconds=0.5)
    events = Events(a)
    gate = Gate()
    task_id = a.add_task("work", gate, interval=3600, delay=3600)
    a.start()
    first_worker = a.worker_id
    a.run_task_immediately(task_id)
    job_id = gate.next_start()

    if how == "presumed-dead":
        sql(pg_conninfo, "DELETE FROM quiv_workers WHERE id = %s", (first_worker,))
        log.wait_for("presumed dead")
        assert events.wait_job(Event.JOB_FAILED, job_id).status is JobStatus.ABANDONED
        assert a.worker_id != first_worker
    else:
        sql(
            pg_conninfo,
            "UPDATE quiv_jobs SET status = 'abandoned', ended_at = started_at + 1, duration_seconds = 1, "
            "error_message = 'abandoned: marked by the test' WHERE id = %s",
            (job_id,),
        )
    (listed,) = a.get_all_jobs(task_id=task_id)
    assert listed.status is JobStatus.ABANDONED
    before = a.get_job(job_id)  # the row, not this instance's memory of a job it still runs
    assert before.status is JobStatus.ABANDONED

    gate.release.set()
    warning = log.wait_for("its result is dropped")
    assert job_id in warning
    after = a.get_job(job_id)
    assert after.status is JobStatus.ABANDONED
    assert (after.ended_at, after.error_message) == (before.ended_at, before.error_message)
    assert events.count(Event.JOB_COMPLETED) == 0

    if how == "presumed-dead":
        # Still alive under its new id: the task was released by the sweep and runs again.
        a.run_task_immediately(task_id)
        second = gate.next_start()
        done = events.wait_job(Event.JOB_COMPLETED, second)
        assert done.worker == a.worker_id


def test_a_slot_that_already_has_a_job_is_not_run_again(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """A job row planted for the next slot: the claim finds the slot taken, logs an error, moves on."""
    ((a, log),) = workers(make_quiv, pg_url, 1)
    events = Events(a)
    ran: list[str] = []
    task_id = a.add_task("tick", lambda _job_id: ran.append(_job_id), interval=0.5, delay=0.5)
    ((slot,),) = sql(pg_conninfo, "SELECT next_run_at FROM quiv_tasks WHERE id = %s", (task_id,))
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            insert(schema.jobs).values(
                id="planted",
                task_id=task_id,
                task_name="tick",
                status="completed",
                started_at=slot,
                ended_at=slot,
                duration_seconds=0.0,
                attempt=1,
                scheduled_for=slot,
            )
        )
    engine.dispose()
    a.start()

    error = log.wait_for("already has a job", level=40)
    assert "'tick'" in error
    (job,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
    assert offset(job, slot) == 0.5
    assert ran[0] == job.id
    assert "planted" not in ran
    assert sql(
        pg_conninfo, "SELECT id FROM quiv_jobs WHERE task_id = %s AND scheduled_for = %s", (task_id, slot)
    ) == [("planted",)]
    assert events.count(Event.JOB_STARTED) == len(ran)


def test_slots_skipped_while_the_previous_run_went_on_are_missed(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Every 0.2 s, but the first run lasts 0.7 s: the slots it overran are recorded ``missed``.

    The late window (the poll interval) is wide, so a claim that a loaded machine
    delays after the long run ends is still on time: only the overrun is missed.
    """
    ((a, _log),) = workers(make_quiv, pg_url, 1, poll_seconds=5)
    events = Events(a)
    calls = 0
    hold = threading.Event()

    def slow() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            hold.wait(0.7)  # the run's own length, not a wait for an outcome

    task_id = a.add_task("slow", slow, interval=0.2)
    a.start()
    first, second = events.wait_jobs(Event.JOB_COMPLETED, 2)
    assert first.scheduled_for is not None
    start = first.scheduled_for.timestamp()
    missed_rows = a.get_all_jobs(JobStatus.MISSED, task_id=task_id)
    missed = sorted(offset(j, start) for j in missed_rows)
    assert len(missed) >= 3, missed
    assert missed == [round(0.2 * k, 3) for k in range(1, len(missed) + 1)]
    assert offset(second, start) == round(0.2 * (len(missed) + 1), 3)
    assert all("still going" in (j.error_message or "") for j in missed_rows)
    assert all(j.worker is None for j in missed_rows)
    heard = sorted(offset(j, start) for j in events.jobs(Event.JOB_MISSED))
    assert heard == missed


@pytest.mark.parametrize("misfire", ["skip", "run_once"])
def test_slots_that_passed_while_every_instance_was_down_are_missed(
    misfire: MisfirePolicy, pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """The task's schedule is moved 7 s into the past (as if nobody ran for that long) before start.

    Slots at 0, 2 and 4 s of the moved schedule have passed; the next is at 6 s. ``skip`` misses all
    three, ``run_once`` runs the one at 4 s and misses the other two.
    """
    ((a, _log),) = workers(make_quiv, pg_url, 1)
    events = Events(a)
    task_id = a.add_task("beat", noop, interval=2, delay=2, misfire=misfire)
    ((start,),) = sql(
        pg_conninfo,
        "UPDATE quiv_tasks SET nominal = nominal - 7, next_run_at = next_run_at - 7 WHERE id = %s "
        "RETURNING nominal",
        (task_id,),
    )
    a.start()
    if misfire == "skip":
        missed = events.wait_jobs(Event.JOB_MISSED, 3)
        assert sorted(offset(j, start) for j in missed) == [0, 2, 4]
        assert all("no process ran it" in (j.error_message or "") for j in missed)
        next_run = a.get_task(task_id).next_run_at
        assert next_run is not None
        assert next_run.timestamp() - start == pytest.approx(6)
        assert events.count(Event.JOB_STARTED) == 0
    else:
        (job,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
        assert offset(job, start) == 4
        missed = a.get_all_jobs(JobStatus.MISSED, task_id=task_id)
        assert sorted(offset(j, start) for j in missed) == [0, 2]
        assert events.count(Event.JOB_MISSED) == 2


def test_a_failed_run_is_retried_once_by_some_instance(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """The first attempt raises: JOB_FAILED fires once (where it ran), and one retry completes."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2)
    events = Events(a, b)
    attempts: list[int] = []
    lock = threading.Lock()

    def flaky() -> None:
        with lock:
            attempts.append(len(attempts) + 1)
            first = len(attempts) == 1
        if first:
            raise RuntimeError("first attempt fails")

    task_id = a.add_task("flaky", flaky, interval=3600, delay=3600, max_retries=1, retry_backoff=0.1)
    b.add_task("flaky", flaky, interval=3600, delay=3600, max_retries=1, retry_backoff=0.1)
    a.start()
    b.start()
    a.run_task_immediately(task_id)
    (failed,) = events.wait_jobs(Event.JOB_FAILED, 1)
    (retry,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
    assert "first attempt fails" in (failed.error_message or "")
    assert (retry.attempt, retry.retry_of) == (2, failed.id)
    assert events.sources(Event.JOB_FAILED, failed.id) == [[a, b].index(_owner(failed, a, b))]
    assert attempts == [1, 2]
    assert events.count(Event.JOB_FAILED) == 1


def _owner(job: Job, *schedulers: Quiv) -> Quiv:
    """The scheduler whose worker ran ``job``."""
    (owner,) = [q for q in schedulers if q.worker_id == job.worker]
    return owner


def test_ends_written_in_one_batch_are_fenced_one_by_one(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Two ends share one transaction (group commit): the one whose run was taken away is refused.

    Both jobs hold their handlers; one row is marked ``abandoned`` as a sweep
    would. The batch write then records the other job's end and moves its
    task on, and leaves the abandoned row as the sweep wrote it.
    """
    ((a, _log),) = workers(make_quiv, pg_url, 1)
    gates = {"one": Gate(), "two": Gate()}
    ids = {name: a.add_task(name, gate, interval=3600) for name, gate in gates.items()}
    a.start()
    running = {name: gate.next_start() for name, gate in gates.items()}
    assert a._durable is not None
    coordinator = a._durable.coordinator
    sql(pg_conninfo, "UPDATE quiv_jobs SET status = 'abandoned' WHERE id = %s", (running["one"],))
    batch = []
    for name in ("one", "two"):
        job = copy.copy(coordinator.live[running[name]])
        job.status = JobStatus.COMPLETED
        batch.append((job, coordinator.local[name]))

    refused, recorded = coordinator.store.finish_many(batch)

    assert not refused.accepted
    assert recorded.accepted
    assert recorded.view is not None
    assert recorded.view.id == ids["two"]
    rows = dict(
        sql(pg_conninfo, "SELECT id, status FROM quiv_jobs WHERE id = ANY(%s)", (list(running.values()),))
    )
    assert rows == {running["one"]: "abandoned", running["two"]: "completed"}
    ((holder, next_run),) = sql(
        pg_conninfo, "SELECT running_job, next_run_at FROM quiv_tasks WHERE id = %s", (ids["two"],)
    )
    assert holder is None
    assert next_run == pytest.approx(batch[1][0].due + 3600, abs=0.01)
    for gate in gates.values():
        gate.release.set()
