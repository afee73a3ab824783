"""The public ``Quiv`` class: the API on top of the engine in ``_engine.py``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from typing_extensions import Unpack

from quiv._clock import Clock, SystemClock
from quiv._config import (
    DEFAULT_POOL_SIZE,
    DEFAULT_RETENTION,
    DEFAULT_TIMEZONE,
    QuivConfig,
    resolve_timezone,
)
from quiv._context import current_scheduler
from quiv._declarative import _DeclarativeMixin
from quiv._dispatch import Dispatcher
from quiv._engine import RUNNING, STOPPED, STOPPING, _Engine
from quiv._enums import Event, JobStatus, TaskStatus
from quiv._exceptions import (
    ConfigurationError,
    HandlerNotRegisteredError,
    HandlerRegistrationError,
    InvalidArgumentError,
    JobNotFoundError,
    SchedulerStoppedError,
    TaskNotFoundError,
    TaskNotScheduledError,
)
from quiv._handlers import injection_plan, is_async_callable
from quiv._ids import new_id
from quiv._options import MisfirePolicy, TaskChanges, TaskSettings, check_job_query, check_seconds
from quiv._progress import ProgressReport
from quiv._schedule import first_run
from quiv._state import JobState, TaskState, job_model, utc

if TYPE_CHECKING:
    from quiv.models import Job, SchedulerStats, Task

__all__ = ["Quiv"]

#: How long shutdown() waits for running jobs to notice their stop event, by default.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, got {type(value).__name__} {value!r}")
    return value


class Quiv(_Engine, _DeclarativeMixin):
    """An in-process scheduler running sync and async handlers on a thread pool.

    Build it anywhere (no event loop needed), add tasks, then :meth:`start`
    it; :meth:`shutdown` stops it and deletes its private database. Every
    method may be called from any thread and from the main event loop.
    """

    def __init__(
        self,
        config: QuivConfig | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        history_retention_seconds: int = DEFAULT_RETENTION,
        timezone: str | tzinfo = DEFAULT_TIMEZONE,
        *,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        main_loop: asyncio.AbstractEventLoop | None = None,
        clock: Clock | None = None,
    ) -> None:
        if config is not None:
            if not isinstance(config, QuivConfig):
                raise InvalidArgumentError(f"config must be a QuivConfig, got {config!r}")
            explicit = [
                name
                for name, value, default in (
                    ("pool_size", pool_size, DEFAULT_POOL_SIZE),
                    ("history_retention_seconds", history_retention_seconds, DEFAULT_RETENTION),
                    ("timezone", timezone, DEFAULT_TIMEZONE),
                )
                if value is not default
            ]
            if explicit:
                raise ConfigurationError(
                    f"pass either config or {', '.join(explicit)}, not both: "
                    "put every setting in the QuivConfig"
                )
        else:
            config = QuivConfig(
                pool_size=pool_size,
                history_retention_seconds=history_retention_seconds,
                timezone=timezone,
            )
        if main_loop is not None and not isinstance(main_loop, asyncio.AbstractEventLoop):
            raise InvalidArgumentError(f"main_loop must be an asyncio event loop, got {main_loop!r}")
        if logger is not None and not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
            raise InvalidArgumentError(f"logger must be a logging.Logger or LoggerAdapter, got {logger!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise InvalidArgumentError(f"clock must implement quiv's Clock protocol, got {clock!r}")

        self.config = config
        self.pool_size = config.pool_size
        self.history_retention_seconds = config.history_retention_seconds
        self.timezone: tzinfo = resolve_timezone(config.timezone)
        self.logger: logging.Logger | logging.LoggerAdapter[Any] = logger or logging.getLogger("Quiv")
        self._clock: Clock = clock or SystemClock()
        # Load the database layer (SQLAlchemy, SQLModel) now rather than in start(),
        # which usually runs on the application's event loop; `import quiv` stays
        # light and nothing is created on disk until the first task or start().
        importlib.import_module("quiv._store.sqlite")
        # A clock may offer a cheaper timestamp(); any Clock works through now().
        self._timestamp: Callable[[], float] = getattr(self._clock, "timestamp", None) or (
            lambda: self._clock.now().timestamp()
        )

        self._init_engine()
        self._dispatcher = Dispatcher(self.logger, main_loop)
        self._init_declarative()

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`shutdown`."""
        return self._phase == RUNNING

    @property
    def main_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop callbacks are delivered to, if one is known and running."""
        return self._dispatcher.main_loop

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the workers. Calling it again while running does nothing.

        Called from a running event loop, ``start()`` makes that loop the main
        loop (unless one was given as ``main_loop=``), so a scheduler started
        in a FastAPI lifespan delivers to the server's loop.
        """
        self._dispatcher.note_caller(bind=True)
        with self._lock:
            if self._phase == RUNNING:
                return
            persister = self._store_locked()
            self._phase = RUNNING
        _register_active(self)
        try:
            self._materialize_declarations()
        except BaseException:
            self.shutdown()
            raise
        persister.start()
        self._clock.subscribe(self._wake)
        with self._lock:
            if not self._threads:
                self._spawn_worker_locked()
        self.logger.debug("quiv started with %d workers", self.pool_size)

    startup = start

    def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """Stop scheduling, cancel running jobs and delete the database. Idempotent.

        Running jobs get their stop event set; shutdown waits up to ``timeout``
        seconds for them to return, then leaves any that ignore the event
        running on their (daemon) threads: their results are discarded.
        """
        timeout = check_seconds("timeout", timeout, positive=False)
        with self._lock:
            if self._phase in (STOPPING, STOPPED):
                return
            self._phase = STOPPING
            for job in self._live_jobs.values():
                job.request_stop("cancelled: the scheduler shut down")
            self._leader_cond.notify_all()
            self._follower_cond.notify_all()
        deadline = time.monotonic() + timeout
        self._clock.unsubscribe(self._wake)
        self._watchdog.close()
        with self._lock:
            while self._busy and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
            stuck = self._busy
            self._phase = STOPPED
            waiters = [(w, job) for job in self._live_jobs.values() for w in self._take_waiters_locked(job)]
            threads = list(self._threads)
        for waiter, job in waiters:
            self._call_waiters([waiter], job)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        if stuck:
            self.logger.warning(
                "quiv shut down with %d job(s) still running: their handlers ignored the stop event", stuck
            )
        if self._persister is not None:
            self._persister.close()
        _unregister_active(self)
        self.logger.debug("quiv shut down")

    stop = shutdown

    def _wake(self) -> None:
        """The clock jumped: let the leader re-read it."""
        with self._lock:
            self._leader_cond.notify_all()

    # ------------------------------------------------------------------ tasks
    def add_task(
        self,
        task_name: str,
        func: Callable[..., Any],
        interval: float | None = None,
        delay: float = 0,
        run_once: bool = False,
        fixed_interval: bool = True,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        progress_callback: Callable[..., Any] | None = None,
        *,
        cron: str | None = None,
        cron_timezone: str | tzinfo | None = None,
        run_at: datetime | None = None,
        max_retries: int = 0,
        retry_backoff: float = 1.0,
        timeout: float | None = None,
        jitter: float = 0.0,
        misfire: MisfirePolicy = "skip",
        misfire_grace: float | None = None,
    ) -> str:
        """Schedule ``func`` and return the new task's id.

        The schedule is one of: every ``interval`` seconds (first run after
        ``delay`` seconds or at ``run_at``), a ``cron`` expression read in
        ``cron_timezone`` (default: the scheduler's timezone), or a single run
        at ``run_at``. Everything is validated before anything is stored.
        """
        if not callable(func):
            raise HandlerRegistrationError(f"func for task {task_name!r} must be callable, got {func!r}")
        settings = TaskSettings.validate(
            task_name=task_name,
            interval=interval,
            delay=delay,
            run_once=run_once,
            fixed_interval=fixed_interval,
            args=args,
            kwargs=kwargs,
            progress_callback=progress_callback,
            cron=cron,
            cron_timezone=cron_timezone,
            run_at=run_at,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            timeout=timeout,
            jitter=jitter,
            misfire=misfire,
            misfire_grace=misfire_grace,
            default_timezone=self.timezone,
        )
        return self._add_validated(task_name, func, settings)

    def _add_validated(self, task_name: str, func: Callable[..., Any], settings: TaskSettings) -> str:
        """Add a task whose options were already validated (by add_task or a declaration)."""
        plan = injection_plan(func)
        progress_callback = settings.progress_callback
        self._dispatcher.note_caller()
        now = self._now()
        nominal, actual = first_run(settings, now)
        task = TaskState(
            id=new_id(),
            name=task_name,
            func=func,
            plan=plan,
            settings=settings,
            status=TaskStatus.ACTIVE,
            next_run=actual,
            created=now,
            progress_is_async=progress_callback is not None and is_async_callable(progress_callback),
        )
        with self._lock:
            persister = self._store_locked()
            self._tasks[task.id] = task
            self._schedule_locked(task, actual, nominal=nominal)
            persister.task_changed(task)
            listeners = self._listeners[Event.TASK_ADDED]
            snapshot = task.model() if listeners else None
        if snapshot is not None:
            self._dispatcher.emit(listeners, (Event.TASK_ADDED, snapshot))
        return task.id

    def update_task(self, task_id: str, **changes: Unpack[TaskChanges]) -> Task:
        """Change a task's schedule, arguments or options; its id and job history stay.

        Give only what changes, with the names ``add_task`` uses (plus
        ``task_name`` and ``func``). Passing ``interval`` turns a cron task into
        an interval task and ``cron`` the reverse. A new schedule starts from
        now (after ``delay`` or at ``run_at`` when given); otherwise the next
        run stays where it was unless ``delay``/``run_at`` move it. A running
        job is not affected. Fires ``TASK_UPDATED`` with the new task.
        """
        unknown = set(changes) - set(TaskChanges.__annotations__)
        if unknown:
            raise InvalidArgumentError(f"update_task got unknown option(s): {', '.join(sorted(unknown))}")
        func = changes.get("func")
        if "func" in changes and not callable(func):
            raise HandlerRegistrationError(f"func must be callable, got {func!r}")
        plan = injection_plan(func) if func is not None else None
        with self._lock:
            task = self._task_locked(task_id)
            old = task.settings
            name = changes.get("task_name", task.name)
        merged: dict[str, Any] = {"task_name": name, **old.options()}
        if old.kind == "once" and not {"interval", "cron", "run_at"} & set(changes):
            merged["run_at"] = utc(task.next_run)  # a one-shot task keeps its time
        if "interval" in changes and "cron" not in changes:
            merged["cron"] = merged["cron_timezone"] = None
        if "cron" in changes and "interval" not in changes:
            merged["interval"] = None
        merged.update({key: value for key, value in changes.items() if key != "func"})
        if merged["cron"] is None:
            merged["cron_timezone"] = None
        settings = TaskSettings.validate(**merged, default_timezone=self.timezone)
        reschedule = any(
            key in changes
            for key in ("interval", "cron", "cron_timezone", "fixed_interval", "delay", "run_at")
        )
        with self._lock:
            task = self._task_locked(task_id)
            persister = self._store_locked()
            task.name = merged["task_name"]
            task.settings = settings
            task.progress_is_async = is_async_callable(settings.progress_callback)
            if func is not None and plan is not None:
                task.func, task.plan = func, plan
            if reschedule:
                nominal, actual = first_run(settings, self._now())
                task.retry = None
                if task.running is not None:
                    task.requested, task.requested_forced = actual, False
                    task.next_run = actual
                    task.version += 1
                elif task.status is TaskStatus.PAUSED:
                    task.next_run = actual
                else:
                    self._schedule_locked(task, actual, nominal=nominal)
            persister.task_changed(task)
            snapshot = task.model()
            listeners = self._listeners[Event.TASK_UPDATED]
        if listeners:
            self._dispatcher.emit(listeners, (Event.TASK_UPDATED, snapshot))
        return snapshot

    def _task_locked(self, task_id: object) -> TaskState:
        self._check_readable_locked()
        task = self._tasks.get(_check_id(task_id, "task_id"))
        if task is None:
            raise TaskNotFoundError(f"no task with id {task_id!r}")
        return task

    def remove_task(self, task_id: str) -> None:
        """Delete a task; a job of it that is running gets its stop event set."""
        self._dispatcher.note_caller()
        with self._lock:
            task = self._task_locked(task_id)
            self._store_locked()  # refuses after shutdown
            listeners = self._listeners[Event.TASK_REMOVED]
            snapshot = task.model() if listeners else None
            self._delete_task_locked(task)
            if task.running is not None:
                task.running.request_stop("cancelled: its task was removed")
        if snapshot is not None:
            self._dispatcher.emit(listeners, (Event.TASK_REMOVED, snapshot))

    def pause_task(self, task_id: str) -> None:
        """Stop future runs of a task (a job already running finishes normally)."""
        self._dispatcher.note_caller()
        with self._lock:
            task = self._task_locked(task_id)
            persister = self._store_locked()
            task.status = TaskStatus.PAUSED
            task.version += 1
            task.retry = None
            manual = task.manual_due
            if manual is None:
                task.requested = None
                task.requested_forced = False
            elif task.running is not None:
                task.requested, task.requested_forced = manual, True
            else:
                # An explicit run_task_immediately() still happens; only the schedule stops.
                self._schedule_locked(task, manual, forced=True)
            persister.task_changed(task)
            listeners = self._listeners[Event.TASK_PAUSED]
            snapshot = task.model() if listeners else None
        if snapshot is not None:
            self._dispatcher.emit(listeners, (Event.TASK_PAUSED, snapshot))

    def resume_task(self, task_id: str, delay: float = 0) -> None:
        """Re-activate a task; its next run is ``delay`` seconds from now (0: at once)."""
        delay_s = check_seconds("delay", delay, positive=False)
        self._dispatcher.note_caller()
        with self._lock:
            task = self._task_locked(task_id)
            persister = self._store_locked()
            due = self._now() + delay_s
            if task.running is not None:
                task.status = TaskStatus.RUNNING
                task.requested = due
                task.requested_forced = False
                task.next_run = due
                task.version += 1
            else:
                task.status = TaskStatus.ACTIVE
                self._schedule_locked(task, due)
            persister.task_changed(task)
            listeners = self._listeners[Event.TASK_RESUMED]
            snapshot = task.model() if listeners else None
        if snapshot is not None:
            self._dispatcher.emit(listeners, (Event.TASK_RESUMED, snapshot))

    def run_task_immediately(self, task_id: str) -> int:
        """Run a task now, outside its schedule; return the number of tasks queued (1).

        A paused task runs once and stays paused. If a job of the task is
        running, the new run starts as soon as it ends (a task never runs
        twice at once).
        """
        self._dispatcher.note_caller()
        with self._lock:
            self._check_readable_locked()
            task = self._tasks.get(_check_id(task_id, "task_id"))
            if task is None:
                raise HandlerNotRegisteredError(f"no handler is registered for task id {task_id!r}")
            if task.run_once and task.started_once and task.retry is None:
                raise TaskNotScheduledError(
                    f"task {task_id!r} is a run-once task that has already started; it cannot run again"
                )
            persister = self._store_locked()
            now = self._now()
            forced = task.status is TaskStatus.PAUSED
            task.manual_due = now
            if task.running is not None:
                task.requested = now
                task.requested_forced = forced
            else:
                self._schedule_locked(task, now, forced=forced)
            persister.task_changed(task)
        return 1

    def get_task(self, task_id: str) -> Task:
        """The task with this id."""
        self._dispatcher.note_caller()
        with self._lock:
            self._check_readable_locked()
            return self._task_locked(task_id).model()

    def get_all_tasks(self, include_run_once: bool = False) -> list[Task]:
        """Every task in the order they were added; run-once tasks only if asked."""
        if not isinstance(include_run_once, bool):
            raise InvalidArgumentError(f"include_run_once must be a bool, got {include_run_once!r}")
        self._dispatcher.note_caller()
        with self._lock:
            self._check_readable_locked()
            return [t.model() for t in self._tasks.values() if include_run_once or not t.run_once]

    def _check_readable_locked(self) -> None:
        if self._phase == STOPPED:
            raise SchedulerStoppedError("the scheduler has been shut down and its database deleted")

    # ------------------------------------------------------------------- jobs
    def cancel_job(self, job_id: str) -> bool:
        """Set a running job's stop event; False if no such job is running."""
        with self._lock:
            job = self._live_jobs.get(_check_id(job_id, "job_id"))
            return job is not None and job.request_stop("cancelled by cancel_job()")

    def get_job(self, job_id: str) -> Job:
        """The job with this id (running, or finished within the retention window)."""
        _check_id(job_id, "job_id")
        self._dispatcher.note_caller()
        with self._lock:
            self._check_readable_locked()
            job = self._live_jobs.get(job_id)
            if job is not None:
                return job.model()
            persister = self._persister
        row = None
        if persister is not None:
            persister.flush()
            row = persister.store.get_job(job_id)
        if row is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return job_model(row)

    def get_all_jobs(
        self,
        status: str | JobStatus | None = None,
        *,
        task_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[Job]:
        """Jobs kept (running ones included), oldest first, optionally filtered and paged.

        ``status`` and ``task_id`` keep only matching jobs; ``newest_first``
        reverses the order. Jobs are ordered by start time, then id, so pages
        taken with ``offset`` and ``limit`` (``None``: no limit) never overlap.
        Filtering and paging happen in the database: a page costs its size,
        not the size of the history.
        """
        query = check_job_query(status, task_id, newest_first=newest_first, limit=limit, offset=offset)
        self._dispatcher.note_caller()
        with self._lock:
            self._check_readable_locked()
            persister = self._persister
        if persister is None:
            return []
        persister.flush()
        return [job_model(row) for row in persister.store.list_jobs(query)]

    def count_jobs(self, status: str | JobStatus | None = None, *, task_id: str | None = None) -> int:
        """How many jobs are kept (running ones included), optionally only of ``status`` or of one task."""
        query = check_job_query(status, task_id)
        self._dispatcher.note_caller()
        with self._lock:
            self._check_readable_locked()
            persister = self._persister
        if persister is None:
            return 0
        persister.flush()
        return persister.store.count_matching(query)

    def wait_for_job(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job ends (``TimeoutError`` after ``timeout`` s) and return it.

        Wakes when the job ends; never polls. A job that already ended is
        returned at once. Do not call this on the event loop: use
        :meth:`wait_for_job_async` there.
        """
        done = threading.Event()

        def waiter(_job: JobState) -> None:
            done.set()

        if self._add_job_waiter(job_id, timeout, waiter) and not done.wait(timeout):
            self._drop_job_waiter(job_id, waiter)
            raise TimeoutError(f"job {job_id!r} did not end within {timeout} s")
        return self.get_job(job_id)

    async def wait_for_job_async(self, job_id: str, timeout: float | None = None) -> Job:
        """Like :meth:`wait_for_job`, awaited on the event loop without blocking it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not future.done():
                future.set_result(None)

        def wake(_job: JobState) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone by then
                loop.call_soon_threadsafe(settle)

        if self._add_job_waiter(job_id, timeout, wake):
            try:
                await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"job {job_id!r} did not end within {timeout} s") from None
            finally:
                if not future.done():
                    self._drop_job_waiter(job_id, wake)
        return await asyncio.to_thread(self.get_job, job_id)

    def _add_job_waiter(self, job_id: str, timeout: float | None, waiter: Callable[[JobState], None]) -> bool:
        """Register ``waiter`` for a live job; False if the job is not running (nothing to wait for)."""
        if timeout is not None:
            check_seconds("timeout", timeout, positive=False)
        with self._lock:
            self._check_readable_locked()
            job = self._live_jobs.get(_check_id(job_id, "job_id")) or self._ending.get(job_id)
            if job is None:
                return False
            if job.waiters is None:
                job.waiters = []
            job.waiters.append(waiter)
            return True

    def _drop_job_waiter(self, job_id: str, waiter: Callable[[JobState], None]) -> None:
        with self._lock:
            job = self._live_jobs.get(job_id) or self._ending.get(job_id)
            if job is not None and job.waiters and waiter in job.waiters:
                job.waiters.remove(waiter)

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Job:
        """Block until the next job of the task ends (the running one, if any) and return it."""
        if timeout is not None:
            check_seconds("timeout", timeout, positive=False)
        ended: list[JobState] = []
        done = threading.Event()

        def waiter(job: JobState) -> None:
            ended.append(job)
            done.set()

        with self._lock:
            task = self._task_locked(task_id)
            if task.running is not None:
                if task.running.waiters is None:
                    task.running.waiters = []
                task.running.waiters.append(waiter)
            else:
                if task.job_waiters is None:
                    task.job_waiters = []
                task.job_waiters.append(waiter)
        if not done.wait(timeout):
            raise TimeoutError(f"no job of task {task_id!r} ended within {timeout} s")
        return self.get_job(ended[0].id)

    def stats(self) -> SchedulerStats:
        """Counts a dashboard wants: tasks and jobs by status, workers in use, the oldest running job.

        Live counts come from memory; history counts are one grouped query.
        Every kept job lies in the retention window, so the window counts are
        the history's completed and failed counts.
        """
        with self._lock:
            self._check_readable_locked()
            tasks_by_status = dict.fromkeys((s.value for s in TaskStatus), 0)
            for task in self._tasks.values():
                tasks_by_status[task.status.value] += 1
            oldest = min(self._live_jobs.values(), key=lambda job: job.started, default=None)
            running = len(self._live_jobs)
            busy = self._busy
            persister = self._persister
        from quiv.models import SchedulerStats

        jobs_by_status = dict.fromkeys((s.value for s in JobStatus), 0)
        if persister is not None:
            persister.flush()
            jobs_by_status.update(persister.store.count_jobs())
        return SchedulerStats(
            tasks_by_status=tasks_by_status,
            jobs_by_status=jobs_by_status,
            running_jobs=running,
            pool_size=self.pool_size,
            free_workers=max(0, self.pool_size - busy),
            oldest_running_job_id=None if oldest is None else oldest.id,
            oldest_running_job_started_at=None if oldest is None else utc(oldest.started),
            completed_in_window=jobs_by_status[JobStatus.COMPLETED.value],
            failed_in_window=jobs_by_status[JobStatus.FAILED.value],
            retention_seconds=float(self.history_retention_seconds),
        )

    # -------------------------------------------------------------- listeners
    def add_listener(self, event: Event, callback: Callable[..., Any]) -> None:
        """Call ``callback`` when ``event`` fires; adding the same one twice has no effect."""
        if not isinstance(event, Event):
            raise ConfigurationError(f"event must be a quiv.Event member, got {event!r}")
        if not callable(callback):
            raise HandlerRegistrationError(f"listener for {event.name} must be callable, got {callback!r}")
        self._dispatcher.note_caller()
        with self._lock:
            current = self._listeners[event]
            if any(existing == callback for existing, _ in current):
                return
            self._listeners[event] = (*current, (callback, is_async_callable(callback)))

    def remove_listener(self, event: Event, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` for ``event``; unknown callbacks are ignored."""
        if not isinstance(event, Event):
            raise ConfigurationError(f"event must be a quiv.Event member, got {event!r}")
        with self._lock:
            self._listeners[event] = tuple(item for item in self._listeners[event] if item[0] != callback)

    def add_progress_listener(self, callback: Callable[[ProgressReport], Any]) -> None:
        """Also send every task's progress reports to ``callback`` as a :class:`ProgressReport`.

        Delivered like listeners (on the main loop when there is one, in order
        with the job's events); adding the same callback twice has no effect.
        """
        if not callable(callback):
            raise HandlerRegistrationError(f"progress listener must be callable, got {callback!r}")
        self._dispatcher.note_caller()
        with self._lock:
            if any(existing == callback for existing, _ in self._progress_listeners):
                return
            self._progress_listeners = (*self._progress_listeners, (callback, is_async_callable(callback)))

    def remove_progress_listener(self, callback: Callable[[ProgressReport], Any]) -> None:
        """Stop sending progress reports to ``callback``; unknown callbacks are ignored."""
        with self._lock:
            self._progress_listeners = tuple(item for item in self._progress_listeners if item[0] != callback)

    def __repr__(self) -> str:
        return f"<Quiv {self._phase} pool_size={self.pool_size} tasks={len(self._tasks)}>"


# ---------------------------------------------------------------- active ones
_active_lock = threading.Lock()
_active: list[Quiv] = []


def _register_active(scheduler: Quiv) -> None:
    with _active_lock:
        if scheduler not in _active:
            _active.append(scheduler)


def _unregister_active(scheduler: Quiv) -> None:
    with _active_lock:
        if scheduler in _active:
            _active.remove(scheduler)


def active_scheduler() -> Quiv | None:
    """The scheduler running the current job, else the most recently started one."""
    scheduler = current_scheduler.get()
    if isinstance(scheduler, Quiv):
        return scheduler
    with _active_lock:
        return _active[-1] if _active else None
