"""The public operations of ``Quiv`` when it has a ``database_url``.

:class:`quiv.Quiv` checks its arguments the same way in every mode, then
hands an operation here when state lives in a durable database: each one is
a transaction of the store (any task, whichever process declared it) and
the events fire in the process that made the change.

The store prepares itself (connect, create the tables, lock a SQLite file) in
the first transaction of any operation, whether or not the scheduler was
started: a ``Quiv`` that is never started is a client (the ``quiv`` command
line is one). It reads and changes the shared state but registers no worker
and claims no run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from quiv._config import QuivConfig
from quiv._core.clock import Clock
from quiv._core.runner import JobRunner
from quiv._core.task import Plan, TaskState, job_model, utc
from quiv._core.waiters import SyncWaiter, release_all
from quiv._declare.checks import check_task_handler
from quiv._delivery.events import Listeners
from quiv._durable.coordinator import RUNNING, Coordinator
from quiv._durable.store import DurableStore, WorkerRow
from quiv._durable.url import DatabaseTarget
from quiv._enums import Event, JobStatus, TaskStatus
from quiv._exceptions import (
    ConfigurationError,
    JobNotFoundError,
    TaskNotFoundError,
    TaskNotScheduledError,
)
from quiv._store.base import JobQuery

if TYPE_CHECKING:
    from quiv.models import Job, SchedulerStats, Task

__all__ = ["DurableMode"]

#: How often a wait on a job running in another process looks at its row when no NOTIFY can wake it.
REMOTE_WAIT_POLL_SECONDS = 0.1
#: A remote wait marks its task as awaited for this long (database clock), renewed halfway.
AWAIT_SECONDS = 60.0
#: Changes update_task cannot make in the durable modes: the code that declares a task owns them.
_CODE_OWNED = ("func", "task_name", "progress_callback")
#: Rows a wait for a task's next job skips: still running, or a slot nobody ran.
_NOT_ENDED = (JobStatus.RUNNING.value, JobStatus.MISSED.value)


class DurableMode:
    """Durable-mode implementations of the facade's operations."""

    def __init__(
        self,
        target: DatabaseTarget,
        config: QuivConfig,
        *,
        clock: Clock,
        timestamp: Any,
        timezone: tzinfo,
        listeners: Listeners,
        runner: JobRunner,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        if target.kind == "postgresql":
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise ConfigurationError(
                    "a postgresql database_url needs psycopg 3: pip install 'quiv[postgres]'"
                ) from None
        self.target = target
        self.timezone = timezone
        self.listeners = listeners
        self.logger = logger
        self.store = DurableStore(
            target,
            clock_now=timestamp,
            default_timezone=timezone,
            connect_timeout=config.connect_timeout_seconds,
            dead_after=config.dead_after_seconds,
            logger=logger,
            # A live process looks for due runs at least every poll_seconds: a slot that passed
            # longer ago than that passed while no process was there to run it.
            late_window=config.poll_seconds,
            pool_size=config.pool_size,
            # notify=False is the setting for a transaction-mode pooler, which may run the next
            # statement on a server connection that never prepared it.
            prepared_statements=config.notify,
        )
        self.coordinator = Coordinator(
            self.store,
            pool_size=config.pool_size,
            clock=clock,
            listeners=listeners,
            runner=runner,
            logger=logger,
            heartbeat=config.heartbeat_seconds,
            dead_after=config.dead_after_seconds,
            poll=config.poll_seconds,
            notify=config.notify,
            retention=float(config.history_retention_seconds),
        )

    @property
    def worker_id(self) -> str:
        return self.coordinator.worker_id

    # --------------------------------------------------------------- tasks
    def add(self, task: TaskState) -> str:
        view, outcome = self.coordinator.declare(task)
        event = {"added": Event.TASK_ADDED, "updated": Event.TASK_UPDATED}.get(outcome)
        if event is not None:
            self.listeners.emit_task(event, view)
        return task.id

    def update(self, task_id: str, changes: dict[str, Any], rescheduling: frozenset[str]) -> Task:
        owned = [name for name in _CODE_OWNED if name in changes]
        if owned:
            raise ConfigurationError(
                f"update_task cannot change {', '.join(owned)} with a database_url: the code that "
                "declares the task owns them (change it there and restart)"
            )

        def step(state: TaskState, now: float) -> Plan:
            settings = state.settings.merge(
                changes, task_name=state.name, default_timezone=self.timezone, keep_run_at=state.next_run
            )
            here = self.coordinator.local.get(state.name)
            if here is not None and ("args" in changes or "kwargs" in changes):
                # The handler is known here: check the new arguments against it, as the default mode does.
                check_task_handler(here.state.func, *settings.arguments())
            return state.update(settings, now, reschedule=bool(rescheduling & set(changes)))

        view = self.coordinator.transition(task_id, "update a task", step)
        model = view.model()
        listeners = self.listeners.of(Event.TASK_UPDATED)
        if listeners:
            self.listeners.dispatcher.emit(listeners, (Event.TASK_UPDATED, model))
        return model

    def remove(self, task_id: str) -> None:
        view, running = self.store.remove(task_id)
        self.coordinator.forget(view.name)
        if running is not None:
            self.coordinator.cancel_local(running, "cancelled: its task was removed")
        with self.coordinator.lock:
            waiters = self.coordinator.waiters.take("task", task_id)
        release_all(
            waiters,
            None,
            TaskNotFoundError(f"task {task_id!r} was removed before a job of it ended"),
            self.logger,
        )
        self.coordinator.wake()
        self.listeners.emit_task(Event.TASK_REMOVED, view)

    def pause(self, task_id: str) -> None:
        view = self.coordinator.transition(task_id, "pause a task", lambda state, _now: state.pause())
        self.listeners.emit_task(Event.TASK_PAUSED, view)

    def resume(self, task_id: str, after: float) -> None:
        view = self.coordinator.transition(
            task_id, "resume a task", lambda state, now: state.resume(now + after)
        )
        self.listeners.emit_task(Event.TASK_RESUMED, view)

    def run_now(self, task_id: str, link: object | None = None) -> int:
        instruments = self.coordinator.runner.instruments

        def step(state: TaskState, now: float) -> Plan:
            if not state.can_run_now():
                raise TaskNotScheduledError(
                    f"task {task_id!r} is a run-once task that has already started; it cannot run again"
                )
            plan = state.run_now(now)
            if link is not None and instruments is not None:
                # Before the commit: this process may claim the run as soon as it is visible.
                instruments.expect(state.id, now, link)
            return plan

        self.coordinator.transition(task_id, "run a task now", step)
        return 1

    def get_task(self, task_id: str) -> Task:
        return self.store.task_view(task_id, self.coordinator.local).model()

    def get_all_tasks(self, include_run_once: bool) -> list[Task]:
        views = self.store.task_views(self.coordinator.local, include_run_once)
        return [view.model() for view in views]

    # ---------------------------------------------------------------- jobs
    def cancel(self, job_id: str) -> bool:
        return self.coordinator.cancel(job_id)

    def get_job(self, job_id: str) -> Job:
        # The row is the truth, even for a job running here: another process may have ended it
        # (abandoned, when this one was presumed dead) while its handler still runs.
        stored = self.store.get_job(job_id)
        if stored is not None:
            return job_model(tuple(stored))
        with self.coordinator.lock:
            job = self.coordinator.live.get(job_id)
            row = job.row() if job is not None else None
        if row is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return job_model(row)

    def wait_for_job(self, job_id: str, timeout: float | None) -> Job:
        """A job running here wakes its waiter when it ends; so does one running elsewhere (NOTIFY)."""
        coordinator = self.coordinator
        waiter = SyncWaiter()
        with coordinator.lock:
            here = job_id in coordinator.live
            if here:
                coordinator.waiters.add("job", job_id, waiter)
        if here:
            return self._block(waiter, timeout, f"job {job_id!r} did not end within {timeout} s")
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get_job(job_id)
        if job.status is not JobStatus.RUNNING:
            return job
        with _RemoteWait(self, job.task_id, job_id) as remote:
            while True:
                job = self.get_job(job_id)
                if job.status is not JobStatus.RUNNING:
                    return job
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job_id!r} did not end within {timeout} s")
                remote.sleep(deadline)

    def wait_for_task(self, task_id: str, timeout: float | None) -> Job:
        """The next job of the task to end, in this process or any other."""
        self.get_task(task_id)  # raises TaskNotFoundError
        coordinator = self.coordinator
        remote = _RemoteWait(self, task_id, task_id)
        waiter = SyncWaiter(poke=remote.event)
        with coordinator.lock:
            coordinator.waiters.add("task", task_id, waiter)
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = {
            j.id
            for j in self.store.list_jobs(JobQuery(task_id=task_id, newest_first=True, limit=50))
            if j.status != JobStatus.RUNNING.value
        }

        def ended() -> Job | None:
            for row in self.store.list_jobs(JobQuery(task_id=task_id, newest_first=True, limit=50)):
                if row.id not in seen and row.status not in _NOT_ENDED:
                    return job_model(tuple(row))
            return None

        # The jobs that had ended are known before the task is marked as awaited (a transaction of
        # its own): a job that ends meanwhile is not in ``seen``, so the first read finds it.
        try:
            with remote:
                while True:
                    if waiter.wait(0):
                        if waiter.error is not None:
                            raise waiter.error
                        assert waiter.job is not None
                        return waiter.job
                    job = ended()
                    if job is not None:
                        return job
                    try:
                        self.get_task(task_id)
                    except TaskNotFoundError:
                        # Removed, maybe by another process; a job that ended just before still counts.
                        job = ended()
                        if job is not None:
                            return job
                        raise TaskNotFoundError(
                            f"task {task_id!r} was removed before a job of it ended"
                        ) from None
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError(f"no job of task {task_id!r} ended within {timeout} s")
                    remote.sleep(deadline)
        finally:
            with coordinator.lock:
                coordinator.waiters.discard(waiter)

    def _block(self, waiter: SyncWaiter, timeout: float | None, message: str) -> Job:
        if not waiter.wait(timeout):
            with self.coordinator.lock:
                self.coordinator.waiters.discard(waiter)
            if not waiter.wait(0):
                raise TimeoutError(message)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.job is not None
        return waiter.job

    # --------------------------------------------------------------- stats
    def stats(self, pool_size: int, retention: float) -> SchedulerStats:
        from quiv.models import SchedulerStats

        coordinator = self.coordinator
        with coordinator.lock:
            busy = coordinator.busy
        # The oldest running job of any process, like running_jobs (counted from the shared table).
        oldest = next(iter(self.store.list_jobs(JobQuery(status=JobStatus.RUNNING.value, limit=1))), None)
        tasks_by_status = dict.fromkeys((s.value for s in TaskStatus), 0)
        tasks_by_status.update(self.store.task_counts())
        jobs_by_status = dict.fromkeys((s.value for s in JobStatus), 0)
        jobs_by_status.update(self.store.count_jobs())
        last_wake, last_start = coordinator.last_wake, coordinator.last_job_start
        return SchedulerStats(
            tasks_by_status=tasks_by_status,
            jobs_by_status=jobs_by_status,
            running_jobs=jobs_by_status[JobStatus.RUNNING.value],
            pool_size=pool_size,
            free_workers=max(0, pool_size - busy),
            oldest_running_job_id=None if oldest is None else oldest.id,
            oldest_running_job_started_at=None if oldest is None else utc(oldest.started_at),
            completed_in_window=jobs_by_status[JobStatus.COMPLETED.value],
            failed_in_window=jobs_by_status[JobStatus.FAILED.value],
            retention_seconds=retention,
            last_wake_at=None if last_wake is None else utc(last_wake),
            last_job_started_at=None if last_start is None else utc(last_start),
        )

    def workers(self) -> tuple[float, list[WorkerRow]]:
        """The processes registered in the database (with the database's time now), for ``quiv stats``."""
        return self.store.list_workers()

    def worker_health(self) -> tuple[int, float | None, float | None]:
        """Live processes, this one's heartbeat age and the stalest live one's, from the workers table.

        A process counts as live while its last heartbeat is at most
        ``dead_after_seconds`` old (database clock), whether or not another
        process has swept it yet.
        """
        now, rows = self.workers()
        ages = {row.id: max(0.0, now - row.heartbeat_at) for row in rows}
        live = [age for age in ages.values() if age <= self.coordinator.dead_after]
        return len(live), ages.get(self.coordinator.worker_id), max(live, default=None)

    # -------------------------------------------------------------- relay
    def subscribe(self, sink: Callable[[dict[str, Any]], None]) -> None:
        self.coordinator.subscribe(sink)

    def unsubscribe(self, sink: Callable[[dict[str, Any]], None]) -> None:
        self.coordinator.unsubscribe(sink)

    # ----------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        return self.coordinator.phase == RUNNING

    def start(self) -> None:
        self.coordinator.start()

    def stop(self, timeout: float) -> int:
        return self.coordinator.stop(timeout)


