"""Public models returned by the scheduler and passed to listeners.

Both are plain (non-table) SQLModel classes, so FastAPI can return them from
an endpoint as they are. Every datetime is timezone-aware UTC; a naive value
given when building a model by hand is read as UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import field_validator
from sqlmodel import Field, SQLModel

from quiv._enums import JobStatus, TaskStatus

__all__ = ["Job", "SchedulerStats", "Task"]


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class Task(SQLModel):
    """A scheduling definition: what runs, with which arguments, and when next."""

    id: str = Field(description="Task id (UUID); the key for every task operation.")
    task_name: str = Field(description="Display name; several tasks may share it.")
    args: tuple[Any, ...] = Field(default=(), description="Positional arguments for the handler.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the handler.")
    interval_seconds: float | None = Field(
        description="Seconds between runs; None for cron and one-shot tasks."
    )
    fixed_interval: bool = Field(
        default=True, description="True: cadence anchored on run start; False: interval after completion."
    )
    run_once: bool = Field(default=False, description="True if the task is removed after its one run.")
    status: TaskStatus = Field(description="active, running or paused.")
    next_run_at: datetime = Field(description="When the task is next due (UTC).")
    cron: str | None = Field(default=None, description="Cron expression, for cron tasks.")
    cron_timezone: str | None = Field(default=None, description="Timezone the cron expression is read in.")
    max_retries: int = Field(default=0, description="How many times a failed job is retried.")
    retry_backoff: float = Field(
        default=1.0, description="Wait before the first retry (s); doubles each time."
    )
    timeout: float | None = Field(default=None, description="Seconds a job may run before it is stopped.")
    jitter: float = Field(default=0.0, description="Up to this many seconds of random delay on each run.")
    misfire: str = Field(default="skip", description="Missed runs: 'skip' them or 'run_once' to catch up.")
    misfire_grace: float | None = Field(
        default=None, description="A run starting later than this many seconds after its due time is skipped."
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
    status: JobStatus = Field(description="scheduled, running, completed, cancelled or failed.")
    started_at: datetime = Field(description="When the job was created and handed to a worker (UTC).")
    ended_at: datetime | None = Field(default=None, description="When the job ended (UTC), if it has.")
    duration_seconds: float | None = Field(default=None, description="Run time in seconds, once ended.")
    error_message: str | None = Field(default=None, description="Why the job failed or was cancelled.")
    attempt: int = Field(default=1, description="1 for a first run, 2 for its first retry, and so on.")
    retry_of: str | None = Field(default=None, description="For a retry: the id of the first attempt's job.")

    @field_validator("started_at", "ended_at", mode="after")
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
