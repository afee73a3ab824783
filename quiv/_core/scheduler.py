"""``Quiv``: the public facade over the scheduler's parts.

``Quiv`` holds its parts and contains no scheduling logic. A call checks its
arguments (user code such as pickling runs here, before any lock), takes the
engine's lock, calls one transition of the task's state machine
(:mod:`quiv._core.task`), hands the resulting plan to the engine, and emits
events once the lock is released.

The parts: the :class:`~quiv._core.engine.Engine` (heap, workers, live jobs,
waiters), the :class:`~quiv._declare.declarations.Declarations` (registry,
decorators, materialisation), the :class:`~quiv._delivery.events.Listeners`
and their :class:`~quiv._delivery.dispatch.Dispatcher`, and the
:class:`~quiv._store.writer.Writer` in front of the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, overload

from typing_extensions import Unpack

from quiv._config import (
    DEFAULT_POOL_SIZE,
    DEFAULT_RETENTION,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TIMEZONE,
    QuivConfig,
    resolve_timezone,
)
from quiv._core.clock import Clock, SystemClock
from quiv._core.context import current_job
from quiv._core.engine import RUNNING, STOPPED, STOPPING, Engine
from quiv._core.handlers import injection_plan, is_async_callable
from quiv._core.ids import new_id
from quiv._core.instruments import Instruments, JobMetrics, JobTracer
from quiv._core.runner import JobRunner
from quiv._core.task import TaskState, job_model, utc
from quiv._core.waiters import AsyncWaiter, SyncWaiter, Waiter, release_all
from quiv._declare.checks import check_task_handler
from quiv._declare.declarations import Declarations
from quiv._declare.decorators import JobListenerDecorator, TaskDecorator, TaskListenerDecorator
from quiv._declare.registry import TaskRegistry
from quiv._delivery.dispatch import Dispatcher
from quiv._delivery.events import Listeners, ProgressTap
from quiv._delivery.progress import ProgressReport
from quiv._durable.url import parse_database_url, resolve_database_url
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
from quiv._schedule.options import (
    POSITIONAL,
    DeclaredOptions,
    ScheduleOptions,
    TaskChanges,
    TaskSettings,
    check_seconds,
    check_task_name,
)
from quiv._store.base import JobQuery, JobReader, Store
from quiv._store.writer import Writer
from quiv.types import JobEvent, TaskEvent, TaskId

if TYPE_CHECKING:
    from quiv._durable.mode import DurableMode
    from quiv.models import Job, SchedulerStats, Task

__all__ = ["Quiv", "active_scheduler"]

#: update_task options that give the task a new schedule, starting from now.
_RESCHEDULING = frozenset({"interval", "cron", "cron_timezone", "fixed_interval", "delay", "run_at"})


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, got {type(value).__name__} {value!r}")
    return value


def _job_query(
    status: object,
    task_id: object,
    *,
    newest_first: object = False,
    limit: object = None,
    offset: object = 0,
) -> JobQuery:
    """The arguments of ``get_all_jobs`` and ``count_jobs`` as a store query; raise naming a bad one."""
    if status is None:
        status_value = None
    else:
        try:
            status_value = JobStatus(status).value
        except ValueError:
            valid = ", ".join(s.value for s in JobStatus)
            raise ConfigurationError(f"unknown job status {status!r}; expected one of {valid}") from None
    if task_id is not None and not isinstance(task_id, str):
        raise InvalidArgumentError(f"task_id must be a str or None, got {type(task_id).__name__} {task_id!r}")
    if not isinstance(newest_first, bool):
        raise InvalidArgumentError(f"newest_first must be a bool, got {newest_first!r}")
    return JobQuery(
        task_id=task_id,
        status=status_value,
        newest_first=newest_first,
        limit=None if limit is None else _count("limit", limit, "an int >= 0 or None"),
        offset=_count("offset", offset, "an int >= 0"),
    )


def _count(name: str, value: object, expected: str) -> int:
    """``value`` if it is an int >= 0 (not a bool), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
    return value


