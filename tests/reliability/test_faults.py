"""Faults injected into handlers, callbacks, listeners, the main loop and the database.

Each test checks the fault is contained (the job's outcome is right and the
scheduler keeps running other work) and then holds the scheduler to every
invariant, through shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
import threading
import time
import types
from typing import Any

import pytest
from sqlalchemy import text

from quiv import DatabaseError, Event, Job, JobStatus, QuivError, Task
from quiv.testing import ManualClock

from .conftest import RecordedFactory, stop_loop
from .invariants import BASE_EXCEPTIONS, Recorder, check_invariants, quiv_threads, shutdown_and_check

DEADLINE = 10.0


def _run_and_wait(rec: Recorder, clock: ManualClock, seconds: float, terminals: int) -> None:
    clock.advance(seconds)
    rec.wait_terminal(terminals)


def _error_records(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and needle in r.getMessage()]


# ---------------------------------------------------------------- handlers
class CustomError(Exception):
    pass


@pytest.mark.parametrize("exc_type", [ValueError, RuntimeError, CustomError, MemoryError])
def test_handler_exception_fails_the_job_and_nothing_else(
    exc_type: type[Exception], recorded: RecordedFactory
) -> None:
    scheduler, clock, rec = recorded(pool_size=2)

    def raising(_job_id: str | None = None) -> None:
        raise exc_type("it broke")

    bad = scheduler.add_task("bad", raising, interval=5)
    scheduler.add_task("good", rec.handler(), interval=5, kwargs={"key": "good"})
    _run_and_wait(rec, clock, 0, 2)
    _run_and_wait(rec, clock, 5, 4)
    failed = [j for j in scheduler.get_all_jobs() if j.task_id == bad]
    assert [j.status for j in failed] == [JobStatus.FAILED] * 2
    assert all(j.error_message == f"{exc_type.__name__}: it broke" for j in failed), failed
    assert rec.event_count(Event.JOB_COMPLETED) == 2
    check_invariants(rec)
    shutdown_and_check(rec)


@pytest.mark.parametrize("name", sorted(BASE_EXCEPTIONS))
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_base_exception_fails_the_job_not_the_worker(name: str, kind: str, recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded(pool_size=1)
    handler = rec.handler() if kind == "sync" else rec.async_handler()
    bad = scheduler.add_task("bad", handler, interval=5, kwargs={"key": "bad", "mode": f"raise-{name}"})
    scheduler.add_task("good", rec.handler(), interval=5, kwargs={"key": "good"})
    # pool_size=1: the one worker must survive the BaseException to run the good task, twice.
    _run_and_wait(rec, clock, 0, 2)
    _run_and_wait(rec, clock, 5, 4)
    jobs = scheduler.get_all_jobs()
    bad_jobs = [j for j in jobs if j.task_id == bad]
    assert [j.status for j in bad_jobs] == [JobStatus.FAILED] * 2, bad_jobs
    assert all(j.error_message and name in j.error_message for j in bad_jobs), bad_jobs
    assert sum(j.status is JobStatus.COMPLETED for j in jobs) == 2
    assert scheduler.running
    check_invariants(rec)
    shutdown_and_check(rec)


def test_handler_ignoring_its_stop_event_cannot_hold_up_shutdown(
    recorded: RecordedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler, clock, rec = recorded(pool_size=2)
    scheduler.add_task("deaf", rec.handler(), interval=5, kwargs={"key": "deaf", "mode": "gate-deaf"})
    clock.advance(0)
    (stuck,) = rec.wait_entered(1)
    thread = rec.entries[stuck].thread
    assert scheduler.cancel_job(stuck) is True  # it will not listen
    check_invariants(rec, stuck=[stuck])
    with caplog.at_level(logging.WARNING, logger="Quiv"):
        shutdown_and_check(rec, timeout=0.5, stuck=[stuck])
    assert any("still running" in r.getMessage() for r in caplog.records), "no warning about the stuck job"
    assert thread.is_alive()
    rec.release(stuck)
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the released worker did not end"
    assert not quiv_threads()
    with rec.cond:
        assert stuck not in rec.terminals, "a job abandoned by shutdown fired an event"
        assert not rec.violations, rec.violations


def test_blocked_job_stays_running_while_other_tasks_run(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded(pool_size=2)
    blocked_task = scheduler.add_task(
        "blocked", rec.handler(), interval=5, kwargs={"key": "b", "mode": "gate-deaf"}
    )
    scheduler.add_task("other", rec.handler(), interval=5, kwargs={"key": "o"})
    clock.advance(0)
    (blocked,) = rec.wait_entered(1, key="b")
    for n in range(1, 6):
        _run_and_wait(rec, clock, 5, n + 1)
    assert scheduler.get_job(blocked).status is JobStatus.RUNNING
    assert scheduler.get_task(blocked_task).status.value == "running"
    assert rec.event_count(Event.JOB_COMPLETED) >= 5
    check_invariants(rec, stuck=[blocked])
    rec.pause(blocked_task)  # its next run is due at once and would block again
    rec.release(blocked)
    done = scheduler.wait_for_job(blocked, timeout=DEADLINE)
    assert done.status is JobStatus.COMPLETED
    assert done.ended_at is not None
    check_invariants(rec)
    shutdown_and_check(rec)


def test_shutdown_leaves_no_thread_repeatedly(recorded: RecordedFactory) -> None:
    """Many start/shutdown cycles: each one ends every thread and deletes its directory."""
    for n in range(60):
        scheduler, clock, rec = recorded(pool_size=2)
        scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": f"t{n}"})
        _run_and_wait(rec, clock, 0, 1)
        shutdown_and_check(rec, timeout=5)


# ------------------------------------------------------ progress callbacks
def _reporting_handler(count: int, release: threading.Event | None = None) -> Any:
    def handler(_progress_hook: Any = None, _stop_event: threading.Event | None = None) -> None:
        assert _progress_hook is not None
        for step in range(count):
            if release is not None and step == count // 2:
                assert release.wait(DEADLINE)
            _progress_hook(step=step, total=count)

    return handler


@pytest.mark.parametrize("with_loop", [False, True], ids=["no-loop", "main-loop"])
def test_raising_progress_callback_is_logged_and_the_job_completes(
    with_loop: bool,
    recorded: RecordedFactory,
    main_loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler, clock, rec = recorded(pool_size=2, main_loop=main_loop if with_loop else None)
    calls: list[int] = []
    done = threading.Event()

    def callback(step: int, total: int) -> None:
        calls.append(step)
        if len(calls) == total:
            done.set()
        raise RuntimeError(f"callback broke at {step}")

    scheduler.add_task("p", _reporting_handler(5), interval=5, progress_callback=callback)
    with caplog.at_level(logging.ERROR, logger="Quiv"):
        _run_and_wait(rec, clock, 0, 1)
        assert done.wait(DEADLINE)
    assert calls == [0, 1, 2, 3, 4]
    assert rec.event_count(Event.JOB_COMPLETED) == 1
    assert len(_error_records(caplog, "raised")) == 5
    check_invariants(rec)
    shutdown_and_check(rec)


def test_never_ending_async_progress_callback_holds_up_only_its_task(
    recorded: RecordedFactory, main_loop: asyncio.AbstractEventLoop
) -> None:
    scheduler, clock, rec = recorded(pool_size=2, main_loop=main_loop)
    stuck_calls: list[int] = []
    other_calls: list[int] = []
    other_done = threading.Event()

    async def never_ends(step: int, total: int) -> None:
        stuck_calls.append(step)
        await asyncio.Event().wait()

    def other(step: int, total: int) -> None:
        other_calls.append(step)
        if len(other_calls) == total:
            other_done.set()

    scheduler.add_task("stuck", _reporting_handler(4), interval=5, progress_callback=never_ends)
    scheduler.add_task("other", _reporting_handler(4), interval=5, progress_callback=other)
    _run_and_wait(rec, clock, 0, 2)
    assert other_done.wait(DEADLINE), "another task's progress was held up"
    assert other_calls == [0, 1, 2, 3]
    assert asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result=True), main_loop).result(DEADLINE)
    assert stuck_calls == [0], "reports of one task must wait for its previous callback"
    _run_and_wait(rec, clock, 5, 4)  # jobs keep running even though progress is stuck
    check_invariants(rec)
    shutdown_and_check(rec)


def test_main_loop_closing_while_a_job_reports_progress(recorded: RecordedFactory) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-main-loop", daemon=True)
    thread.start()
    scheduler, clock, rec = recorded(pool_size=2, main_loop=loop)
    release = threading.Event()
    seen: list[tuple[int, bool]] = []
    cond = threading.Condition()

    def callback(step: int, total: int) -> None:
        with cond:
            seen.append((step, threading.current_thread() is thread))
            cond.notify_all()

    scheduler.add_task("p", _reporting_handler(10, release), interval=5, progress_callback=callback)
    clock.advance(0)
    with cond:
        assert cond.wait_for(lambda: len(seen) == 5, DEADLINE)
    stop_loop(loop, thread)
    assert loop.is_closed()
    release.set()
    rec.wait_terminal(1)
    with cond:
        assert cond.wait_for(lambda: len(seen) == 10, DEADLINE), seen
    assert [s for s, _ in seen] == list(range(10))
    assert all(on_loop for _, on_loop in seen[:5]), "reports before the close ran on the main loop"
    assert not any(on_loop for _, on_loop in seen[5:]), "reports after the close cannot run on the loop"
    assert rec.event_count(Event.JOB_COMPLETED) == 1
    _run_and_wait(rec, clock, 5, 2)  # and the scheduler goes on
    check_invariants(rec)
    shutdown_and_check(rec)


# ---------------------------------------------------------------- listeners
@pytest.mark.parametrize("with_loop", [False, True], ids=["no-loop", "main-loop"])
def test_raising_listener_does_not_stop_the_others(
    with_loop: bool,
    recorded: RecordedFactory,
    main_loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler, clock, rec = recorded(pool_size=2, main_loop=main_loop if with_loop else None)
    after: list[str] = []
    got_all = threading.Event()

    def raising(event: Event, task: Task, job: Job | None = None) -> None:
        raise RuntimeError(f"listener broke on {event.value}")

    def later(event: Event, task: Task, job: Job | None = None) -> None:
        after.append(event.value)
        if len(after) == 4:
            got_all.set()

    for event in (Event.TASK_ADDED, Event.JOB_STARTED, Event.JOB_COMPLETED, Event.TASK_PAUSED):
        scheduler.add_listener(event, raising)
        scheduler.add_listener(event, later)
    with caplog.at_level(logging.ERROR, logger="Quiv"):
        task_id = scheduler.add_task("t", rec.handler(), interval=5, kwargs={"key": "t"})
        _run_and_wait(rec, clock, 0, 1)
        rec.pause(task_id)
        assert got_all.wait(DEADLINE), after
    assert sorted(after) == sorted(["task_added", "job_started", "job_completed", "task_paused"])
    assert len(_error_records(caplog, "listener")) == 4
    assert scheduler.get_task(task_id).status.value == "paused"
    check_invariants(rec)
    shutdown_and_check(rec)


def test_slow_listener_does_not_stop_other_tasks(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded(pool_size=2)
    gate = threading.Event()
    entered = threading.Event()

    def slow(event: Event, task: Task, job: Job) -> None:
        if task.task_name == "slow-listener":
            entered.set()
            assert gate.wait(DEADLINE)

    scheduler.add_listener(Event.JOB_COMPLETED, slow)
    scheduler.add_task("slow-listener", rec.handler(), interval=100, kwargs={"key": "s"})
    clock.advance(0)
    assert entered.wait(DEADLINE)
    scheduler.add_task("other", rec.handler(), interval=1, kwargs={"key": "o"})
    for n in range(2, 6):
        _run_and_wait(rec, clock, 1, n)  # the other task keeps running while the listener blocks
    gate.set()
    check_invariants(rec)
    shutdown_and_check(rec)


def test_never_ending_async_listener_on_the_main_loop(
    recorded: RecordedFactory, main_loop: asyncio.AbstractEventLoop
) -> None:
    scheduler, clock, rec = recorded(pool_size=2, main_loop=main_loop)
    started: list[str] = []

    async def forever(event: Event, task: Task, job: Job) -> None:
        started.append(job.id)
        await asyncio.Event().wait()

    scheduler.add_listener(Event.JOB_COMPLETED, forever)
    scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": "t"})
    for n in range(1, 6):
        _run_and_wait(rec, clock, 0 if n == 1 else 1, n)
    assert asyncio.run_coroutine_threadsafe(asyncio.sleep(0, result=True), main_loop).result(DEADLINE)
    assert len(started) == 5, "every async listener was started on the loop"
    check_invariants(rec)
    shutdown_and_check(rec, timeout=2)


# ------------------------------------------------------------- arguments
def _explode_on_load() -> None:
    raise RuntimeError("this argument cannot be rebuilt")


class LoadBomb:
    """Pickles fine; unpickling calls a function that raises."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _explode_on_load, ()


