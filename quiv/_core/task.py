"""The task state machine and the record of a job.

:class:`TaskState` holds a task's scheduling state and is the only code that
changes it: every transition (add, pause, resume, run now, update, a job
starting, a job ending, a late run skipped, removal) is one of its methods.
Each returns a :data:`Plan` saying what the engine must do next (put a due
time on the heap, or delete the task), so the rules live here once:

* a run asked for with "run now" survives a pause (the task stays paused);
* requests made while a job runs collapse into one run after it ends;
* a pending retry is dropped by a pause, by a new schedule and by removal;
* a task never has two jobs at once.

The engine calls these methods with the scheduler lock held; none of them
runs user code (no unpickling, no callbacks), and all are cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from quiv._core.handlers import InjectionPlan
from quiv._core.ids import new_id
from quiv._core.stop import StopEvent
from quiv._core.watchdog import Watch
from quiv._enums import JobStatus, TaskStatus
from quiv._schedule.options import TaskSettings
from quiv._schedule.policies import Misfire, late_run_decision, retry_delay
from quiv._schedule.triggers import (
    TOLERANCE,
    first_run,
    latest_point,
    next_regular_run,
    next_while_running,
    schedule_points,
)

if TYPE_CHECKING:
    from quiv.models import Job, Task

__all__ = ["Delete", "JobState", "Plan", "Schedule", "TaskState", "TaskView", "utc"]


class _Models(NamedTuple):
    Task: type[Task]
    Job: type[Job]
    trusted: Callable[[Any, dict[str, Any]], Any]


#: What snapshots build, imported by the first one (``quiv.models`` loads pydantic
#: and SQLModel: ``import quiv`` stays light until a model is needed).
_models: _Models | None = None
_JOB_STATUSES: dict[str, JobStatus] = {s.value: s for s in JobStatus}
#: Job endings a task with retries left tries again after.
_RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.ABANDONED})


def _load_models() -> _Models:
    global _models
    from quiv.models import Job, Task, trusted

    _models = _Models(Task, Job, trusted)
    return _models


def utc(ts: float) -> datetime:
    """Epoch seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ts, timezone.utc)


class Schedule(NamedTuple):
    """Put the task on the heap at ``due`` (``forced``: run even if paused)."""

    due: float
    version: int
    forced: bool


class Delete(NamedTuple):
    """The task has no further run: delete it."""


DELETE = Delete()
#: What a transition asks of the engine: nothing, a heap entry, or deletion.
Plan = Schedule | Delete | None


class TaskView(NamedTuple):
    """An immutable copy of what a public ``Task`` shows; taken under the lock, built outside it."""

    id: str
    name: str
    status: TaskStatus
    next_run: float
    settings: TaskSettings
    #: Durable modes: whether a live process declares the task (None: not known, or the default mode).
    declared: bool | None = None

    def model(self) -> Task:
        """The public snapshot. Unpickles the arguments: call without the scheduler lock."""
        models = _models or _load_models()
        values = {
            "id": self.id,
            "task_name": self.name,
            "status": self.status,
            "next_run_at": utc(self.next_run),
            **self.settings.shown_fields(),
            "declared": self.declared,
        }
        try:
            values["args"], values["kwargs"] = self.settings.arguments()
        except Exception:
            # Arguments that no longer unpickle fail their jobs (with a message saying
            # so); a snapshot of the task must still be possible, so show none.
            values["args"], values["kwargs"] = (), {}
        task: Task = models.trusted(models.Task, values)
        return task


