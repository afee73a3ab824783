"""Helpers for the in-process tests of the durable and shared modes.

Several ``Quiv`` instances in one process on one PostgreSQL database act as
separate workers, so these helpers record what each instance sees (events,
log lines) and read the tables directly. Every wait has a deadline and ends
as soon as the awaited outcome is there: nothing sleeps a fixed time to let
something happen.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from scheduling.support import LogRecords as BaseLogRecords

from quiv import Event, Job, Quiv, QuivConfig, Task

__all__ = [
    "DEADLINE",
    "Events",
    "Gate",
    "LogRecords",
    "eventually",
    "fast_config",
    "offset",
    "private_logger",
    "shutdown_together",
    "sql",
    "workers",
]

#: How long a wait for something that must happen may take before the test fails.
DEADLINE = 10.0

JOB_END_EVENTS = (Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED)


def fast_config(url: str, **overrides: Any) -> QuivConfig:
    """A config that notices things quickly: heartbeats every 0.2 s, a poll floor of 0.5 s."""
    values: dict[str, Any] = {
        "database_url": url,
        "pool_size": 4,
        "heartbeat_seconds": 0.2,
        "dead_after_seconds": 3.0,
        "poll_seconds": 0.5,
        "connect_timeout_seconds": 5,
    }
    values.update(overrides)
    return QuivConfig(**values)


#: Schedulers built by :func:`workers` and not yet shut down by :func:`shutdown_together`.
_built: list[Quiv] = []


def workers(
    make_quiv: Callable[..., Quiv], url: str, n: int, **overrides: Any
) -> list[tuple[Quiv, LogRecords]]:
    """``n`` schedulers on one database, each with a logger of its own (and its records).

    ``make_quiv`` shuts them down after the test in any case; :func:`shutdown_together` does it sooner.
    """
    built = []
    for _ in range(n):
        logger = private_logger()
        records = LogRecords(logger)
        scheduler = make_quiv(config=fast_config(url, **overrides), logger=logger)
        _built.append(scheduler)
        built.append((scheduler, records))
    return built


def shutdown_together() -> None:
    """Shut down every scheduler :func:`workers` built, all at once.

    Stopping a PostgreSQL scheduler waits for its LISTEN thread (up to a second):
    doing it in parallel keeps a test with several instances quick.
    """
    schedulers, _built[:] = list(_built), []
    threads = [threading.Thread(target=q.shutdown, kwargs={"timeout": 5}) for q in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)


def offset(job: Job, start: float) -> float:
    """Seconds from ``start`` (a timestamp) to the slot ``job`` was for, rounded to the millisecond."""
    assert job.scheduled_for is not None, job
    return round(job.scheduled_for.timestamp() - start, 3)


def eventually(predicate: Callable[[], bool], timeout: float = DEADLINE, step: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; for outcomes only the database shows."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def sql(conninfo: str, statement: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[Any]:
    """Run one statement in its own committed transaction; return its rows (``[]`` when it has none)."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description is not None else []


def private_logger(prefix: str = "quiv.test") -> logging.Logger:
    """A logger of its own, so each scheduler's records can be captured apart."""
    return logging.getLogger(f"{prefix}.{uuid.uuid4().hex[:8]}")


