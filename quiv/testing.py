"""Helpers for testing code that uses quiv.

:class:`ManualClock` replaces the scheduler's clock so a test decides when
time moves: ``Quiv(clock=ManualClock())`` never runs anything until the test
advances the clock past a due time, and advancing wakes the scheduler at once,
with no sleeping.

For applications that declare tasks with ``@scheduler.task``/``@registry.task``:
:func:`fresh_scheduler` builds and starts a new scheduler from those
declarations (the application's own scheduler is left alone),
:func:`run_now` runs a declared task at once and returns its finished job,
and :class:`JobRecorder` waits for the jobs that end while time is driven by
a :class:`ManualClock`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

from quiv._core.scheduler import Quiv
from quiv._declare.registry import TaskRegistry
from quiv._enums import Event, TaskStatus

if TYPE_CHECKING:
    from quiv._core.clock import Clock
    from quiv.models import Job, Task
    from quiv.types import TaskId

__all__ = ["JobRecorder", "ManualClock", "fresh_scheduler", "run_now"]

#: Seconds the helpers wait for a job before raising ``TimeoutError``, unless told otherwise.
DEFAULT_TIMEOUT = 10.0
_JOB_EVENTS = (
    Event.JOB_STARTED,
    Event.JOB_COMPLETED,
    Event.JOB_FAILED,
    Event.JOB_CANCELLED,
    Event.JOB_MISSED,
)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(timezone.utc)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def timestamp(self) -> float:
        return self.now().timestamp()

    def wait_seconds(self, deadline: float) -> float | None:
        # Time only moves through advance()/set(), which wake every subscriber.
        return None

    def subscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if wake in self._subscribers:
                self._subscribers.remove(wake)

    def advance(self, seconds: float) -> datetime:
        """Move time forward by ``seconds`` and wake the schedulers using this clock."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back in time: advance({seconds!r})")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            now = self._now
        self._wake()
        return now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive is read as UTC) and wake the schedulers."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        with self._lock:
            self._now = when.astimezone(timezone.utc)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for wake in subscribers:
            wake()


@contextmanager
def fresh_scheduler(
    *sources: Quiv | TaskRegistry,
    clock: Clock | None = None,
    pool_size: int = 10,
    start: bool = True,
) -> Iterator[Quiv]:
    """A new scheduler holding the declarations of ``sources``; started, and shut down on exit.

    ``sources`` are schedulers (their :attr:`~quiv.Quiv.registry`, with
    every registry they include) or registries. Declarations are read, not
    consumed, so every test can build its own scheduler from the same
    application modules.
    """
    scheduler = Quiv(pool_size=pool_size, clock=clock)
    try:
        for source in sources:
            scheduler.include_registry(source if isinstance(source, TaskRegistry) else source.registry)
        if start:
            scheduler.start()
        yield scheduler
    finally:
        scheduler.shutdown()


class JobRecorder:
    """Records the jobs that end on a scheduler while it is open, and waits for them.

    Use it as a context manager around whatever makes jobs run (advancing a
    :class:`ManualClock`, ``run_task_immediately``), then :meth:`next` to
    get each ended job in order. It listens to the ``JOB_*`` events like any
    listener: call it from a synchronous test (an event loop blocked in the
    test would never deliver them).
    """

    def __init__(self, scheduler: Quiv) -> None:
        self._scheduler = scheduler
        self._cond = threading.Condition()
        self._ended: list[Job] = []
        self._open = False

    def __enter__(self) -> JobRecorder:
        for event in _JOB_EVENTS:
            self._scheduler.add_listener(event, self._record)
        self._open = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        for event in _JOB_EVENTS:
            self._scheduler.remove_listener(event, self._record)

    def _record(self, event: Event, task: Task, job: Job) -> None:
        with self._cond:
            if event is not Event.JOB_STARTED:
                self._ended.append(job)
            self._cond.notify_all()

    @property
    def jobs(self) -> list[Job]:
        """The ended jobs not yet returned by :meth:`next`, oldest first."""
        with self._cond:
            return list(self._ended)

    def next(
        self,
        task: Callable[..., Any] | TaskId | None = None,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Job:
        """Wait for and return the first recorded ended job (of ``task``: a declared function or a task id).

        Raises ``TimeoutError`` if none ends within ``timeout`` seconds.
        """
        task_id = None if task is None else self._task_id(task, name)
        return self._next(task_id, frozenset(), time.monotonic() + timeout, timeout)

    def _task_id(self, task: Callable[..., Any] | TaskId, name: str | None) -> TaskId:
        return task if isinstance(task, str) else self._scheduler.task_id(task, name=name)

    def _next(self, task_id: TaskId | None, skip: frozenset[str], deadline: float, timeout: float) -> Job:
        if not self._open:
            raise RuntimeError("JobRecorder.next() needs the recorder open: use it in a 'with' block")
        with self._cond:
            while True:
                for index, job in enumerate(self._ended):
                    if (task_id is None or job.task_id == task_id) and job.id not in skip:
                        return self._ended.pop(index)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    which = "any task" if task_id is None else f"task {task_id}"
                    raise TimeoutError(f"no job of {which} ended within {timeout} s")
                self._cond.wait(remaining)

    def _wait_until_not_due(self, task_id: TaskId, now: Callable[[], datetime], deadline: float) -> None:
        """Wait until no scheduled run of the task is due but not yet started."""
        with self._cond:
            while True:
                task = self._scheduler.get_task(task_id)
                if task.status is not TaskStatus.ACTIVE or task.next_run_at > now():
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the due run of task {task_id} did not start")
                self._cond.wait(remaining)


def run_now(
    scheduler: Quiv,
    task: Callable[..., Any],
    *,
    name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Job:
    """Run the declared ``task`` at once on a started scheduler and return its job once it has ended.

    Listeners fire as for any run. A scheduled run that is already due or
    running goes first (a task never runs twice at once); the job returned
    is the one this call asked for.
    """
    task_id = scheduler.task_id(task, name=name)
    deadline = time.monotonic() + timeout
    with JobRecorder(scheduler) as recorder:
        recorder._wait_until_not_due(task_id, scheduler._clock.now, deadline)
        earlier = frozenset(job.id for job in scheduler.get_all_jobs() if job.task_id == task_id)
        scheduler.run_task_immediately(task_id)
        return recorder._next(task_id, earlier, deadline, timeout)