class _RemoteWait:
    """How a wait for a job that may end in another process sleeps between two reads of the tables.

    With a LISTEN connection (PostgreSQL, ``notify=True``, a started scheduler)
    the task is marked as awaited in its row, so that a job of it that ends
    anywhere sends ``NOTIFY quiv_ended``, which sets :attr:`event`; the reads
    then happen when something ended, and at least every ``poll_seconds`` in
    case a notification was lost. Otherwise the wait reads every
    :data:`REMOTE_WAIT_POLL_SECONDS`. A local release (``SyncWaiter(poke=...)``)
    sets the same event.
    """

    def __init__(self, mode: DurableMode, task_id: str, key: str) -> None:
        coordinator = mode.coordinator
        self.store = mode.store
        self.coordinator = coordinator
        self.task_id = task_id
        self.key = key
        self.event = threading.Event()
        self.notified = coordinator.notify and coordinator.phase == RUNNING
        self.floor = coordinator.poll if self.notified else REMOTE_WAIT_POLL_SECONDS
        self.renew_at = 0.0

    def __enter__(self) -> _RemoteWait:
        if self.notified:
            # Watch before marking: an end committed after the mark finds the watcher in place.
            self.coordinator.watch(self.key, self.event)
            self._mark()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.notified:
            self.coordinator.unwatch(self.key, self.event)

    def _mark(self) -> None:
        self.store.await_task(self.task_id, AWAIT_SECONDS)  # a task gone: the caller's next read says so
        self.renew_at = time.monotonic() + AWAIT_SECONDS / 2

    def sleep(self, deadline: float | None) -> None:
        """Until the event, the floor, or ``deadline``; the caller reads the tables next."""
        now = time.monotonic()
        pause = self.floor
        if self.notified:
            pause = min(pause, max(0.0, self.renew_at - now))
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - now))
        self.event.wait(pause)
        self.event.clear()  # before the caller's read: an end after it sets the event again
        if self.notified and time.monotonic() >= self.renew_at:
            self._mark()