@dataclass(eq=False, slots=True)
class TaskState:
    """One task's scheduling state. Call every method with the scheduler lock held."""

    id: str
    name: str
    func: Callable[..., Any]
    plan: InjectionPlan
    settings: TaskSettings
    created: float
    progress_is_async: bool
    status: TaskStatus = TaskStatus.ACTIVE
    #: When the task is next due (what ``Task.next_run_at`` shows).
    next_run: float = 0.0
    #: Bumped whenever the schedule changes; heap entries with an older version are stale.
    version: int = 0
    running: JobState | None = None
    #: A run asked for while a job was running (run now / resume / update): it starts when that job ends.
    requested: float | None = None
    requested_forced: bool = False
    #: When "run now" asked for a run that has not started yet (it survives a pause).
    manual_due: float | None = None
    removed: bool = False
    started_once: bool = False
    #: The next attempt of a failed job: (attempt number, id of the first attempt).
    retry: tuple[int, str] | None = None
    #: When the current cycle's first attempt was due (the cadence anchor across retries).
    cycle_due: float | None = None
    #: The scheduled run's place in the schedule before jitter.
    nominal: float = 0.0
    #: The trace context ``add_task`` was called in, as a link every job of the task carries (tracing only).
    origin: object | None = None

    # ----------------------------------------------------------------- views
    def view(self) -> TaskView:
        return TaskView(self.id, self.name, self.status, self.next_run, self.settings)

    def row(self) -> tuple[Any, ...]:
        """The store row: identity and state, then the options' columns."""
        return (self.id, self.name, self.status.value, self.next_run, self.created, *self.settings.columns())

    # ----------------------------------------------------------- transitions
    def _schedule(self, due: float, *, forced: bool = False, nominal: float | None = None) -> Schedule:
        self.version += 1
        self.next_run = due
        self.nominal = due if nominal is None else nominal
        return Schedule(due, self.version, forced)

    def _hold(self, due: float) -> None:
        """Show ``due`` as the next run without a heap entry (a job runs, or the task is paused)."""
        self.version += 1
        self.next_run = due

    def add(self, now: float) -> Plan:
        """A new task: its first run."""
        nominal, actual = first_run(self.settings, now)
        return self._schedule(actual, nominal=nominal)

    def pause(self) -> Plan:
        """Stop the schedule; an explicit "run now" still happens, a pending retry does not."""
        self.status = TaskStatus.PAUSED
        self.version += 1
        self.retry = None
        manual = self.manual_due
        if manual is None:
            self.requested, self.requested_forced = None, False
            return None
        if self.running is not None:
            self.requested, self.requested_forced = manual, True
            return None
        return self._schedule(manual, forced=True)

    def resume(self, due: float) -> Plan:
        """Re-activate the task with its next run at ``due``."""
        if self.running is not None:
            self.status = TaskStatus.RUNNING
            self.requested, self.requested_forced = due, False
            self._hold(due)
            return None
        self.status = TaskStatus.ACTIVE
        return self._schedule(due)

    def can_run_now(self) -> bool:
        """False for a run-once task whose one run has started (and is not being retried)."""
        return not (self.settings.once and self.started_once and self.retry is None)

    def run_now(self, now: float) -> Plan:
        """Run outside the schedule; a paused task runs once and stays paused."""
        forced = self.status is TaskStatus.PAUSED
        self.manual_due = now
        if self.running is not None:
            self.requested, self.requested_forced = now, forced
            return None
        return self._schedule(now, forced=forced)

    def update(self, settings: TaskSettings, now: float, *, reschedule: bool) -> Plan:
        """New options; with ``reschedule`` the new schedule starts from now."""
        self.settings = settings
        if not reschedule:
            return None
        nominal, actual = first_run(settings, now)
        self.retry = None
        if self.running is not None:
            self.requested, self.requested_forced = actual, False
            self._hold(actual)
            return None
        if self.status is TaskStatus.PAUSED:
            self.next_run = actual
            return None
        return self._schedule(actual, nominal=nominal)

    def remove(self) -> None:
        self.removed = True
        self.version += 1
        self.retry = None

    def is_due_entry(self, version: int) -> bool:
        """True if a heap entry made at ``version`` is still the task's current one."""
        return version == self.version and not self.removed

    def take(self, due: float, forced: bool, now: float) -> tuple[bool, Plan]:
        """A heap entry came due: ``(start a job?, plan)``.

        The plan is what to do instead when no job starts: a run later than
        ``misfire_grace`` allows is skipped and the next one planned.
        """
        if self.running is not None:  # defensive: never two jobs of one task
            self.requested = due
            return False, None
        if self.status is TaskStatus.PAUSED and not forced:
            return False, None
        if not forced and self.retry is None and not late_run_decision(due, now, self.settings.misfire_grace):
            planned = next_regular_run(self.settings, self.nominal, now, misfire=Misfire.SKIP)
            if planned is None:
                return False, DELETE
            nominal, actual = planned
            return False, self._schedule(actual, nominal=nominal)
        return True, None

    def catch_up(self, now: float, limit: int, window: float) -> tuple[list[float], bool, Plan]:
        """A due run found later slots of its schedule already past: ``(missed slots, start?, plan)``.

        This happens in the durable modes when every process was down, or
        claims ran late, for a while. The latest slot that has passed runs
        (``start`` is True and :attr:`next_run` is that slot) if it passed
        less than ``window`` seconds ago (claims running late), or whatever its
        age with ``misfire="run_once"``. Otherwise (``skip`` after downtime)
        none runs and the next slot still ahead is planned. Every slot not run
        is returned (the first ``limit`` of them) so it can be recorded. A
        retry, a "run now" and a run-once task are never caught up:
        ``([], True, None)`` (a late run, as usual).
        """
        settings = self.settings
        if self.retry is not None or self.manual_due is not None or settings.once:
            return [], True, None
        latest = latest_point(settings, self.nominal, now)
        if latest is None or latest <= self.nominal + TOLERANCE:
            return [], True, None  # only this slot has passed: a late run
        between = schedule_points(settings, self.nominal, self.nominal, latest - TOLERANCE, limit)
        if settings.misfire is Misfire.RUN_ONCE or now - latest <= window:
            missed = [self.nominal, *between][:limit]
            self.nominal = self.next_run = latest
            return missed, True, None
        missed = [self.nominal, *between, latest][:limit]
        planned = next_regular_run(settings, latest, now, misfire=Misfire.SKIP)
        if planned is None:
            return missed, False, DELETE
        nominal, actual = planned
        return missed, False, self._schedule(actual, nominal=nominal)

    def start_job(self, due: float, now: float) -> JobState:
        """A job of this task starts now (for the run due at ``due``)."""
        retry = self.retry
        if retry is not None:
            attempt, retry_of = retry
            self.retry = None
            cycle_due = self.cycle_due if self.cycle_due is not None else due
        else:
            attempt, retry_of = 1, None
            cycle_due = self.cycle_due = self.nominal
        job = JobState(
            id=new_id(),
            task=self,
            task_name=self.name,
            due=due,
            cycle_due=cycle_due,
            started=now,
            attempt=attempt,
            retry_of=retry_of,
        )
        self.running = job
        self.started_once = True
        self.manual_due = None
        if self.status is not TaskStatus.PAUSED:
            self.status = TaskStatus.RUNNING
        shown = next_while_running(self.settings, cycle_due)
        if shown is not None:
            self.next_run = shown
        return job

    def end_job(self, job: JobState, now: float) -> Plan:
        """The running job ended (its status is set): retry, plan the next run, or delete a run-once task."""
        self.running = None
        if self.removed:
            return None
        settings = self.settings
        retry = job.status in _RETRYABLE and not job.stop_requested() and job.attempt <= settings.max_retries
        if settings.once and not retry:
            return DELETE
        if retry:
            # Every attempt is its own job; retries keep the first attempt's place in the cadence.
            self.retry = (job.attempt + 1, job.retry_of or job.id)
            nominal = due = now + retry_delay(job.attempt, settings.retry_backoff)
        else:
            self.retry = None
            self.cycle_due = None
            planned = next_regular_run(settings, job.cycle_due, now, started=job.started)
            if planned is None:
                if self.status is TaskStatus.RUNNING:
                    self.status = TaskStatus.ACTIVE
                return None
            nominal, due = planned
        forced = False
        if self.requested is not None:
            # A run asked for while this job ran (run now / resume) replaces the plan.
            nominal = due = self.requested
            forced = self.requested_forced
            self.requested, self.requested_forced = None, False
        if self.status is TaskStatus.PAUSED and not forced:
            self.next_run = due
            return None
        if self.status is TaskStatus.RUNNING:
            self.status = TaskStatus.ACTIVE
        return self._schedule(due, forced=forced, nominal=nominal)