def test_arguments_that_fail_to_unpickle_fail_the_job_clearly(
    recorded: RecordedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler, clock, rec = recorded(pool_size=1)
    bad = scheduler.add_task("bad", rec.handler(), interval=5, args=(LoadBomb(),))
    scheduler.add_task("good", rec.handler(), interval=5, kwargs={"key": "good"})
    _run_and_wait(rec, clock, 0, 2)
    _run_and_wait(rec, clock, 5, 4)  # pool_size=1: the worker survived
    bad_jobs = [j for j in scheduler.get_all_jobs() if j.task_id == bad]
    assert [j.status for j in bad_jobs] == [JobStatus.FAILED] * 2
    for job in bad_jobs:
        assert job.error_message is not None, job
        assert "unpickle" in job.error_message, job
        assert "this argument cannot be rebuilt" in job.error_message, job
    assert rec.event_count(Event.JOB_COMPLETED) == 2
    for read in (lambda: scheduler.get_task(bad), lambda: scheduler.get_all_tasks()):
        with contextlib.suppress(QuivError):  # a documented error is acceptable; a raw one is not
            read()
    check_invariants(rec)
    shutdown_and_check(rec)


def test_argument_class_removed_after_add_task(recorded: RecordedFactory) -> None:
    """The common real case: the argument's class is gone (renamed, reloaded) when the job runs."""
    module = types.ModuleType("quiv_vanishing_module")
    exec("class Payload:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        scheduler, clock, rec = recorded(pool_size=1)
        bad = scheduler.add_task(
            "bad", rec.handler(), interval=5, kwargs={"key": "b", "mode": module.Payload()}
        )
        del module.Payload
        scheduler.add_task("good", rec.handler(), interval=5, kwargs={"key": "good"})
        _run_and_wait(rec, clock, 0, 2)
        (job,) = [j for j in scheduler.get_all_jobs() if j.task_id == bad]
        assert job.status is JobStatus.FAILED
        assert job.error_message is not None
        assert "unpickle" in job.error_message
        check_invariants(rec)
        shutdown_and_check(rec)
    finally:
        del sys.modules[module.__name__]


# ---------------------------------------------------------------- database
def test_database_file_deleted_under_the_engine(
    recorded: RecordedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """quiv keeps one open connection, so deleting the file (and its directory) loses nothing."""
    scheduler, clock, rec = recorded(pool_size=2)
    scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": "t"})
    _run_and_wait(rec, clock, 0, 1)
    store: Any = scheduler._writer.store
    os.unlink(store.path)
    assert os.listdir(store.directory) == []  # no journal files: they live in memory
    os.rmdir(store.directory)
    with caplog.at_level(logging.ERROR, logger="Quiv"):
        for n in range(2, 7):
            _run_and_wait(rec, clock, 1, n)
        scheduler.add_task("after", rec.handler(), interval=1, kwargs={"key": "a"})  # runs at once
        _run_and_wait(rec, clock, 1, 9)
        stored = check_invariants(rec)
    assert len(stored) == 9 == rec.event_count(Event.JOB_COMPLETED), (
        "jobs were lost after the file was deleted"
    )
    assert not _error_records(caplog, "database"), "operation was normal: nothing to log"
    shutdown_and_check(rec)


def test_database_made_read_only_by_permissions(recorded: RecordedFactory) -> None:
    """chmod on the file and directory: the open connection keeps working (and root ignores modes)."""
    scheduler, clock, rec = recorded(pool_size=2)
    scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": "t"})
    _run_and_wait(rec, clock, 0, 1)
    store: Any = scheduler._writer.store
    os.chmod(store.path, stat.S_IRUSR)
    os.chmod(store.directory, stat.S_IRUSR | stat.S_IXUSR)
    try:
        for n in range(2, 6):
            _run_and_wait(rec, clock, 1, n)
        assert len(check_invariants(rec)) == 5
    finally:
        os.chmod(store.directory, stat.S_IRWXU)
    shutdown_and_check(rec)


def test_database_rejecting_writes_is_clean_and_loses_nothing(
    recorded: RecordedFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that refuses writes (SQLite's query_only, as for a read-only file):

    jobs keep running in memory, a read that needs the database raises a
    clear DatabaseError, the failure is logged once, the writer does not spin,
    and once writes work again every job is there.
    """
    scheduler, clock, rec = recorded(pool_size=2)
    scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": "t"})
    _run_and_wait(rec, clock, 0, 1)
    store: Any = scheduler._writer.store
    original_write = store.write
    attempts: list[float] = []

    def counting_write(*args: Any, **kwargs: Any) -> None:
        attempts.append(time.monotonic())
        original_write(*args, **kwargs)

    def query_only(on: bool) -> None:
        with store._lock, store._engine.begin() as conn:
            conn.execute(text(f"PRAGMA query_only = {int(on)}"))

    monkeypatch.setattr(store, "write", counting_write)
    query_only(True)
    with caplog.at_level(logging.ERROR, logger="Quiv"):
        for n in range(2, 6):
            _run_and_wait(rec, clock, 1, n)  # jobs still run and end
        with pytest.raises(DatabaseError, match=r"readonly|read-only|read only") as info:
            scheduler.get_all_jobs()
        assert "write" in str(info.value)
        # An idle scheduler with a broken database must not keep retrying.
        idle_from = time.monotonic()
        with rec.cond:
            rec.cond.wait(0.5)  # a measuring window, not a wait for an outcome
        idle_attempts = [t for t in attempts if t > idle_from]
        assert len(idle_attempts) <= 3, f"{len(idle_attempts)} write attempts in 0.5 s while idle (busy loop)"
        failures = _error_records(caplog, "could not write")
        assert len(failures) == 1, f"the failure was logged {len(failures)} times"
    query_only(False)
    stored = check_invariants(rec)
    assert len(stored) == 5, "jobs run while the database refused writes were lost"
    assert all(j.status is JobStatus.COMPLETED for j in stored.values())
    shutdown_and_check(rec)
