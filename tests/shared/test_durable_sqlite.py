"""The durable SQLite file: one process at a time, and what a restart finds in it.

In this mode the scheduler's own clock says when runs are due, so a
``ManualClock`` shared by two schedulers built one after the other stands
for a process that stops and starts again later. Other processes are real
ones (``subprocess``): the file lock is per process, and a crash is a
``SIGKILL``.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import quiv
from quiv import ConfigurationError, Event, JobStatus, Quiv, QuivConfig, TaskStatus
from quiv._schedule.options import MisfirePolicy
from quiv.testing import ManualClock

from .durable_support import DEADLINE, Events, Gate, LogRecords, offset, private_logger

ROOT = Path(quiv.__file__).resolve().parents[1]


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "QUIV_DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout of quiv."""
    return subprocess.run(
        _python(code), env=_env(), capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


#: Tries to start a scheduler on the file; prints what happened on its last line.
OPEN_AND_REPORT = """
import sys
from quiv import Quiv, ConfigurationError
q = Quiv(database_url=sys.argv[1])
try:
    q.start()
except ConfigurationError as exc:
    print("refused:", exc)
else:
    print("started")
finally:
    q.shutdown()
"""


def try_open_elsewhere(url: str) -> str:
    """What another process gets when it starts a scheduler on ``url``: its last line of output."""
    result = subprocess.run(
        [*_python(OPEN_AND_REPORT), url],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def db_path(sqlite_url: str) -> Path:
    return Path(sqlite_url.removeprefix("sqlite:///"))


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A permissive umask, so a 0600 file proves quiv chose the mode."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_restart_keeps_id_next_run_pause_and_history(
    sqlite_url: str, manual_clock: ManualClock, make_quiv: Callable[..., Quiv]
) -> None:
    """The same task declared again after a restart is the same task, paused, with its jobs."""
    first = make_quiv(database_url=sqlite_url, clock=manual_clock)
    task_id = first.add_task("report", lambda: None, interval=60, delay=60)
    first.start()
    first.run_task_immediately(task_id)
    job = first.wait_for_task(task_id, timeout=DEADLINE)
    assert job.status is JobStatus.COMPLETED
    before = first.get_task(task_id)
    first.pause_task(task_id)
    first.shutdown()

    manual_clock.advance(5)
    second = make_quiv(database_url=sqlite_url, clock=manual_clock)
    events = Events(second)
    assert second.add_task("report", lambda: None, interval=60, delay=60) == task_id
    second.start()
    after = second.get_task(task_id)
    assert after.status is TaskStatus.PAUSED
    assert after.next_run_at == before.next_run_at
    assert [j.id for j in second.get_all_jobs(task_id=task_id)] == [job.id]
    assert second.get_job(job.id).status is JobStatus.COMPLETED
    assert events.count(Event.TASK_ADDED) == 0
    assert events.count(Event.TASK_UPDATED) == 0


@pytest.mark.usefixtures("umask_022")
def test_the_file_is_private(sqlite_url: str, db_path: Path, make_quiv: Callable[..., Quiv]) -> None:
    """The database file (and SQLite's side files) are readable by their owner only."""
    scheduler = make_quiv(database_url=sqlite_url)
    scheduler.add_task("noop", lambda: None, interval=60)
    scheduler.start()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    for side in (Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600, side


def test_another_process_is_refused_until_the_first_shuts_down(
    sqlite_url: str, db_path: Path, make_quiv: Callable[..., Quiv]
) -> None:
    """Another process is refused (the file is in use) until the first shuts down."""
    scheduler = make_quiv(database_url=sqlite_url)
    scheduler.start()
    line = try_open_elsewhere(sqlite_url)
    assert line.startswith("refused:")
    assert "in use" in line
    assert str(db_path) in line
    scheduler.shutdown()
    assert try_open_elsewhere(sqlite_url) == "started"


def test_a_second_scheduler_in_this_process_is_refused_too(
    sqlite_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """The lock is taken per open file: a second ``Quiv`` here is refused at first use, then allowed."""
    first = make_quiv(database_url=sqlite_url)
    first.add_task("noop", lambda: None, interval=60)
    second = make_quiv(database_url=sqlite_url)  # building it is fine
    with pytest.raises(ConfigurationError, match="in use"):
        second.start()
    first.shutdown()
    third = make_quiv(database_url=sqlite_url)
    third.start()
    assert third.running


#: Starts a scheduler whose job never returns, says so, and waits to be killed.
CRASHING_RUN = """
import sys, threading, time
from quiv import Quiv, QuivConfig
q = Quiv(config=QuivConfig(database_url=sys.argv[1], poll_seconds=0.2))
started = threading.Event()
def stuck():
    started.set()
    while True:
        time.sleep(1)
q.add_task("stuck", stuck, interval=3600, max_retries=1, retry_backoff=0)
q.start()
started.wait(30)
print("running", flush=True)
time.sleep(60)
"""


def test_a_crashed_run_leaves_its_job_abandoned_on_the_next_start(
    sqlite_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Kill a process in the middle of a job: the next start marks that job abandoned and retries it."""
    proc = subprocess.Popen(
        [*_python(CRASHING_RUN), sqlite_url], env=_env(), stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()

    logger = private_logger()
    records = LogRecords(logger)
    scheduler = make_quiv(config=QuivConfig(database_url=sqlite_url, poll_seconds=0.2), logger=logger)
    events = Events(scheduler)
    retried = threading.Event()
    task_id = scheduler.add_task("stuck", retried.set, interval=3600, max_retries=1, retry_backoff=0)
    scheduler.start()

    (job,) = events.wait_jobs(Event.JOB_FAILED, 1)
    assert job.task_id == task_id
    assert job.status is JobStatus.ABANDONED
    assert "abandoned" in (job.error_message or "")
    assert scheduler.get_job(job.id).status is JobStatus.ABANDONED
    assert job.worker not in (None, scheduler.worker_id)
    records.wait_for("abandoned", level=40)
    assert retried.wait(DEADLINE), "the abandoned run was not retried"
    (retry,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
    assert (retry.attempt, retry.retry_of) == (2, job.id)
    assert events.count(Event.JOB_FAILED) == 1


def _downtime(
    sqlite_url: str, manual_clock: ManualClock, make_quiv: Callable[..., Quiv], misfire: MisfirePolicy
) -> tuple[Quiv, Events, str, float]:
    """Run a 10 s task once at +10 s, stop, move the clock to +55 s, start again.

    Returns the new scheduler, its events, the task id and the start instant (as a timestamp).
    """
    start = manual_clock.timestamp()
    first = make_quiv(config=QuivConfig(database_url=sqlite_url, poll_seconds=0.2), clock=manual_clock)
    ran = Events(first)
    task_id = first.add_task("beat", lambda: None, interval=10, delay=10, misfire=misfire)
    first.start()
    manual_clock.advance(10)
    ran.wait_count(Event.JOB_COMPLETED, 1)
    first.shutdown()

    manual_clock.advance(45)
    second = make_quiv(config=QuivConfig(database_url=sqlite_url, poll_seconds=0.2), clock=manual_clock)
    events = Events(second)
    assert second.add_task("beat", lambda: None, interval=10, delay=10, misfire=misfire) == task_id
    second.start()
    return second, events, task_id, start


def _slots(scheduler: Quiv, task_id: str, status: JobStatus, start: float) -> list[float]:
    return sorted(offset(j, start) for j in scheduler.get_all_jobs(status, task_id=task_id))


def test_downtime_with_skip_records_every_slot_as_missed(
    sqlite_url: str, manual_clock: ManualClock, make_quiv: Callable[..., Quiv]
) -> None:
    """``misfire="skip"``: the four slots of the downtime are missed, none runs, the next is ahead."""
    scheduler, events, task_id, start = _downtime(sqlite_url, manual_clock, make_quiv, "skip")
    missed = events.wait_jobs(Event.JOB_MISSED, 4)
    assert sorted(offset(j, start) for j in missed) == [20, 30, 40, 50]
    assert _slots(scheduler, task_id, JobStatus.MISSED, start) == [20, 30, 40, 50]
    assert all(j.status is JobStatus.MISSED for j in missed)
    next_run = scheduler.get_task(task_id).next_run_at
    assert next_run is not None
    assert next_run.timestamp() - start == pytest.approx(60)
    assert events.count(Event.JOB_STARTED) == 0
    manual_clock.advance(5)
    events.wait_count(Event.JOB_COMPLETED, 1)
    assert _slots(scheduler, task_id, JobStatus.COMPLETED, start) == [10, 60]
    assert events.count(Event.JOB_MISSED) == 4


def test_downtime_with_run_once_runs_the_latest_slot_once(
    sqlite_url: str, manual_clock: ManualClock, make_quiv: Callable[..., Quiv]
) -> None:
    """``misfire="run_once"``: one run for the latest slot (+50 s), the three before it missed."""
    scheduler, events, task_id, start = _downtime(sqlite_url, manual_clock, make_quiv, "run_once")
    (job,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
    assert offset(job, start) == 50
    assert _slots(scheduler, task_id, JobStatus.MISSED, start) == [20, 30, 40]
    assert events.count(Event.JOB_MISSED) == 3
    assert _slots(scheduler, task_id, JobStatus.COMPLETED, start) == [10, 50]
    next_run = scheduler.get_task(task_id).next_run_at
    assert next_run is not None
    assert next_run.timestamp() - start == pytest.approx(60)


def test_advancing_a_manual_clock_wakes_the_scheduler(
    sqlite_url: str, manual_clock: ManualClock, make_quiv: Callable[..., Quiv]
) -> None:
    """A run that comes due because the clock moved starts at once, not at the next poll."""
    scheduler = make_quiv(config=QuivConfig(database_url=sqlite_url, poll_seconds=60), clock=manual_clock)
    events = Events(scheduler)
    scheduler.add_task("later", lambda: None, interval=30, delay=30)
    scheduler.start()
    began = time.monotonic()
    manual_clock.advance(31)
    events.wait_count(Event.JOB_COMPLETED, 1, timeout=5)
    assert time.monotonic() - began < 5
    (job,) = events.wait_jobs(Event.JOB_COMPLETED, 1)
    assert job.scheduled_for == manual_clock.now() - timedelta(seconds=1)


def test_a_jumping_clock_never_makes_the_only_process_abandon_its_own_job(
    sqlite_url: str, manual_clock: ManualClock, make_quiv: Callable[..., Quiv]
) -> None:
    """One process owns the file, so it can never be presumed dead, however far the clock jumps.

    The clock is moved forward by more than ``dead_after_seconds`` again and again for a second while a
    job runs (heartbeats every 0.05 s, so many of them see a jump): the job must still complete.
    """
    logger = private_logger()
    records = LogRecords(logger)
    config = QuivConfig(
        database_url=sqlite_url, heartbeat_seconds=0.05, dead_after_seconds=0.1, poll_seconds=0.5
    )
    scheduler = make_quiv(config=config, clock=manual_clock, logger=logger)
    events = Events(scheduler)
    gate = Gate()
    task_id = scheduler.add_task("long", gate, interval=10**8, delay=10**8)
    scheduler.start()
    scheduler.run_task_immediately(task_id)
    job_id = gate.next_start()
    until = time.monotonic() + 1.0
    while time.monotonic() < until:
        manual_clock.advance(1)
        time.sleep(0.0005)  # paces the jumps; nothing is awaited here
    gate.release.set()
    done = events.wait_job(Event.JOB_COMPLETED, job_id)
    assert done.status is JobStatus.COMPLETED
    assert events.count(Event.JOB_FAILED) == 0
    assert scheduler.get_job(job_id).status is JobStatus.COMPLETED
    assert not [m for m in records.messages() if "presumed" in m]