@dataclass(eq=False, slots=True)
class JobState:
    """One run of a task, from start to end."""

    id: str
    task: TaskState
    task_name: str
    due: float
    started: float
    #: When the first attempt of this run was due, before jitter: where the cadence continues from.
    cycle_due: float = 0.0
    status: JobStatus = JobStatus.RUNNING
    ended: float | None = None
    error: str | None = None
    attempt: int = 1
    retry_of: str | None = None
    stop: StopEvent = field(default_factory=StopEvent)
    #: Why the job was asked to stop; set under the lock before the stop event is set outside it.
    cancel_reason: str | None = None
    #: The watchdog's handle while the job has a timeout.
    watch: Watch[JobState] | None = None
    #: The process that runs it (durable and shared modes).
    worker: str | None = None

    def stop_requested(self) -> bool:
        return self.cancel_reason is not None

    def request_stop(self, reason: str) -> bool:
        """Mark the job as asked to stop (lock held); False if it already was.

        The caller sets :attr:`stop` once it has released the lock: setting it
        runs the callbacks subscribed to it, which are user code.
        """
        if self.cancel_reason is not None:
            return False
        self.cancel_reason = reason
        return True

    def row(self) -> tuple[Any, ...]:
        ended = self.ended
        return (
            self.id,
            self.task.id,
            self.task_name,
            self.status.value,
            self.started,
            ended,
            None if ended is None else max(0.0, ended - self.started),
            self.error,
            self.attempt,
            self.retry_of,
            self.slot,
            self.worker,
        )

    @property
    def slot(self) -> float:
        """The slot of the schedule this job runs for (``scheduled_for``, unique per task).

        A first attempt runs for its cycle's slot, before jitter: a late or
        caught-up run stands for that slot, not for the moment it was started.
        A retry has its own moment, when it came due.
        """
        return self.due if self.retry_of is not None else self.cycle_due

    def model(self) -> Job:
        return job_model(self.row())


def job_model(row: tuple[Any, ...]) -> Job:
    """Build the public model from a job row (see :meth:`JobState.row`)."""
    models = _models or _load_models()
    job_id, task_id, task_name, status, started, ended, duration, error, attempt, retry_of, due, worker = row
    job: Job = models.trusted(
        models.Job,
        {
            "id": job_id,
            "task_id": task_id,
            "task_name": task_name,
            "status": _JOB_STATUSES[status],
            "started_at": utc(started),
            "ended_at": None if ended is None else utc(ended),
            "duration_seconds": duration,
            "error_message": error,
            "attempt": attempt,
            "retry_of": retry_of,
            "scheduled_for": None if due is None else utc(due),
            "worker": worker,
        },
    )
    return job
