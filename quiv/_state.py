"""In-memory records of tasks and jobs: the engine's source of truth while they live."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from quiv._enums import JobStatus, TaskStatus
from quiv._handlers import InjectionPlan
from quiv._stop import StopEvent
from quiv._store import JobRow, TaskRow
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
    args_blob: bytes
    kwargs_blob: bytes
    interval: float
    fixed_interval: bool
    run_once: bool
    status: TaskStatus
    next_run: float
    created: float
    progress_callback: Callable[..., Any] | None
    progress_is_async: bool
    #: Bumped whenever the schedule changes; heap entries with an older version are stale.
    version: int = 0
    running: JobState | None = None
    #: A run asked for (run now / resume) while a job was running: start it when that job ends.
    requested: float | None = None
    requested_forced: bool = False
    removed: bool = False
    started_once: bool = False
    #: Called (outside the lock) with the next job of this task that ends; see Quiv.wait_for_task.
    job_waiters: list[Callable[[JobState], None]] | None = None

    def row(self) -> TaskRow:
        return TaskRow(
            self.id,
            self.name,
            self.args_blob,
            self.kwargs_blob,
            self.interval,
            self.fixed_interval,
            self.run_once,
            self.status.value,
            self.next_run,
            self.created,
        )

    def model(self) -> Task:
        """A public snapshot. Call with the scheduler lock held; unpickles the arguments."""
        return Task.model_construct(
            id=self.id,
            task_name=self.name,
            args=pickle.loads(self.args_blob),
            kwargs=pickle.loads(self.kwargs_blob),
            interval_seconds=self.interval,
            fixed_interval=self.fixed_interval,
            run_once=self.run_once,
            status=self.status,
            next_run_at=utc(self.next_run),
        )


@dataclass(eq=False, slots=True)
class JobState:
    id: str
    task: TaskState
    task_name: str
    due: float
    started: float
    forced: bool = False
    status: JobStatus = JobStatus.SCHEDULED
    ended: float | None = None
    error: str | None = None
    stop: StopEvent = field(default_factory=StopEvent)
    cancel_reason: str | None = None
    #: Called (outside the lock) with the job when it ends; see Quiv.wait_for_job.
    waiters: list[Callable[[JobState], None]] | None = None

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
        )

    def model(self) -> Job:
        return job_model(self.row())


def job_model(row: JobRow) -> Job:
    """Build the public model from a stored row."""
    return Job.model_construct(
        id=row.id,
        task_id=row.task_id,
        task_name=row.task_name,
        status=JobStatus(row.status),
        started_at=utc(row.started_at),
        ended_at=None if row.ended_at is None else utc(row.ended_at),
        duration_seconds=row.duration_seconds,
        error_message=row.error_message,
    )