class Events:
    """Everything the listeners of one or more schedulers receive, in order, with waits on it.

    Each record notes which scheduler (its index in the constructor's arguments) heard it.
    """

    def __init__(self, *schedulers: Quiv, events: Sequence[Event] = tuple(Event)) -> None:
        self._cond = threading.Condition()
        self.seen: list[tuple[int, Event, Task, Job | None]] = []
        for index, scheduler in enumerate(schedulers):
            for event in events:
                scheduler.add_listener(event, functools.partial(self._record, index))

    def _record(self, source: int, event: Event, task: Task, job: Job | None = None) -> None:
        with self._cond:
            self.seen.append((source, event, task, job))
            self._cond.notify_all()

    def of(self, event: Event, source: int | None = None) -> list[tuple[Task, Job | None]]:
        """The (task, job) of each ``event`` so far, heard by ``source`` (default: by any)."""
        with self._cond:
            return [(t, j) for i, e, t, j in self.seen if e is event and source in (None, i)]

    def jobs(self, event: Event, source: int | None = None) -> list[Job]:
        return [job for _task, job in self.of(event, source) if job is not None]

    def sources(self, event: Event, job_id: str) -> list[int]:
        """Which schedulers heard ``event`` for job ``job_id`` (once each time they heard it)."""
        with self._cond:
            return [i for i, e, _t, j in self.seen if e is event and j is not None and j.id == job_id]

    def count(self, event: Event, source: int | None = None) -> int:
        return len(self.of(event, source))

    def wait_count(
        self, event: Event, n: int, timeout: float = DEADLINE, source: int | None = None
    ) -> list[tuple[Task, Job | None]]:
        """The first ``n`` occurrences of ``event``; fails the test if fewer come in time."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.of(event, source)) >= n, timeout)
        found = self.of(event, source)
        assert len(found) >= n, f"{event.name} fired {len(found)} time(s), expected {n}: {self.seen}"
        return found[:n]

    def wait_jobs(
        self, event: Event, n: int, timeout: float = DEADLINE, source: int | None = None
    ) -> list[Job]:
        """The jobs of the first ``n`` occurrences of a ``JOB_*`` event; fails the test if fewer come."""
        jobs = [job for _task, job in self.wait_count(event, n, timeout, source)]
        assert all(job is not None for job in jobs)
        return [job for job in jobs if job is not None]

    def wait_job(self, event: Event, job_id: str, timeout: float = DEADLINE) -> Job:
        """The ``event`` of job ``job_id``; fails the test if it does not come in time."""

        def match() -> Job | None:
            return next((j for j in self.jobs(event) if j.id == job_id), None)

        with self._cond:
            self._cond.wait_for(lambda: match() is not None, timeout)
        job = match()
        assert job is not None, f"no {event.name} for job {job_id} within {timeout} s: {self.seen}"
        return job


class Gate:
    """A handler that reports each start, then returns when released or when its stop event is set.

    ``fail=True`` makes every run raise once it returns; ``ignore_stop=True`` makes a
    run wait for the release (or the deadline) even after its stop event is set.
    """

    def __init__(self, *, fail: bool = False, ignore_stop: bool = False) -> None:
        self.release = threading.Event()
        self.started: queue.Queue[str] = queue.Queue()
        self.stops: dict[str, threading.Event] = {}
        self.fail = fail
        self.ignore_stop = ignore_stop
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, _job_id: str, _stop_event: threading.Event) -> None:
        with self._lock:
            self.calls += 1
        self.stops[_job_id] = _stop_event
        self.started.put(_job_id)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and (self.ignore_stop or not _stop_event.is_set()):
            if self.release.wait(0.01):
                break
        if self.fail:
            raise RuntimeError("the gate failed on purpose")

    def next_start(self, timeout: float = DEADLINE) -> str:
        """The id of the next job that started; fails the test if none starts in time."""
        try:
            return self.started.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no job of the gate started within {timeout} s") from None


class LogRecords(BaseLogRecords):
    """Collects a logger's records (the logger sends them here only); a test can wait for one."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False


def wait_for_listeners(conninfo: str, count: int, timeout: float = DEADLINE) -> None:
    """Until ``count`` schedulers listen (their last LISTEN is on ``quiv_ended``): a NOTIFY sent
    before could be lost, and a listener that connects later wakes every remote waiter once."""
    from quiv._durable.store import ENDED

    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = %s"
    assert eventually(lambda: sql(conninfo, query, (f"LISTEN {ENDED}",))[0][0] >= count, timeout), (
        f"fewer than {count} schedulers listen"
    )
