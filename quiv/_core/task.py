"""In-memory records of tasks and jobs: the engine's source of truth while they live."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from quiv._core.handlers import InjectionPlan
from quiv._core.stop import StopEvent
from quiv._enums import JobStatus, TaskStatus
from quiv._schedule.options import TaskSettings
from quiv._store.base import JobRow, TaskRow

if TYPE_CHECKING:
    from quiv.models import Job, Task

__all__ = ["JobState", "TaskState", "utc"]


def utc(ts: float) -> datetime:
    """Epoch seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ts, timezone.utc)


@dataclass(eq=False, slots=True)
class TaskState:
    id: str
    name: str
    func: Callable[..., Any]
    plan: InjectionPlan
    settings: TaskSettings
    status: TaskStatus
    next_run: float
    created: float
    progress_is_async: bool
    #: Bumped whenever the schedule changes; heap entries with an older version are stale.
    version: int = 0
    running: JobState | None = None
    #: A run asked for (run now / resume) while a job was running: start it when that job ends.
    requested: float | None = None
    requested_forced: bool = False
    #: When run_task_immediately() asked for a run that has not started yet (survives pause).
    manual_due: float | None = None
    removed: bool = False
    started_once: bool = False
    #: The next attempt of a failed job: (attempt number, id of the first attempt).
    retry: tuple[int, str] | None = None
    #: When the current cycle's first attempt was due (the cadence anchor across retries).
    cycle_due: float | None = None
    #: The scheduled run's place in the schedule before jitter.
    nominal: float = 0.0
    #: Called (outside the lock) with the next job of this task that ends; see Quiv.wait_for_task.
    job_waiters: list[Callable[[JobState], None]] | None = None

    @property
    def run_once(self) -> bool:
        return self.settings.once

    @property
    def progress_callback(self) -> Callable[..., Any] | None:
        return self.settings.progress_callback

    def row(self) -> TaskRow:
        s = self.settings
        return TaskRow(
            self.id,
            self.name,
            s.args_blob,
            s.kwargs_blob,
            s.interval,
            s.fixed_interval,
            s.once,
            self.status.value,
            self.next_run,
            self.created,
            None if s.cron is None else s.cron.expression,
            s.cron_timezone,
            s.max_retries,
            s.retry_backoff,
            s.timeout,
            s.jitter,
            s.misfire.value,
            s.misfire_grace,
        )

    def model(self) -> Task:
        """A public snapshot. Call with the scheduler lock held; unpickles the arguments."""
        from quiv.models import Task  # imported on first use: keeps `import quiv` light

        s = self.settings
        try:
            args, kwargs = pickle.loads(s.args_blob), pickle.loads(s.kwargs_blob)
        except Exception:
            # Arguments that no longer unpickle fail their jobs (with a message saying
            # so); a snapshot of the task must still be possible, so show none.
            args, kwargs = (), {}
        return Task.model_construct(
            id=self.id,
            task_name=self.name,
            args=args,
            kwargs=kwargs,
            interval_seconds=s.interval,
            fixed_interval=s.fixed_interval,
            run_once=s.once,
            status=self.status,
            next_run_at=utc(self.next_run),
            cron=None if s.cron is None else s.cron.expression,
            cron_timezone=s.cron_timezone,
            max_retries=s.max_retries,
            retry_backoff=s.retry_backoff,
            timeout=s.timeout,
            jitter=s.jitter,
            misfire=s.misfire.value,
            misfire_grace=s.misfire_grace,
        )


@dataclass(eq=False, slots=True)
class JobState:
    id: str
    task: TaskState
    task_name: str
    due: float
    started: float
    #: When the first attempt of this run was due, before jitter: where the cadence continues from.
    cycle_due: float = 0.0
    forced: bool = False
    status: JobStatus = JobStatus.SCHEDULED
    ended: float | None = None
    error: str | None = None
    attempt: int = 1
    retry_of: str | None = None
    stop: StopEvent = field(default_factory=StopEvent)
    cancel_reason: str | None = None
    #: Called (outside the lock) with the job when it ends; see Quiv.wait_for_job.
    waiters: list[Callable[[JobState], None]] | None = None

    def request_stop(self, reason: str) -> bool:
        """Set the stop event with ``reason`` (call with the scheduler lock held); False if already set."""
        if self.stop.is_set():
            return False
        self.cancel_reason = reason
        self.stop.set()
        return True

    def row(self) -> JobRow:
        ended = self.ended
        return JobRow(
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
        )

    def model(self) -> Job:
        return job_model(self.row())


def job_model(row: JobRow) -> Job:
    """Build the public model from a stored row."""
    from quiv.models import Job

    return Job.model_construct(
        id=row.id,
        task_id=row.task_id,
        task_name=row.task_name,
        status=JobStatus(row.status),
        started_at=utc(row.started_at),
        ended_at=None if row.ended_at is None else utc(row.ended_at),
        duration_seconds=row.duration_seconds,
        error_message=row.error_message,
        attempt=row.attempt,
        retry_of=row.retry_of,
    )
