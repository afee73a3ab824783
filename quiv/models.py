"""Public models returned by the scheduler and passed to listeners.

Both are plain (non-table) SQLModel classes, so FastAPI can return them from
an endpoint as they are. Every datetime is timezone-aware UTC; a naive value
given when building a model by hand is read as UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import field_validator
from sqlmodel import Field, SQLModel

from quiv._enums import JobStatus, TaskStatus
from quiv._schedule.options import COLUMN_DOCS

__all__ = ["Job", "SchedulerStats", "Task", "trusted"]

_M = TypeVar("_M", bound=SQLModel)


def trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build ``cls`` from ``values`` that hold every field, already valid (quiv's own snapshots).

    What ``model_construct`` does for a complete set of values, without its
    per-field default and alias handling: the snapshots of every event go
    through here. ``tests/core`` checks it against ``model_construct``.
    """
    model: _M = object.__new__(cls)  # what SQLModel.__new__ adds is set just below
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class Task(SQLModel):
    """A scheduling definition: what runs, with which arguments, and when next.

    The option fields and their descriptions come from the option schema
    (``quiv._schedule.options``); a test keeps the two in step.
    """

    id: str = Field(description="Task id (UUID); the key for every task operation.")
    task_name: str = Field(description="Display name; several tasks may share it.")
    args: tuple[Any, ...] = Field(default=(), description=COLUMN_DOCS["args"])
    kwargs: dict[str, Any] = Field(default_factory=dict, description=COLUMN_DOCS["kwargs"])
    interval_seconds: float | None = Field(
        description=COLUMN_DOCS["interval_seconds"] + " None for cron and one-shot tasks."
    )
    fixed_interval: bool = Field(default=True, description=COLUMN_DOCS["fixed_interval"])
    run_once: bool = Field(default=False, description=COLUMN_DOCS["run_once"])
    status: TaskStatus = Field(description="active, running or paused.")
    next_run_at: datetime = Field(description="When the task is next due (UTC).")
    cron: str | None = Field(default=None, description=COLUMN_DOCS["cron"])
    cron_timezone: str | None = Field(default=None, description=COLUMN_DOCS["cron_timezone"])
    max_retries: int = Field(default=0, description=COLUMN_DOCS["max_retries"])
    retry_backoff: float = Field(default=1.0, description=COLUMN_DOCS["retry_backoff"])
    timeout: float | None = Field(default=None, description=COLUMN_DOCS["timeout"])
    jitter: float = Field(default=0.0, description=COLUMN_DOCS["jitter"])
    misfire: str = Field(default="skip", description=COLUMN_DOCS["misfire"])
    misfire_grace: float | None = Field(default=None, description=COLUMN_DOCS["misfire_grace"])
    declared: bool | None = Field(
        default=None,
        description="With a database_url: whether a running process declares this task (a task no "
        "process declares is kept, but nothing runs it). None in the default mode.",
    )

    @field_validator("next_run_at", mode="after")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        result = _as_utc(value)
        assert result is not None
        return result


class Job(SQLModel):
    """One execution of a task."""

    id: str = Field(description="Job id (UUID); also passed to the handler as _job_id.")
    task_id: str = Field(description="Id of the task this job ran.")
    task_name: str = Field(description="Name of the task when the job started.")
    status: JobStatus = Field(
        description="scheduled, running, completed, cancelled, failed, abandoned (its process died) "
        "or missed (a slot no job ran)."
    )
    started_at: datetime = Field(description="When the job was created and handed to a worker (UTC).")
    ended_at: datetime | None = Field(default=None, description="When the job ended (UTC), if it has.")
    duration_seconds: float | None = Field(default=None, description="Run time in seconds, once ended.")
    error_message: str | None = Field(default=None, description="Why the job failed or was cancelled.")
    attempt: int = Field(default=1, description="1 for a first run, 2 for its first retry, and so on.")
    retry_of: str | None = Field(default=None, description="For a retry: the id of the first attempt's job.")
    scheduled_for: datetime | None = Field(
        default=None, description="The slot of the schedule this job ran for (UTC); unique per task."
    )
    worker: str | None = Field(
        default=None, description="Id of the process that ran the job (durable and shared modes), else None."
    )

    @field_validator("started_at", "ended_at", "scheduled_for", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)


class SchedulerStats(SQLModel):
    """Counts for a dashboard, from :meth:`quiv.Quiv.stats`."""

    tasks_by_status: dict[str, int] = Field(description="Number of tasks per task status.")
    jobs_by_status: dict[str, int] = Field(description="Jobs kept in the history, per job status.")
    running_jobs: int = Field(description="Jobs running right now.")
    pool_size: int = Field(description="Maximum number of jobs that run at once.")
    free_workers: int = Field(description="How many more jobs could start right now.")
    oldest_running_job_id: str | None = Field(default=None, description="The job running the longest.")
    oldest_running_job_started_at: datetime | None = Field(default=None, description="When it started (UTC).")
    completed_in_window: int = Field(description="Jobs completed within the retention window.")
    failed_in_window: int = Field(description="Jobs failed within the retention window.")
    retention_seconds: float = Field(description="How long finished jobs are kept.")
    last_wake_at: datetime | None = Field(
        default=None, description="When a worker last woke up to look at the schedule (UTC); None before any."
    )
    last_job_started_at: datetime | None = Field(
        default=None, description="When a job last started (UTC): a frozen scheduler shows an old time here."
    )
