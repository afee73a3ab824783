"""The engine under ``Quiv``: task and job state, the workers, job execution.

``_Engine`` holds the in-memory schedule (a due-time heap over task
records), the live jobs and the leader/followers worker threads; ``Quiv``
adds the public API on top. Everything here runs with ``self._lock`` held
unless its name says otherwise: methods ending in ``_locked`` need it, the
others take it themselves or run without it (handlers, announcements).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import pickle
import threading
from collections.abc import Callable
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from quiv._core.clock import Clock
from quiv._core.context import current_job_id, current_scheduler, current_stop_event, current_task
from quiv._core.ids import new_id
from quiv._core.task import JobState, TaskState, utc
from quiv._core.watchdog import Watchdog
from quiv._delivery.dispatch import Dispatcher, run_coroutine_blocking, set_in_job_thread
from quiv._delivery.progress import ProgressReport
from quiv._enums import Event, JobStatus, TaskStatus
from quiv._exceptions import SchedulerStoppedError
from quiv._schedule.policies import Misfire, late_run_decision, retry_delay
from quiv._schedule.triggers import next_regular_run
from quiv._store.base import Store
from quiv._store.writer import Persister

if TYPE_CHECKING:
    from quiv.models import Job, Task

__all__ = ["LATE_WARNING_GAP", "LATE_WARNING_SECONDS", "Listener", "_Engine"]

#: A job that starts this many seconds after it was due, because the pool was full, is logged.
LATE_WARNING_SECONDS = 1.0
#: Due times within a microsecond of now count as due (a datetime shows no finer).
_TOLERANCE = 1e-6
#: At most one "started late" warning per this many seconds (the rest are counted).
LATE_WARNING_GAP = 1.0

NEW, RUNNING, STOPPING, STOPPED = "new", "running", "stopping", "stopped"

Listener = tuple[Callable[..., Any], bool]


class _Engine:
    """Scheduling state and worker threads; see the module docstring."""

    pool_size: int
    history_retention_seconds: float
    timezone: tzinfo
    logger: logging.Logger | logging.LoggerAdapter[Any]
    _clock: Clock
    _timestamp: Callable[[], float]
    _dispatcher: Dispatcher

    def _init_engine(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._phase = NEW
        self._tasks: dict[str, TaskState] = {}
        self._heap: list[tuple[float, int, int, TaskState, bool]] = []
        self._seq = 0
        self._live_jobs: dict[str, JobState] = {}
        #: Jobs that have ended but whose end event is still being delivered.
        self._ending: dict[str, JobState] = {}
        self._busy = 0
        # Leader/followers: idle workers wait for work themselves. At most one,
        # the leader, sleeps until the earliest due time; the others sleep
        # until promoted. A job starts on the thread that noticed it was due.
        self._leader_cond = threading.Condition(self._lock)
        self._follower_cond = threading.Condition(self._lock)
        self._has_leader = False
        self._idle_followers = 0
        self._threads: list[threading.Thread] = []
        self._watchdog: Watchdog[JobState] = Watchdog(self._clock, self._expire_job)
        self._wake_at = math.inf
        # When the pool last filled up, and the last spell during which it was full:
        # a job that starts late is blamed on the pool only if it came due then.
        self._full_since: float | None = None
        self._full_spell: tuple[float, float] | None = None
        self._late_last_warning = -math.inf
        self._late_suppressed = 0
        self._listeners: dict[Event, tuple[Listener, ...]] = dict.fromkeys(Event, ())
        self._progress_listeners: tuple[Listener, ...] = ()
        self._persister: Persister | None = None

    def _store_locked(self) -> Persister:
        """The persister, creating the database on first use. Caller holds the lock."""
        if self._phase == STOPPED or self._phase == STOPPING:
            raise SchedulerStoppedError("the scheduler has been shut down; create a new Quiv")
        if self._persister is None:
            from quiv._store.sqlite import SQLiteStore  # SQLAlchemy loads with the first database

            store: Store = SQLiteStore()
            self._persister = Persister(
                store, self._lock, self._clock, float(self.history_retention_seconds), self.logger
            )
        return self._persister

    def _fmt(self, ts: float) -> str:
        return utc(ts).astimezone(self.timezone).isoformat(timespec="milliseconds")

    def _now(self) -> float:
        return self._timestamp()

    def _call_waiters(self, waiters: list[Callable[[JobState], None]], job: JobState) -> None:
        for waiter in waiters:
            try:
                waiter(job)
            except Exception:
                self.logger.exception("a waiter of job %s raised", job.id)

    @staticmethod
    def _take_waiters_locked(job: JobState) -> list[Callable[[JobState], None]]:
        waiters = job.waiters or []
        job.waiters = None
        task_waiters = job.task.job_waiters
        if task_waiters:
            job.task.job_waiters = None
            waiters = waiters + task_waiters
        return waiters

    # ----------------------------------------------------------------- engine
    def _schedule_locked(
        self, task: TaskState, due: float, *, forced: bool = False, nominal: float | None = None
    ) -> None:
        """Make ``due`` the task's one valid heap entry and wake a worker if it is the earliest.

        ``nominal`` is the run's place in the schedule before jitter (the
        cadence anchor); it defaults to ``due``.
        """
        task.version += 1
        task.next_run = due
        task.nominal = due if nominal is None else nominal
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, task.version, task, forced))
        if due < self._wake_at:
            self._wake_at = due
            self._summon_locked()
        if len(self._heap) > 2 * len(self._tasks) + 64:
            self._heap = [e for e in self._heap if e[2] == e[3].version and not e[3].removed]
            heapq.heapify(self._heap)

    def _take_due_locked(self, now: float) -> JobState | None:
        """Pop the first due, runnable heap entry and create its job."""
        heap = self._heap
        while heap:
            due, _, version, task, forced = heap[0]
            if version != task.version or task.removed:
                heapq.heappop(heap)
                continue
            if due > now + _TOLERANCE:
                return None
            heapq.heappop(heap)
            if task.running is not None:  # defensive: never two jobs of one task
                task.requested = due
                continue
            if task.status is TaskStatus.PAUSED and not forced:
                continue
            grace = task.settings.misfire_grace
            if not forced and task.retry is None and not late_run_decision(due, now, grace):
                self._skip_late_run_locked(task, due, now)
                continue
            return self._create_job_locked(task, due, now, forced)
        return None

    def _create_job_locked(self, task: TaskState, due: float, now: float, forced: bool) -> JobState:
        retry = task.retry
        if retry is not None:
            attempt, retry_of = retry
            task.retry = None
            cycle_due = task.cycle_due if task.cycle_due is not None else due
        else:
            attempt, retry_of = 1, None
            cycle_due = task.cycle_due = task.nominal
        # The thread that creates a job runs it straight away, so it starts as running.
        job = JobState(
            id=new_id(),
            task=task,
            task_name=task.name,
            due=due,
            cycle_due=cycle_due,
            started=now,
            forced=forced,
            status=JobStatus.RUNNING,
            attempt=attempt,
            retry_of=retry_of,
        )
        task.running = job
        task.started_once = True
        task.manual_due = None
        if task.status is not TaskStatus.PAUSED:
            task.status = TaskStatus.RUNNING
        settings = task.settings
        if settings.interval is not None and not settings.once:
            task.next_run = cycle_due + settings.interval
        if settings.timeout is not None:
            self._watchdog.watch(now + settings.timeout, job)
        self._live_jobs[job.id] = job
        self._busy += 1
        assert self._persister is not None
        self._persister.job_changed(job)
        self._persister.task_changed(task)
        late = now - due
        if self._busy == self.pool_size:
            spell = self._full_spell
            # A pool that fills up again the moment it drained has been full all along.
            self._full_since = spell[0] if spell is not None and spell[1] >= now else now
        if late >= LATE_WARNING_SECONDS and self._pool_was_full_at(due):
            self._warn_late(task, late, now)
        return job

    def _skip_late_run_locked(self, task: TaskState, due: float, now: float) -> None:
        """A run is later than its task's ``misfire_grace`` allows: log it and move on."""
        self.logger.warning(
            "task %r: skipped the run due %s, %.3f s late (misfire_grace is %s s)",
            task.name,
            self._fmt(due),
            now - due,
            task.settings.misfire_grace,
        )
        planned = next_regular_run(task.settings, task.nominal, now, misfire=Misfire.SKIP)
        if planned is None:
            self._delete_task_locked(task)
            return
        nominal, actual = planned
        self._schedule_locked(task, actual, nominal=nominal)
        assert self._persister is not None
        self._persister.task_changed(task)

    def _delete_task_locked(self, task: TaskState) -> None:
        task.removed = True
        task.version += 1
        self._tasks.pop(task.id, None)
        assert self._persister is not None
        self._persister.task_deleted(task.id)
        if task.progress_is_async:
            self._dispatcher.forget(task.id)

    def _expire_job(self, job: JobState) -> None:
        """The watchdog's callback: a job ran past its task's timeout."""
        with self._lock:
            if job.id not in self._live_jobs or not job.request_stop(
                f"timed out after {job.task.settings.timeout:g} s"
            ):
                return
        self.logger.warning("job %s of task %r timed out; its stop event is set", job.id, job.task_name)

    def _pool_was_full_at(self, when: float) -> bool:
        if self._full_since is not None and self._full_since <= when:
            return True
        spell = self._full_spell
        return spell is not None and spell[0] <= when <= spell[1]

    def _warn_late(self, task: TaskState, late: float, now: float) -> None:
        if now - self._late_last_warning < LATE_WARNING_GAP:
            self._late_suppressed += 1
            return
        suppressed, self._late_suppressed = self._late_suppressed, 0
        self._late_last_warning = now
        self.logger.warning(
            "threadpool was busy: task %r started %.3f s late (due %s)%s; consider a larger pool_size",
            task.name,
            late,
            self._fmt(now - late),
            f", {suppressed} more late start(s) not logged" if suppressed else "",
        )

    # ---------------------------------------------------------------- workers
    def _spawn_worker_locked(self) -> None:
        thread = threading.Thread(
            target=self._worker_main, name=f"quiv-worker-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _summon_locked(self) -> None:
        """Make sure some idle worker re-reads the schedule: the leader, a follower, or a new thread."""
        if self._phase != RUNNING or self._busy >= self.pool_size:
            return
        if self._has_leader:
            self._leader_cond.notify()
        elif self._idle_followers:
            self._follower_cond.notify()
        elif len(self._threads) < self.pool_size:
            self._spawn_worker_locked()

    def _worker_main(self) -> None:
        lock = self._lock
        with lock:
            while self._phase == RUNNING:
                job = self._take_due_locked(self._now()) if self._busy < self.pool_size else None
                if job is None:
                    self._idle_locked()
                    continue
                # Someone else must watch the clock while this thread runs the job.
                if self._heap and not self._has_leader:
                    self._summon_locked()
                lock.release()
                try:
                    status, error = self._run_job(job)
                except Exception:  # a bug in quiv itself: never lose the worker or the job
                    self.logger.exception("quiv failed running job %s of task %r", job.id, job.task_name)
                    status, error = JobStatus.FAILED, "quiv internal error; see the log"
                finally:
                    lock.acquire()
                # Book the end of this job and (next turn of the loop) take the next one
                # under this single hold of the lock; events go out with the lock released.
                ended = self._finish_job_locked(job, status, error)
                if ended is not None:
                    lock.release()
                    try:
                        self._announce_end(job, *ended)
                    finally:
                        lock.acquire()

    def _idle_locked(self) -> None:
        """Wait for work: as the leader until the next due time, else until promoted."""
        if self._has_leader:
            self._idle_followers += 1
            self._follower_cond.wait()
            self._idle_followers -= 1
            return
        self._has_leader = True
        heap = self._heap
        while heap and (heap[0][2] != heap[0][3].version or heap[0][3].removed):
            heapq.heappop(heap)
        # With every worker busy nothing can start until a job ends, and that job's
        # thread looks again by itself: no deadline then.
        deadline = heap[0][0] if heap and self._busy < self.pool_size else math.inf
        self._wake_at = deadline
        timeout = None if deadline == math.inf else self._clock.wait_seconds(deadline)
        self._leader_cond.wait(timeout)
        self._has_leader = False
        self._wake_at = math.inf

    def _run_job(self, job: JobState) -> tuple[JobStatus, str | None]:
        """Run one job on this worker thread (lock not held); return how it ended."""
        if job.stop.is_set():
            return JobStatus.CANCELLED, job.cancel_reason or "cancelled before it started"
        listeners = self._listeners[Event.JOB_STARTED]
        if listeners:
            self._emit_job(listeners, Event.JOB_STARTED, job)
        status, error = self._call_handler(job)
        if status is JobStatus.COMPLETED and job.stop.is_set():
            status, error = JobStatus.CANCELLED, job.cancel_reason or "cancelled"
        return status, error

    def _call_handler(self, job: JobState) -> tuple[JobStatus, str | None]:
        """Call the handler with its arguments and hooks; report how it ended."""
        task = job.task
        try:
            args = pickle.loads(task.settings.args_blob)
            kwargs = pickle.loads(task.settings.kwargs_blob)
        except Exception as exc:
            self.logger.error(
                "job %s of task %r: could not unpickle its arguments: %s", job.id, task.name, exc
            )
            return JobStatus.FAILED, f"could not unpickle the task's arguments: {type(exc).__name__}: {exc}"
        plan = task.plan
        if plan.job_id:
            kwargs["_job_id"] = job.id
        if plan.stop_event:
            kwargs["_stop_event"] = job.stop
        if plan.progress_hook:
            kwargs["_progress_hook"] = _ProgressHook(self, task, job.id)
        set_in_job_thread(True)
        job_token = current_job_id.set(job.id)
        task_token = current_task.set((task.id, task.name))
        stop_token = current_stop_event.set(job.stop)
        scheduler_token = current_scheduler.set(self)
        try:
            result = task.func(*args, **kwargs)
            if plan.is_async or (result is not None and asyncio.iscoroutine(result)):
                run_coroutine_blocking(result)
        except BaseException as exc:  # a handler must never take the worker down
            if isinstance(exc, Exception):
                self.logger.exception("job %s of task %r failed", job.id, task.name)
            else:
                self.logger.error("job %s of task %r raised %s", job.id, task.name, type(exc).__name__)
            return JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            current_scheduler.reset(scheduler_token)
            current_stop_event.reset(stop_token)
            current_task.reset(task_token)
            current_job_id.reset(job_token)
            set_in_job_thread(False)
        return JobStatus.COMPLETED, None

    _END_EVENTS = {
        JobStatus.COMPLETED: Event.JOB_COMPLETED,
        JobStatus.FAILED: Event.JOB_FAILED,
        JobStatus.CANCELLED: Event.JOB_CANCELLED,
    }

    def _finish_job_locked(
        self, job: JobState, status: JobStatus, error: str | None
    ) -> tuple[Event, tuple[Listener, ...], tuple[Task, Job] | None, list[Callable[[JobState], None]]] | None:
        """Record the end of a job (lock held); return what must be announced, if anything."""
        task = job.task
        if self._phase == STOPPED:
            # Shutdown gave up waiting for this job: its result has nowhere to go.
            self._busy -= 1
            return None
        now = self._now()
        job.status = status
        job.ended = max(now, job.started)
        job.error = error
        del self._live_jobs[job.id]
        task.running = None
        persister = self._persister
        assert persister is not None
        persister.job_changed(job)
        if not task.removed:
            retry = (
                status is JobStatus.FAILED
                and not job.stop.is_set()
                and job.attempt <= task.settings.max_retries
            )
            if task.run_once and not retry:
                self._delete_task_locked(task)
            else:
                self._reschedule_after_job_locked(task, job, now, retry)
                persister.task_changed(task)
        if self._busy == self.pool_size and self._full_since is not None:
            self._full_spell, self._full_since = (self._full_since, now), None
        self._busy -= 1
        if self._phase == STOPPING and not self._busy:
            self._cond.notify_all()
        event = self._END_EVENTS[status]
        listeners = self._listeners[event]
        if listeners:
            # Until its end event is delivered the job stays findable, so a
            # wait_for_job() that starts meanwhile still waits for the listeners.
            self._ending[job.id] = job
            return event, listeners, (task.model(), job.model()), []
        waiters = self._take_waiters_locked(job)
        return (event, listeners, None, waiters) if waiters else None

    def _announce_end(
        self,
        job: JobState,
        event: Event,
        listeners: tuple[Listener, ...],
        snapshot: tuple[Task, Job] | None,
        waiters: list[Callable[[JobState], None]],
    ) -> None:
        """Deliver a job's end event, then wake its waiters (lock not held)."""
        if snapshot is not None:
            self._dispatcher.emit(listeners, (event, *snapshot))
            with self._lock:
                self._ending.pop(job.id, None)
                waiters = self._take_waiters_locked(job)
        # Waiters last: without a main loop, listeners have run when a waiter wakes.
        self._call_waiters(waiters, job)

    def _reschedule_after_job_locked(self, task: TaskState, job: JobState, now: float, retry: bool) -> None:
        settings = task.settings
        if retry:
            # Every attempt is its own job; retries keep the first attempt's place in the cadence.
            task.retry = (job.attempt + 1, job.retry_of or job.id)
            nominal = due = now + retry_delay(job.attempt, settings.retry_backoff)
        else:
            task.retry = None
            task.cycle_due = None
            planned = next_regular_run(settings, job.cycle_due, now, started=job.started)
            if planned is None:
                if task.status is TaskStatus.RUNNING:
                    task.status = TaskStatus.ACTIVE
                return
            nominal, due = planned
        forced = False
        if task.requested is not None:
            # A run asked for while this job ran (run now / resume) replaces the plan.
            nominal = due = task.requested
            forced = task.requested_forced
            task.requested = None
            task.requested_forced = False
        if task.status is TaskStatus.PAUSED and not forced:
            task.next_run = due
            return
        if task.status is TaskStatus.RUNNING:
            task.status = TaskStatus.ACTIVE
        self._schedule_locked(task, due, forced=forced, nominal=nominal)

    def _emit_job(self, listeners: tuple[Listener, ...], event: Event, job: JobState) -> None:
        with self._lock:
            snapshot = (job.task.model(), job.model())
        self._dispatcher.emit(listeners, (event, *snapshot))

    def _report_to_listeners(
        self, task: TaskState, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        listeners = self._progress_listeners
        if listeners:
            report = ProgressReport(task.id, task.name, job_id, args, kwargs, self._clock.now())
            self._dispatcher.emit(listeners, (report,))


class _ProgressHook:
    """The ``_progress_hook`` a handler receives: forwards any payload to the task's callback."""

    __slots__ = ("_dispatcher", "_job_id", "_scheduler", "_task")

    def __init__(self, scheduler: _Engine, task: TaskState, job_id: str) -> None:
        self._scheduler = scheduler
        self._dispatcher = scheduler._dispatcher
        self._task = task
        self._job_id = job_id

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        # Called thousands of times a second by chatty handlers: keep it flat.
        task = self._task
        callback = task.settings.progress_callback
        if callback is not None and not task.removed:
            self._dispatcher.progress(task.id, callback, task.progress_is_async, args, kwargs)
        if self._scheduler._progress_listeners:
            self._scheduler._report_to_listeners(task, self._job_id, args, kwargs)

    def __repr__(self) -> str:
        return f"<progress hook of task {self._task.name!r}>"
