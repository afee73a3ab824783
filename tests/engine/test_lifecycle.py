"""start/startup, shutdown/stop, the private database, and what happens after shutdown."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlmodel import SQLModel, create_engine

from quiv import Event, JobStatus, Quiv, SchedulerStoppedError
from quiv.testing import ManualClock

from .support import DEADLINE, Blocker, Calls, QuivFactory


def noop() -> None:
    pass


def takes_anything(*args: object, **kwargs: object) -> None:
    """A handler the tests' arguments bind to (add_task checks that they do)."""


def _store_paths(scheduler: Quiv) -> tuple[str, str]:
    # The one place the suite looks inside: where the private database lives.
    store: Any = scheduler._writer.store
    assert store is not None, "the database should exist after start()"
    directory: str = store.directory
    path: str = store.path
    return directory, path


# ---------------------------------------------------------------------- start
def test_start_twice_starts_one_scheduler(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    runs = Calls()
    scheduler.add_task("t", runs.sync(), interval=60)
    scheduler.start()
    threads = threading.active_count()
    scheduler.start()
    scheduler.startup()
    assert threading.active_count() == threads
    assert scheduler.running
    runs.wait_for(1)
    manual_clock.advance(60)
    runs.wait_for(2)
    scheduler.get_all_jobs()  # flush
    assert len(scheduler.get_all_jobs()) == 2


def test_startup_is_an_alias_of_start(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    ran = threading.Event()
    scheduler.add_task("t", ran.set, interval=60)
    scheduler.startup()
    assert ran.wait(DEADLINE)


def test_tasks_added_after_start_run(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.start()
    ran = threading.Event()
    scheduler.add_task("t", ran.set, interval=60)
    assert ran.wait(DEADLINE)


def test_nothing_runs_before_start(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    ran = threading.Event()
    scheduler.add_task("t", ran.set, interval=60)
    assert not ran.wait(0.2)
    scheduler.start()
    assert ran.wait(DEADLINE)


# ------------------------------------------------------------------- shutdown
def test_shutdown_twice_is_a_no_op(make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture) -> None:
    scheduler = make_quiv()
    scheduler.add_task("t", noop, interval=60)
    scheduler.start()
    scheduler.shutdown()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="Quiv"):
        scheduler.shutdown()
        scheduler.stop()
    assert not scheduler.running
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_stop_is_an_alias_of_shutdown(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.add_task("t", noop, interval=60, delay=60)
    scheduler.start()
    directory, _ = _store_paths(scheduler)
    scheduler.stop()
    assert not scheduler.running
    assert not os.path.exists(directory)
    scheduler.shutdown()


def test_shutdown_of_a_scheduler_never_started(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.add_task("t", noop, interval=60)
    scheduler.shutdown()
    scheduler.shutdown()


def test_start_after_shutdown_is_refused(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.start()
    scheduler.shutdown()
    with pytest.raises(SchedulerStoppedError):
        scheduler.start()


def test_after_shutdown_state_methods_raise_but_cancel_and_listeners_do_not(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    task_id = scheduler.add_task("t", noop, interval=60)
    scheduler.start()
    job_id = ends.wait_for(1)[0].args[2].id
    scheduler.shutdown()
    with pytest.raises(SchedulerStoppedError):
        scheduler.add_task("late", noop, interval=60)
    with pytest.raises(SchedulerStoppedError):
        scheduler.get_task(task_id)
    with pytest.raises(SchedulerStoppedError):
        scheduler.get_all_tasks()
    with pytest.raises(SchedulerStoppedError):
        scheduler.get_all_jobs()
    with pytest.raises(SchedulerStoppedError):
        scheduler.get_job(job_id)
    with pytest.raises(SchedulerStoppedError):
        scheduler.pause_task(task_id)
    with pytest.raises(SchedulerStoppedError):
        scheduler.resume_task(task_id)
    with pytest.raises(SchedulerStoppedError):
        scheduler.run_task_immediately(task_id)
    with pytest.raises(SchedulerStoppedError):
        scheduler.remove_task(task_id)
    assert scheduler.cancel_job("00000000-0000-0000-0000-000000000000") is False
    scheduler.add_listener(Event.TASK_ADDED, noop)
    scheduler.remove_listener(Event.TASK_ADDED, noop)


def test_nothing_runs_after_shutdown(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    runs = Calls()
    scheduler.add_task("t", runs.sync(), interval=10)
    scheduler.start()
    runs.wait_for(1)
    scheduler.shutdown()
    manual_clock.advance(100)
    with pytest.raises(AssertionError):
        runs.wait_for(2, timeout=0.2)


def test_shutdown_sets_the_stop_event_of_running_jobs(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    ended = Calls()
    scheduler.add_listener(Event.JOB_CANCELLED, ended.sync())
    blocker = Blocker()
    scheduler.add_task("blocker", blocker, interval=60)
    scheduler.start()
    job_id = blocker.next_start()
    started = time.monotonic()
    scheduler.shutdown()
    assert time.monotonic() - started < DEADLINE - 1, "shutdown waited for the release, not the stop event"
    assert blocker.stop_seen[job_id] is True
    (call,) = ended.wait_for(1)
    assert call.args[2].id == job_id
    assert call.args[2].status == JobStatus.CANCELLED


def test_a_handler_ignoring_its_stop_event_cannot_hang_shutdown(
    make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture
) -> None:
    scheduler = make_quiv()
    events = Calls()
    for event in (Event.JOB_COMPLETED, Event.JOB_CANCELLED, Event.JOB_FAILED):
        scheduler.add_listener(event, events.sync())
    blocker = Blocker(return_on_stop=False)
    scheduler.add_task("stubborn", blocker, interval=60)
    scheduler.start()
    job_id = blocker.next_start()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="Quiv"):
        scheduler.shutdown(timeout=0.3)
    assert time.monotonic() - started < 2.5
    assert any(r.levelno == logging.WARNING for r in caplog.records), "a stuck job should be logged"
    # Let the handler return: its result is discarded and no event fires for it.
    blocker.release.set()
    assert blocker.returned.get(timeout=DEADLINE) == job_id
    with pytest.raises(AssertionError):
        events.wait_for(1, timeout=0.2)


# ------------------------------------------------------------ the private database
def test_database_lives_in_a_private_directory_and_is_deleted_on_shutdown(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.add_task("t", takes_anything, interval=60, delay=60, args=("secret",))
    scheduler.start()
    directory, path = _store_paths(scheduler)
    assert os.path.dirname(path) == directory
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.isfile(path)
    scheduler.shutdown()
    assert not os.path.exists(path)
    assert not os.path.exists(directory)


def test_each_scheduler_has_its_own_database(make_quiv: QuivFactory) -> None:
    first, second = make_quiv(), make_quiv()
    first.start()
    second.start()
    assert _store_paths(first)[0] != _store_paths(second)[0]
    first.add_task("only-in-first", noop, interval=60, delay=60)
    assert second.get_all_tasks() == []


def test_quiv_tables_stay_out_of_the_users_sqlmodel_metadata(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.add_task("t", noop, interval=60)
    scheduler.start()
    assert not [name for name in SQLModel.metadata.tables if "quiv" in name.lower()]
    engine = create_engine("sqlite://")
    try:
        SQLModel.metadata.create_all(engine)
        created = sa_inspect(engine).get_table_names()
    finally:
        engine.dispose()
    assert not [name for name in created if "quiv" in name.lower() or name.lower() in ("task", "job")]