def _open_sqlite() -> Store:
    from quiv._store.sqlite import SQLiteStore

    return SQLiteStore()


class Quiv:
    """An in-process scheduler running sync and async handlers on a thread pool.

    Build it anywhere (no event loop needed), add tasks, then :meth:`start`
    it; :meth:`shutdown` stops it and deletes its private database. Every
    method may be called from any thread and from the main event loop.
    """

    #: Builds the store on first use: the private temporary SQLite database.
    _store_factory: ClassVar[Callable[[], Store]] = staticmethod(_open_sqlite)

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
        database_url: str | None = None,
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
                    ("database_url", database_url, None),
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
                database_url=database_url,
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
        timestamp: Callable[[], float] = getattr(self._clock, "timestamp", None) or (
            lambda: self._clock.now().timestamp()
        )
        self._now = timestamp

        self._dispatcher = Dispatcher(self.logger, main_loop)
        self._listeners = Listeners(self._dispatcher)
        self._lock = threading.Lock()
        self._writer = Writer(
            type(self)._store_factory,
            self._lock,
            self._clock,
            float(self.history_retention_seconds),
            self.logger,
        )
        self._engine = Engine(
            lock=self._lock,
            pool_size=self.pool_size,
            clock=self._clock,
            timestamp=timestamp,
            timezone=self.timezone,
            listeners=self._listeners,
            runner=JobRunner(self, self._listeners, self.logger, self._clock.now),
            writer=self._writer,
            logger=self.logger,
        )
        #: The durable or shared mode's part, when state lives in a database the user named.
        self._durable: DurableMode | None = None
        url = resolve_database_url(config.database_url)
        if url is not None:
            from quiv._durable.mode import DurableMode

            self._durable = DurableMode(
                parse_database_url(url),
                config,
                clock=self._clock,
                timestamp=timestamp,
                timezone=self.timezone,
                listeners=self._listeners,
                runner=self._engine.runner,
                logger=self.logger,
            )
        self._declarations = Declarations(
            add_task=self._add_settings,
            add_listener=self.add_listener,
            is_running=lambda: self.running,
            timezone=self.timezone,
        )

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`shutdown`."""
        return self._engine.phase == RUNNING

    @property
    def stopped(self) -> bool:
        """True once :meth:`shutdown` has been called (a stopped scheduler never runs again)."""
        return self._engine.phase in (STOPPING, STOPPED)

    @property
    def worker_id(self) -> str | None:
        """This process's id in the shared tables (a fresh UUID per start); None without a database_url."""
        return None if self._durable is None else self._durable.worker_id

    @property
    def main_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop callbacks are delivered to, if one is known and running."""
        return self._dispatcher.main_loop

    def _open_locked(self) -> Writer:
        """Refuse after shutdown; create the database on first use. Caller holds the lock."""
        self._engine.check_open_locked()
        if self._durable is None:
            self._writer.open()
        return self._writer

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the workers. Calling it again while running does nothing.

        Called from a running event loop, ``start()`` makes that loop the main
        loop (unless one was given as ``main_loop=``), so a scheduler started
        in a FastAPI lifespan delivers to the server's loop.
        """
        self._dispatcher.note_caller(bind=True)
        with self._lock:
            if self._engine.phase == RUNNING:
                return
            writer = self._open_locked()
            self._engine.start_locked()
        _register_active(self)
        try:
            self._declarations.go_live()
            if self._durable is not None:
                self._durable.start()
        except BaseException:
            self.shutdown()
            raise
        if self._durable is None:
            writer.start()
        self.logger.debug("quiv started with %d workers", self.pool_size)

    startup = start

    def shutdown(self, timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """Stop scheduling, cancel running jobs and delete the database. Idempotent.

        Running jobs get their stop event set; shutdown waits up to ``timeout``
        seconds for them to return, then leaves any that ignore the event
        running on their (daemon) threads: their results are discarded.
        Called from inside a job, it does not wait for that job.
        """
        timeout = check_seconds("timeout", timeout, positive=False)
        with self._lock:
            if self._engine.phase in (STOPPING, STOPPED):
                return
        stuck = self._engine.stop(timeout)
        if self._durable is not None:
            stuck += self._durable.stop(timeout)
        if stuck:
            self.logger.warning(
                "quiv shut down with %d job(s) still running: their handlers ignored the stop event", stuck
            )
        self._writer.close()
        _unregister_active(self)
        self.logger.debug("quiv shut down")

    stop = shutdown

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
        **options: Unpack[ScheduleOptions],
    ) -> str:
        """Schedule ``func`` and return the new task's id.

        The schedule is one of: every ``interval`` seconds (first run after
        ``delay`` seconds or at ``run_at``), a ``cron`` expression read in
        ``cron_timezone`` (default: the scheduler's timezone), or a single run
        at ``run_at``. The keyword-only options (``cron``, ``cron_timezone``,
        ``run_at``, ``max_retries``, ``retry_backoff``, ``timeout``,
        ``jitter``, ``misfire``, ``misfire_grace``) are described in the
        scheduling guide. Everything, the handler's signature included, is
        validated before anything is stored.
        """
        leading = (interval, delay, run_once, fixed_interval, args, kwargs, progress_callback)
        given = dict(zip(POSITIONAL, leading, strict=True))
        instruments = self._engine.runner.instruments
        origin = None if instruments is None else instruments.capture("add_task")
        return self._add_options(task_name, func, {**given, **options}, origin)

    def _add_options(
        self, task_name: str, func: Callable[..., Any], options: dict[str, Any], origin: object | None = None
    ) -> str:
        if not callable(func):
            raise HandlerRegistrationError(f"func for task {task_name!r} must be callable, got {func!r}")
        settings = TaskSettings.validate(options, task_name=task_name, default_timezone=self.timezone)
        check_task_handler(func, options.get("args"), options.get("kwargs"))
        return self._add_settings(task_name, func, settings, origin)

    def _add_settings(
        self, task_name: str, func: Callable[..., Any], settings: TaskSettings, origin: object | None = None
    ) -> str:
        """Add a task whose options and handler were checked (by add_task or a declaration).

        ``origin`` is the trace link of the ``add_task`` call, when a tracer is attached.
        """
        plan = injection_plan(func)
        callback = settings.progress_callback
        progress_is_async = callback is not None and is_async_callable(callback)
        self._dispatcher.note_caller()
        task = TaskState(
            id=new_id(),
            name=task_name,
            func=func,
            plan=plan,
            settings=settings,
            created=self._now(),
            progress_is_async=progress_is_async,
            origin=origin,
        )
        if self._durable is not None:
            with self._lock:
                self._open_locked()
            return self._durable.add(task)
        listeners = self._listeners.of(Event.TASK_ADDED)
        with self._lock:
            self._open_locked()
            self._engine.add_locked(task)
            view = task.view() if listeners else None
        if view is not None:
            self._listeners.emit_task(Event.TASK_ADDED, view, listeners)
        return task.id

    def update_task(self, task_id: str, **changes: Unpack[TaskChanges]) -> Task:
        """Change a task's schedule, arguments or options; its id and job history stay.

        Give only what changes, with the names ``add_task`` uses (plus
        ``task_name`` and ``func``). Passing ``interval`` turns a cron task into
        an interval task and ``cron`` the reverse. A new schedule starts from
        now (after ``delay`` or at ``run_at`` when given); otherwise the next
        run stays where it was unless ``delay``/``run_at`` move it. A running
        job is not affected. Fires ``TASK_UPDATED`` with the new task.
        Concurrent updates of one task apply one after the other: none is lost.
        """
        task_id = _check_id(task_id, "task_id")
        unknown = set(changes) - set(TaskChanges.__annotations__)
        if unknown:
            raise InvalidArgumentError(f"update_task got unknown option(s): {', '.join(sorted(unknown))}")
        func = changes.get("func")
        if "func" in changes and not callable(func):
            raise HandlerRegistrationError(f"func must be callable, got {func!r}")
        if "task_name" in changes:
            check_task_name(changes["task_name"])
        options = {k: v for k, v in changes.items() if k not in ("func", "task_name")}
        self._dispatcher.note_caller()
        if self._durable is not None:
            self._check_open()
            return self._durable.update(task_id, dict(changes), _RESCHEDULING)
        while True:
            with self._lock:
                task = self._task_locked(task_id)
                base, old_func, next_run = task.settings, task.func, task.next_run
                name = changes.get("task_name", task.name)
            # Validation (and pickling new arguments) is user code: no lock held.
            settings = base.merge(
                options, task_name=name, default_timezone=self.timezone, keep_run_at=next_run
            )
            handler = func if func is not None else old_func
            if func is not None or "args" in options or "kwargs" in options:
                check_task_handler(handler, *settings.arguments())
            plan_of = injection_plan(handler)
            progress_is_async = is_async_callable(settings.progress_callback)
            with self._lock:
                task = self._task_locked(task_id)
                if task.settings is not base or task.func is not old_func:
                    continue  # another update won the race: apply ours on top of it
                self._open_locked()
                task.name = name
                if task.progress_is_async and not progress_is_async:
                    self._dispatcher.forget(task.id)
                task.progress_is_async = progress_is_async
                task.func, task.plan = handler, plan_of
                plan = task.update(settings, self._now(), reschedule=bool(_RESCHEDULING & set(changes)))
                self._engine.apply_locked(task, plan)
                view = task.view()
            break
        model = view.model()
        listeners = self._listeners.of(Event.TASK_UPDATED)
        if listeners:
            self._dispatcher.emit(listeners, (Event.TASK_UPDATED, model))
        return model

    def _task_locked(self, task_id: str) -> TaskState:
        """The task, for an id already checked to be a str (no user code under the lock)."""
        self._engine.check_readable_locked()
        task = self._engine.tasks.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"no task with id {task_id!r}")
        return task

    def _check_open(self) -> None:
        with self._lock:
            self._engine.check_open_locked()

    def remove_task(self, task_id: str) -> None:
        """Delete a task; a job of it that is running gets its stop event set.

        Callers blocked in :meth:`wait_for_task` on it get ``TaskNotFoundError``.
        """
        task_id = _check_id(task_id, "task_id")
        self._dispatcher.note_caller()
        if self._durable is not None:
            self._check_open()
            self._durable.remove(task_id)
            return
        with self._lock:
            task = self._task_locked(task_id)
            self._open_locked()  # refuses after shutdown
            view = task.view()
            self._engine.delete_locked(task)
            job = task.running
            stopping = job is not None and job.request_stop("cancelled: its task was removed")
            waiters = self._engine.waiters.take("task", task.id)
        if stopping and job is not None:
            job.stop.set()
        release_all(
            waiters,
            None,
            TaskNotFoundError(f"task {task_id!r} was removed before a job of it ended"),
            self.logger,
        )
        self._listeners.emit_task(Event.TASK_REMOVED, view)

    def pause_task(self, task_id: str) -> None:
        """Stop future runs of a task (a job already running finishes normally)."""
        task_id = _check_id(task_id, "task_id")
        self._dispatcher.note_caller()
        if self._durable is not None:
            self._check_open()
            self._durable.pause(task_id)
            return
        with self._lock:
            task = self._task_locked(task_id)
            self._open_locked()
            self._engine.apply_locked(task, task.pause())
            view = task.view()
        self._listeners.emit_task(Event.TASK_PAUSED, view)

    def resume_task(self, task_id: str, delay: float = 0) -> None:
        """Re-activate a task; its next run is ``delay`` seconds from now (0: at once)."""
        task_id = _check_id(task_id, "task_id")
        delay_s = check_seconds("delay", delay, positive=False)
        self._dispatcher.note_caller()
        if self._durable is not None:
            self._check_open()
            self._durable.resume(task_id, delay_s)
            return
        with self._lock:
            task = self._task_locked(task_id)
            self._open_locked()
            self._engine.apply_locked(task, task.resume(self._now() + delay_s))
            view = task.view()
        self._listeners.emit_task(Event.TASK_RESUMED, view)

    def run_task_immediately(self, task_id: str) -> int:
        """Run a task now, outside its schedule; return the number of tasks queued (1).

        A paused task runs once and stays paused. If a job of the task is
        running, the new run starts as soon as it ends (a task never runs
        twice at once).
        """
        task_id = _check_id(task_id, "task_id")
        self._dispatcher.note_caller()
        instruments = self._engine.runner.instruments
        link = None if instruments is None else instruments.capture("run_task_immediately")
        if self._durable is not None:
            self._check_open()
            return self._durable.run_now(task_id, link)
        with self._lock:
            self._engine.check_readable_locked()
            task = self._engine.tasks.get(task_id)
            if task is None:
                raise HandlerNotRegisteredError(f"no handler is registered for task id {task_id!r}")
            if not task.can_run_now():
                raise TaskNotScheduledError(
                    f"task {task_id!r} is a run-once task that has already started; it cannot run again"
                )
            self._open_locked()
            now = self._now()
            self._engine.apply_locked(task, task.run_now(now))
            if link is not None and instruments is not None:
                # Before the lock is let go: no worker can have started the run yet.
                instruments.expect(task.id, now, link)
        return 1

    def get_task(self, task_id: str) -> Task:
        """The task with this id."""
        task_id = _check_id(task_id, "task_id")
        self._dispatcher.note_caller()
        if self._durable is not None:
            self._check_readable()
            return self._durable.get_task(task_id)
        with self._lock:
            view = self._task_locked(task_id).view()
        return view.model()

    def _check_readable(self) -> None:
        with self._lock:
            self._engine.check_readable_locked()

    def get_all_tasks(self, include_run_once: bool = False) -> list[Task]:
        """Every task in the order they were added; run-once tasks only if asked."""
        if not isinstance(include_run_once, bool):
            raise InvalidArgumentError(f"include_run_once must be a bool, got {include_run_once!r}")
        self._dispatcher.note_caller()
        if self._durable is not None:
            self._check_readable()
            return self._durable.get_all_tasks(include_run_once)
        with self._lock:
            self._engine.check_readable_locked()
            views = [t.view() for t in self._engine.tasks.values() if include_run_once or not t.settings.once]
        return [view.model() for view in views]

    # ------------------------------------------------------------------- jobs
    def cancel_job(self, job_id: str) -> bool:
        """Set a running job's stop event; False if no such job is running."""
        job_id = _check_id(job_id, "job_id")
        if self._durable is not None:
            self._check_open()
            return self._durable.cancel(job_id)
        with self._lock:
            job = self._engine.live_jobs.get(job_id)
            stopping = job is not None and job.request_stop("cancelled by cancel_job()")
        if stopping and job is not None:
            job.stop.set()  # its callbacks (user code) run here, without the lock
        return stopping

    def get_job(self, job_id: str) -> Job:
        """The job with this id (running, or finished within the retention window)."""
        job_id = _check_id(job_id, "job_id")
        self._dispatcher.note_caller()
        if self._durable is not None:
            self._check_readable()
            return self._durable.get_job(job_id)
        with self._lock:
            self._engine.check_readable_locked()
            job = self._engine.live_jobs.get(job_id)
            row = job.row() if job is not None else None
        if row is not None:
            return job_model(row)
        self._writer.flush()
        store = self._writer.store
        stored = store.get_job(job_id) if store is not None else None
        if stored is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return job_model(stored)

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
        query = _job_query(status, task_id, newest_first=newest_first, limit=limit, offset=offset)
        store = self._read_store()
        if store is None:
            return []
        return [job_model(row) for row in store.list_jobs(query)]

    def count_jobs(self, status: str | JobStatus | None = None, *, task_id: str | None = None) -> int:
        """How many jobs are kept (running ones included), optionally only of ``status`` or of one task."""
        query = _job_query(status, task_id)
        store = self._read_store()
        return 0 if store is None else store.count_matching(query)

    def _read_store(self) -> JobReader | None:
        """The store with every change written, for a read; None before the first task."""
        self._dispatcher.note_caller()
        with self._lock:
            self._engine.check_readable_locked()
        if self._durable is not None:
            return self._durable.store
        self._writer.flush()
        return self._writer.store

    def wait_for_job(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job ends (``TimeoutError`` after ``timeout`` s) and return it.

        Wakes when the job ends and returns its final state; never polls. A
        job that already ended is returned at once. If the scheduler shuts
        down before the job ends, raises ``SchedulerStoppedError``. Do not
        call this on the event loop: use :meth:`wait_for_job_async` there.
        """
        if self._durable is not None:
            self._check_wait(job_id, "job_id", timeout)
            return self._durable.wait_for_job(job_id, timeout)
        waiter = SyncWaiter()
        if not self._register("job", job_id, timeout, waiter):
            return self.get_job(job_id)
        return self._block(waiter, timeout, f"job {job_id!r} did not end within {timeout} s")

    async def wait_for_job_async(self, job_id: str, timeout: float | None = None) -> Job:
        """Like :meth:`wait_for_job`, awaited on the event loop without blocking it."""
        if self._durable is not None:
            return await asyncio.to_thread(self.wait_for_job, job_id, timeout)
        waiter = AsyncWaiter(asyncio.get_running_loop())
        if not self._register("job", job_id, timeout, waiter):
            return await asyncio.to_thread(self.get_job, job_id)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"job {job_id!r} did not end within {timeout} s") from None
        finally:
            if not waiter.future.done():
                with self._lock:
                    self._engine.waiters.discard(waiter)
                waiter.future.cancel()

    def wait_for_task(self, task_id: str, timeout: float | None = None) -> Job:
        """Block until the next job of the task ends (the running one, if any) and return it.

        Raises ``TaskNotFoundError`` if the task is removed first and
        ``SchedulerStoppedError`` if the scheduler shuts down first.
        """
        if self._durable is not None:
            self._check_wait(task_id, "task_id", timeout)
            return self._durable.wait_for_task(task_id, timeout)
        waiter = SyncWaiter()
        self._register("task", task_id, timeout, waiter)
        return self._block(waiter, timeout, f"no job of task {task_id!r} ended within {timeout} s")

    def _check_wait(self, key: str, what: str, timeout: float | None) -> None:
        if timeout is not None:
            check_seconds("timeout", timeout, positive=False)
        _check_id(key, what)
        self._check_readable()

    def _register(self, kind: str, key: str, timeout: float | None, waiter: Waiter) -> bool:
        """Register ``waiter``; False for a job that is not running (nothing to wait for)."""
        if timeout is not None:
            check_seconds("timeout", timeout, positive=False)
        _check_id(key, f"{kind}_id")
        engine = self._engine
        with self._lock:
            engine.check_readable_locked()
            if kind == "task":
                self._task_locked(key)
                if engine.phase == STOPPING:
                    raise SchedulerStoppedError("the scheduler is shutting down")
            elif key not in engine.live_jobs and key not in engine.ending:
                return False
            engine.waiters.add(kind, key, waiter)
            return True

    def _block(self, waiter: SyncWaiter, timeout: float | None, message: str) -> Job:
        if not waiter.wait(timeout):
            with self._lock:
                self._engine.waiters.discard(waiter)
            if not waiter.wait(0):  # released while we took the lock: take the result
                raise TimeoutError(message)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.job is not None
        return waiter.job

    def stats(self) -> SchedulerStats:
        """Counts a dashboard wants: tasks and jobs by status, workers in use, the oldest running job.

        Live counts come from memory; history counts are one grouped query.
        Every kept job lies in the retention window, so the window counts are
        the history's completed and failed counts.
        """
        engine = self._engine
        if self._durable is not None:
            self._check_readable()
            return self._durable.stats(self.pool_size, float(self.history_retention_seconds))
        with self._lock:
            engine.check_readable_locked()
            tasks_by_status = dict.fromkeys((s.value for s in TaskStatus), 0)
            for task in engine.tasks.values():
                tasks_by_status[task.status.value] += 1
            oldest = min(engine.live_jobs.values(), key=lambda job: job.started, default=None)
            oldest_id, oldest_started = (None, None) if oldest is None else (oldest.id, oldest.started)
            running = len(engine.live_jobs)
            busy = engine.busy
            last_wake, last_start = engine.last_wake, engine.last_job_start
        from quiv.models import SchedulerStats

        jobs_by_status = dict.fromkeys((s.value for s in JobStatus), 0)
        self._writer.flush()
        store = self._writer.store
        if store is not None:
            jobs_by_status.update(store.count_jobs())
        return SchedulerStats(
            tasks_by_status=tasks_by_status,
            jobs_by_status=jobs_by_status,
            running_jobs=running,
            pool_size=self.pool_size,
            free_workers=max(0, self.pool_size - busy),
            oldest_running_job_id=oldest_id,
            oldest_running_job_started_at=None if oldest_started is None else utc(oldest_started),
            completed_in_window=jobs_by_status[JobStatus.COMPLETED.value],
            failed_in_window=jobs_by_status[JobStatus.FAILED.value],
            retention_seconds=float(self.history_retention_seconds),
            last_wake_at=None if last_wake is None else utc(last_wake),
            last_job_started_at=None if last_start is None else utc(last_start),
        )

    # -------------------------------------------------------------- listeners
    def add_listener(self, event: Event, callback: Callable[..., Any]) -> None:
        """Call ``callback`` when ``event`` fires; adding the same one twice has no effect."""
        if not isinstance(event, Event):
            raise ConfigurationError(f"event must be a quiv.Event member, got {event!r}")
        if not callable(callback):
            raise HandlerRegistrationError(f"listener for {event.name} must be callable, got {callback!r}")
        self._dispatcher.note_caller()
        self._listeners.add(event, callback)

    def remove_listener(self, event: Event, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` for ``event``; unknown callbacks are ignored."""
        if not isinstance(event, Event):
            raise ConfigurationError(f"event must be a quiv.Event member, got {event!r}")
        self._listeners.remove(event, callback)

    def add_progress_listener(self, callback: Callable[[ProgressReport], Any]) -> None:
        """Also send every task's progress reports to ``callback`` as a :class:`ProgressReport`.

        Delivered like listeners (on the main loop when there is one, in order
        with the job's events); adding the same callback twice has no effect.
        """
        if not callable(callback):
            raise HandlerRegistrationError(f"progress listener must be callable, got {callback!r}")
        self._dispatcher.note_caller()
        self._listeners.add(None, callback)

    def remove_progress_listener(self, callback: Callable[[ProgressReport], Any]) -> None:
        """Stop sending progress reports to ``callback``; unknown callbacks are ignored."""
        self._listeners.remove(None, callback)

    # ---------------------------------------------------------- declarations
    @property
    def registry(self) -> TaskRegistry:
        """This scheduler's own registry: its declarations and every registry it includes."""
        return self._declarations.registry

    def task(self, interval: float | None = None, **options: Unpack[DeclaredOptions]) -> TaskDecorator:
        """Declare the decorated function as a task, with the options of :meth:`add_task`.

        The function is returned unchanged. ``name`` defaults to its
        ``__name__``. Options and handler are checked now; the task is
        created when the scheduler starts (at once if it is running).
        """
        return self._declarations.registry.task(interval, **options)

    @overload
    def on(self, event: TaskEvent, /, *events: TaskEvent) -> TaskListenerDecorator: ...
    @overload
    def on(self, event: JobEvent, /, *events: JobEvent) -> JobListenerDecorator: ...
    def on(self, event: Event, /, *events: Event) -> TaskListenerDecorator | JobListenerDecorator:
        """Declare the decorated function as a listener of these events (all ``TASK_*`` or all ``JOB_*``)."""
        return self._declarations.registry.on(event, *events)  # type: ignore[call-overload,no-any-return]

    def include_registry(self, registry: TaskRegistry) -> None:
        """Take in every declaration of ``registry``, including those made after this call."""
        self._declarations.registry.include_registry(registry)

    def autodiscover(
        self, *packages: str, exclude: Iterable[str] = (), include_private: bool = False
    ) -> list[str]:
        """Import every module of each package, recursively in name order, so their declarations run.

        Modules and packages whose name starts with ``_`` are skipped unless
        ``include_private``; ``exclude`` lists dotted names (with their
        submodules) or glob patterns to skip. A module that fails to import
        raises ``DiscoveryError`` and keeps none of its declarations.
        Returns the modules visited; a call repeating an earlier successful
        one does nothing and returns ``[]``.
        """
        return self._declarations.autodiscover(packages, exclude, include_private)

    def task_id(self, func: Callable[..., Any], *, name: str | None = None) -> TaskId:
        """The id of the task this scheduler created for the declared ``func``.

        ``name`` picks one task when ``func`` is declared several times.
        Raises ``TaskNotMaterializedError`` before ``start()``,
        ``TaskNotFoundError`` if ``func`` is not declared here and
        ``AmbiguousTaskError`` if several declarations match.
        """
        return self._declarations.task_id(func, name)

    def _instrument(
        self, *, metrics: JobMetrics | None = None, tracer: JobTracer | None = None
    ) -> Instruments:
        """Attach a metrics recorder and/or a tracer; return what is attached now.

        Internal: :mod:`quiv.metrics` and :mod:`quiv.tracing` call it. A
        scheduler has at most one of each: one attached earlier is kept (and
        returned), so two collectors of one scheduler read the same counts.
        Jobs that start afterwards are observed; nothing else changes.
        """
        runner = self._engine.runner
        with self._lock:
            current = runner.instruments
            instruments = Instruments(
                self.logger,
                metrics if current is None or current.metrics is None else current.metrics,
                tracer if current is None or current.tracer is None else current.tracer,
            )
            runner.instruments = instruments
        return instruments

    def _incoming_trace(self, headers: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
        """Around a call made for an HTTP request: its ``traceparent`` becomes current when no span is.

        Does nothing unless a tracer is attached. Internal: ``quiv.fastapi``'s
        "run now" route uses it, so the run links to the caller's trace even
        when the application does not trace its requests itself.
        """
        instruments = self._engine.runner.instruments
        if instruments is None or instruments.tracer is None:
            return contextlib.nullcontext()
        return instruments.tracer.incoming(headers)

    def _worker_health(self) -> tuple[int, float | None, float | None] | None:
        """With a ``database_url``: live processes, this one's heartbeat age, the stalest one's (seconds).

        None in the default mode. Internal: the Prometheus collector reads it.
        """
        if self._durable is None:
            return None
        self._check_readable()
        return self._durable.worker_health()

    def _add_progress_tap(self, tap: ProgressTap) -> None:
        """Call ``tap(task_id, task_name, job_id, args, kwargs)`` in the job's thread for each report.

        Internal (the live stream uses it): unlike a progress listener, nothing
        is dispatched to the main loop, so the tap must be cheap and thread-safe.
        """
        self._listeners.add_tap(tap)

    def _remove_progress_tap(self, tap: ProgressTap) -> None:
        self._listeners.remove_tap(tap)

    def _subscribe_remote(self, sink: Callable[[dict[str, Any]], None]) -> None:
        """Hand the live events and progress of *other* processes to ``sink`` (any thread).

        Only the shared PostgreSQL mode with ``notify`` relays anything; the live
        stream of :mod:`quiv.fastapi` subscribes while it has clients.
        """
        if self._durable is not None:
            self._durable.subscribe(sink)

    def _unsubscribe_remote(self, sink: Callable[[dict[str, Any]], None]) -> None:
        if self._durable is not None:
            self._durable.unsubscribe(sink)

    def __repr__(self) -> str:
        if self._durable is not None:
            tasks = len(self._durable.coordinator.local)
            where = f" database={self._durable.target.shown}"
        else:
            tasks, where = len(self._engine.tasks), ""
        return f"<Quiv {self._engine.phase} pool_size={self.pool_size} tasks={tasks}{where}>"


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
    job = current_job.get()
    if job is not None and isinstance(job.scheduler, Quiv):
        return job.scheduler
    with _active_lock:
        return _active[-1] if _active else None
