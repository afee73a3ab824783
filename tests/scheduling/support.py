"""Helpers for the scheduling tests: fixed instants, a gated handler, a record of ended jobs.

Nothing here sleeps to wait for an outcome: every wait is on an event or a
queue and has a deadline after which the test fails.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from quiv import Event, Job, Quiv, Task

__all__ = [
    "DEADLINE",
    "START",
    "Ended",
    "Gate",
    "LogRecords",
    "QuivFactory",
    "at",
    "eventually",
    "noop",
]

#: How long any wait for something that must happen may take before the test fails.
DEADLINE = 5.0
#: Where the ManualClock of the behaviour tests starts (a Monday, outside any DST change).
START = datetime(2024, 1, 1, tzinfo=timezone.utc)

QuivFactory = Callable[..., Quiv]


def at(seconds: float) -> datetime:
    """``START`` plus ``seconds``."""
    return START + timedelta(seconds=seconds)


def eventually(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes.

    Only for outcomes no event reports (a background purge); never a fixed sleep.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


class Gate:
    """A handler that reports each start, then returns when released (or when its job is told to stop).

    ``fail=True`` makes it raise ``RuntimeError`` once it returns.
    """

    def __init__(self, *, fail: bool = False) -> None:
        self.release = threading.Event()
        self.started: queue.Queue[str] = queue.Queue()
        self.stops: dict[str, threading.Event] = {}
        self.fail = fail

    def __call__(self, _job_id: str, _stop_event: threading.Event) -> None:
        self.stops[_job_id] = _stop_event
        self.started.put(_job_id)
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and not _stop_event.is_set():
            if self.release.wait(0.005):
                break
        if self.fail:
            raise RuntimeError("gate failed on purpose")

    def next_start(self, timeout: float = DEADLINE) -> str:
        """Id of the next job that started; fails the test if none starts in time."""
        try:
            return self.started.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no job of the gate started within {timeout} s") from None


class Ended:
    """Records, in order, the jobs that end on a scheduler (through its JOB_* listeners)."""

    def __init__(self, scheduler: Quiv) -> None:
        self._queue: queue.Queue[Job] = queue.Queue()
        for event in (Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED):
            scheduler.add_listener(event, self._record)

    def _record(self, event: Event, task: Task, job: Job) -> None:
        self._queue.put(job)

    def next(self, timeout: float = DEADLINE) -> Job:
        """The next job that ended; fails the test if none ends in time."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no job ended within {timeout} s") from None

    def none_within(self, seconds: float) -> bool:
        """True if no further job ends in ``seconds`` (a bounded wait for a negative outcome)."""
        try:
            job = self._queue.get(timeout=seconds)
        except queue.Empty:
            return True
        self._queue.put(job)
        return False


class LogRecords(logging.Handler):
    """Collects the records of a logger and lets a test wait for one containing some text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._cond = threading.Condition()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        with self._cond:
            return [r.getMessage() for r in self.records if r.levelno >= level]

    def wait_for(self, text: str, level: int = logging.WARNING, timeout: float = DEADLINE) -> str:
        """The first message at ``level`` or above containing ``text``; fails the test if none comes."""

        def found() -> str | None:
            return next((m for m in self.messages(level) if text in m), None)

        with self._cond:
            self._cond.wait_for(lambda: found() is not None, timeout)
        message = found()
        assert message is not None, f"no log message containing {text!r}; got {self.messages()}"
        return message


def noop(*args: Any, **kwargs: Any) -> None:
    """A handler that does nothing."""
