"""The engine: the due-time heap, the live jobs and the worker threads.

The engine applies the :data:`~quiv._core.task.Plan` a task transition
returns (a heap entry, or deletion), runs due jobs on leader/followers
worker threads and books their end. It owns the scheduler lock; the facade
(:class:`quiv.Quiv`) takes it through :attr:`Engine.lock` to call a
transition and hands the plan back to :meth:`Engine.apply_locked`.

Methods ending in ``_locked`` need the lock; the rest take it themselves.
Nothing under the lock runs user code: events, waiters, stop-event
callbacks and log records go out after it is released.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from quiv._core.clock import Clock
from quiv._core.context import current_job
from quiv._core.runner import JobRunner
from quiv._core.task import DELETE, JobState, Plan, Schedule, TaskState, TaskView, job_model, utc
from quiv._core.waiters import WaiterRegistry, release_all
from quiv._core.watchdog import Watchdog
from quiv._delivery.events import Listeners
from quiv._enums import Event, JobStatus
from quiv._exceptions import SchedulerStoppedError
from quiv._schedule.triggers import TOLERANCE
from quiv._store.writer import Writer

__all__ = ["LATE_WARNING_GAP", "LATE_WARNING_SECONDS", "Engine"]

#: A job that starts this many seconds after it was due, because the pool was full, is logged.
LATE_WARNING_SECONDS = 1.0
#: At most one "started late" warning per this many seconds (the rest are counted).
LATE_WARNING_GAP = 1.0
#: The longest a worker sleeps in one wait; it then looks at the clock again.
MAX_WAIT_SECONDS = 3600.0

NEW, RUNNING, STOPPING, STOPPED = "new", "running", "stopping", "stopped"

_END_EVENTS = {
    JobStatus.COMPLETED: Event.JOB_COMPLETED,
    JobStatus.FAILED: Event.JOB_FAILED,
    JobStatus.CANCELLED: Event.JOB_CANCELLED,
}

_Log = tuple[int, str, tuple[Any, ...]]


class Engine:
    """Scheduling state and worker threads; see the module docstring."""

    def __init__(
        self,
        *,
        lock: threading.Lock,
        pool_size: int,
        clock: Clock,
        timestamp: Callable[[], float],
        timezone: tzinfo,
        listeners: Listeners,
        runner: JobRunner,
        writer: Writer,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.pool_size = pool_size
        self.clock = clock
        self.now = timestamp
        self.timezone = timezone
        self.listeners = listeners
        self.runner = runner
        self.writer = writer
        self.logger = logger
        self.waiters = WaiterRegistry()
        self.lock = lock
        self.phase = NEW
        self.tasks: dict[str, TaskState] = {}
        self.live_jobs: dict[str, JobState] = {}
        #: Jobs that have ended but whose end event is still being delivered.
        self.ending: dict[str, JobState] = {}
        self.busy = 0
        self._heap: list[tuple[float, int, int, TaskState, bool]] = []
        self._seq = 0
        self._drained = threading.Condition(self.lock)
        # Leader/followers: idle workers wait for work themselves. At most one,
        # the leader, sleeps until the earliest due time; the others sleep
        # until needed. A job starts on the thread that noticed it was due.
        self._leader_cond = threading.Condition(self.lock)
        self._follower_cond = threading.Condition(self.lock)
        self._has_leader = False
        self._idle_followers = 0
        self._wake_at = math.inf
        self._threads: list[threading.Thread] = []
        self._watchdog: Watchdog[JobState] = Watchdog(clock, self._expire_job)
        # When the pool last filled up, and the last spell during which it was full:
        # a job that starts late is blamed on the pool only if it came due then.
        self._full_since: float | None = None
        self._full_spell: tuple[float, float] | None = None
        self._late_last_warning = -math.inf
        self._late_suppressed = 0
        self._logs: list[_Log] = []
        #: True while a worker thread that will read the heap again holds the lock.
        self._worker_returning = False
        #: Liveness, for stats(): when a worker last woke up and when a job last started.
        self.last_wake: float | None = None
        self.last_job_start: float | None = None

    # ------------------------------------------------------------------ state
    def check_open_locked(self) -> None:
        if self.phase in (STOPPING, STOPPED):
            raise SchedulerStoppedError("the scheduler has been shut down; create a new Quiv")

    def check_readable_locked(self) -> None:
        if self.phase == STOPPED:
            raise SchedulerStoppedError("the scheduler has been shut down and its database deleted")

    def fmt(self, ts: float) -> str:
        return utc(ts).astimezone(self.timezone).isoformat(timespec="milliseconds")

    def add_locked(self, task: TaskState) -> None:
        self.tasks[task.id] = task
        self.apply_locked(task, task.add(self.now()))

    def apply_locked(self, task: TaskState, plan: Plan) -> None:
        """Carry out what a transition asked for, and persist the task's new state."""
        if plan is DELETE:
            self.delete_locked(task)
            return
        if isinstance(plan, Schedule):
            self._seq += 1
            heapq.heappush(self._heap, (plan.due, self._seq, plan.version, task, plan.forced))
            self._summon_locked(plan.due)
            if len(self._heap) > 2 * len(self.tasks) + 64:
                self._heap = [e for e in self._heap if e[3].is_due_entry(e[2])]
                heapq.heapify(self._heap)
        if not task.removed:
            self.writer.task_changed(task)

    def delete_locked(self, task: TaskState) -> None:
        task.remove()
        self.tasks.pop(task.id, None)
        self.writer.task_deleted(task.id)
        if task.progress_is_async:
            self.listeners.dispatcher.forget(task.id)

    # ---------------------------------------------------------------- workers
    def start_locked(self) -> None:
        self.phase = RUNNING
        self._watch_clock(True)
        if self._heap:
            self._summon_locked(self._heap[0][0])

    def _watch_clock(self, on: bool) -> None:
        if on:
            self.clock.subscribe(self._clock_jumped)
        else:
            self.clock.unsubscribe(self._clock_jumped)

    def _clock_jumped(self) -> None:
        with self.lock:
            self._leader_cond.notify_all()
            if not self._has_leader and self._heap:
                self._summon_locked(self._heap[0][0])

    def _summon_locked(self, due: float) -> None:
        """Due work exists at ``due``: make sure an idle worker will look at it in time."""
        if self.phase != RUNNING or self.busy >= self.pool_size:
            return
        if self._has_leader:
            if due < self._wake_at:
                self._wake_at = due
                self._leader_cond.notify()
        elif self._worker_returning:
            pass  # the worker calling this reads the heap again before it waits
        elif self._idle_followers:
            self._follower_cond.notify()
        elif len(self._threads) < self.pool_size:
            thread = threading.Thread(
                target=self._worker_main, name=f"quiv-worker-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        # Otherwise every thread is running a job or on its way back to the heap,
        # and each one reads the heap again before it waits.

    def _worker_main(self) -> None:
        lock = self.lock
        with lock:
            while self.phase == RUNNING:
                try:
                    self._worker_returning = True
                    try:
                        job = self._take_due_locked(self.now()) if self.busy < self.pool_size else None
                    finally:
                        self._worker_returning = False
                    if job is not None:
                        self._run_locked(job)  # flushes the log records on its way
                    elif self._logs:
                        self._flush_logs()  # the lock was let go: read the heap again
                    else:
                        self._idle_locked()
                except Exception:  # a bug in quiv itself: log it and keep the worker alive
                    self._has_leader = False
                    self._wake_at = math.inf
                    self.logger.exception("quiv's worker loop failed; it carries on")

    def _run_locked(self, job: JobState) -> None:
        lock = self.lock
        # Someone else must watch the clock while this thread runs the job.
        if self._heap and not self._has_leader:
            self._summon_locked(self._heap[0][0])
        started = self.listeners.of(Event.JOB_STARTED)
        snapshot = (job.task.view(), job.row()) if started else None
        logs, self._logs = self._logs, []
        lock.release()
        try:
            self._log_all(logs)
            if snapshot is not None:
                self.listeners.emit_job(Event.JOB_STARTED, *snapshot, listeners=started)
            status, error = self.runner.run(job)
        except Exception:  # a bug in quiv itself: never lose the worker or the job
            self.logger.exception("quiv failed running job %s of task %r", job.id, job.task_name)
            status, error = JobStatus.FAILED, "quiv internal error; see the log"
        finally:
            lock.acquire()
        # Book the end of this job and (next turn of the loop) take the next one
        # under this single hold of the lock; events go out with the lock released.
        ended = self._finish_job_locked(job, status, error)
        if ended is not None:
            self._announce_end_locked(job, *ended)

    def _idle_locked(self) -> None:
        """Wait for work: as the leader until the next due time, else until needed."""
        if self._has_leader:
            self._idle_followers += 1
            try:
                self._follower_cond.wait()
            finally:
                self._idle_followers -= 1
            return
        self._has_leader = True
        heap = self._heap
        while heap and not heap[0][3].is_due_entry(heap[0][2]):
            heapq.heappop(heap)
        # With every worker busy nothing can start until a job ends, and that job's
        # thread looks again by itself: no deadline then.
        deadline = heap[0][0] if heap and self.busy < self.pool_size else math.inf
        self._wake_at = deadline
        timeout = None if deadline == math.inf else self.clock.wait_seconds(deadline)
        if timeout is not None:
            timeout = min(max(timeout, 0.0), MAX_WAIT_SECONDS)
        try:
            self._leader_cond.wait(timeout)
        finally:
            self._has_leader = False
            self._wake_at = math.inf
            self.last_wake = self.now()

    def _take_due_locked(self, now: float) -> JobState | None:
        """Pop the first due, runnable heap entry and start its job."""
        heap = self._heap
        while heap:
            due, _, version, task, forced = heap[0]
            if not task.is_due_entry(version):
                heapq.heappop(heap)
                continue
            if due > now + TOLERANCE:
                return None
            heapq.heappop(heap)
            start, plan = task.take(due, forced, now)
            if start:
                return self._start_job_locked(task, due, now)
            if plan is not None:
                self._logs.append(
                    (
                        logging.WARNING,
                        "task %r: skipped the run due %s, %.3f s late (misfire_grace is %s s)",
                        (task.name, self.fmt(due), now - due, task.settings.misfire_grace),
                    )
                )
                instruments = self.runner.instruments
                if instruments is not None:
                    instruments.skipped(task.name, JobStatus.MISSED)
                self.apply_locked(task, plan)
        return None

    def _start_job_locked(self, task: TaskState, due: float, now: float) -> JobState:
        job = task.start_job(due, now)
        timeout = task.settings.timeout
        if timeout is not None:
            job.watch = self._watchdog.watch(now + timeout, job)
        self.live_jobs[job.id] = job
        self.busy += 1
        self.last_job_start = now
        self.writer.job_changed(job)
        self.writer.task_changed(task)
        if self.busy == self.pool_size:
            spell = self._full_spell
            # A pool that fills up again the moment it drained has been full all along.
            self._full_since = spell[0] if spell is not None and spell[1] >= now else now
        late = now - due
        if late >= LATE_WARNING_SECONDS and self._pool_was_full_at(due):
            self._warn_late(task, late, now)
        return job

    def _flush_logs(self) -> None:
        """Emit the log records gathered under the lock, letting it go meanwhile."""
        logs, self._logs = self._logs, []
        self.lock.release()
        try:
            self._log_all(logs)
        finally:
            self.lock.acquire()

    def _log_all(self, logs: list[_Log]) -> None:
        """Emit log records gathered under the lock (call without it: handlers are user code)."""
        for level, message, args in logs:
            self.logger.log(level, message, *args)

    def _expire_job(self, job: JobState) -> None:
        """The watchdog's callback: a job ran past its task's timeout."""
        with self.lock:
            if job.id not in self.live_jobs or not job.request_stop(
                f"timed out after {job.task.settings.timeout:g} s"
            ):
                return
        job.stop.set()
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
        self._logs.append(
            (
                logging.WARNING,
                "threadpool was busy: task %r started %.3f s late (due %s)%s; consider a larger pool_size",
                (
                    task.name,
                    late,
                    self.fmt(now - late),
                    f", {suppressed} more late start(s) not logged" if suppressed else "",
                ),
            )
        )

    # ---------------------------------------------------------------- job end
    def _finish_job_locked(
        self, job: JobState, status: JobStatus, error: str | None
    ) -> tuple[Event, tuple[Any, ...], TaskView, tuple[Any, ...], list[Any]] | None:
        """Record the end of a job (lock held); return what must be announced, if anything."""
        task = job.task
        if job.watch is not None:
            self._watchdog.cancel(job.watch)  # the job's state is released now, not at its deadline
            job.watch = None
        if self.phase == STOPPED:
            # Shutdown gave up waiting for this job: its result has nowhere to go.
            self.busy -= 1
            return None
        now = self.now()
        job.status = status
        job.ended = max(now, job.started)
        job.error = error
        del self.live_jobs[job.id]
        self.writer.job_changed(job)
        plan = task.end_job(job, now)
        if not task.removed:
            self._worker_returning = True
            try:
                self.apply_locked(task, plan)
            finally:
                self._worker_returning = False
        if self.busy == self.pool_size and self._full_since is not None:
            self._full_spell, self._full_since = (self._full_since, now), None
        self.busy -= 1
        if self.phase == STOPPING:
            self._drained.notify_all()
        event = _END_EVENTS[status]
        listeners = self.listeners.of(event)
        if listeners:
            # Until its end event is delivered the job stays findable, so a
            # wait_for_job() that starts meanwhile still waits for the listeners.
            self.ending[job.id] = job
            return event, listeners, task.view(), job.row(), []
        waiters = self.waiters.take_job_end(job.id, task.id)
        if waiters:
            return event, listeners, task.view(), job.row(), waiters
        return None

    def _announce_end_locked(
        self,
        job: JobState,
        event: Event,
        listeners: tuple[Any, ...],
        view: TaskView,
        row: tuple[Any, ...],
        waiters: list[Any],
    ) -> None:
        """Deliver a job's end event, then wake its waiters; the lock is let go for both.

        The worker takes the lock back afterwards for its next turn anyway, so
        forgetting the ended job happens under that same hold.
        """
        lock = self.lock
        if listeners:
            lock.release()
            try:
                self.listeners.emit_job(event, view, row, listeners=listeners)
            finally:
                lock.acquire()
            self.ending.pop(job.id, None)
            waiters = self.waiters.take_job_end(job.id, job.task.id)
        # Waiters last: without a main loop, listeners have run when a waiter wakes.
        if waiters:
            lock.release()
            try:
                release_all(waiters, job_model(row), None, self.logger)
            finally:
                lock.acquire()

    # --------------------------------------------------------------- shutdown
    def stop(self, timeout: float) -> int:
        """Stop the workers; wait up to ``timeout`` s for running jobs; return how many are stuck.

        Called from inside a job, the caller's own job is not waited for (it
        cannot end while its handler is here) and is not counted as stuck.
        """
        own = threading.get_ident()
        with self.lock:
            self.phase = STOPPING
            jobs = [
                job
                for job in self.live_jobs.values()
                if job.request_stop("cancelled: the scheduler shut down")
            ]
            self._leader_cond.notify_all()
            self._follower_cond.notify_all()
        for job in jobs:
            job.stop.set()
        self._watch_clock(False)
        self._watchdog.close()
        deadline = time.monotonic() + timeout
        # The job context tells whether this thread runs one of our jobs (see JobRunner).
        running = current_job.get()
        inside = 1 if running is not None and running.scheduler is self.runner.owner else 0
        with self.lock:
            while self.busy > inside and (remaining := deadline - time.monotonic()) > 0:
                self._drained.wait(remaining)
            stuck = self.busy - inside
            self.phase = STOPPED
            waiters = self.waiters.take_all()
            threads = list(self._threads)
        release_all(
            waiters,
            None,
            SchedulerStoppedError("the scheduler shut down before the job ended"),
            self.logger,
        )
        for thread in threads:
            if thread.ident != own:
                thread.join(max(0.0, deadline - time.monotonic()))
        return stuck
