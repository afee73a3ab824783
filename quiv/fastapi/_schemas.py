"""What the control router returns and what the live stream sends.

The response models are prefixed ``Quiv`` so they never collide with an
application's own ``Task`` or ``Job`` schemas in the OpenAPI document. The
stream messages are ``TypedDict``\\ s: they document the JSON a WebSocket
client receives and let Python clients type what they parse.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from quiv._enums import JobStatus, TaskStatus
from quiv.models import Job, Task

__all__ = [
    "HelloMessage",
    "JobEventMessage",
    "OverflowMessage",
    "ProgressMessage",
    "QuivErrorDetail",
    "QuivJob",
    "QuivJobPage",
    "QuivRunResult",
    "QuivTask",
    "StreamMessage",
    "TaskEventMessage",
]


class QuivTask(BaseModel):
    """A task as the control API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Task id: the key of every task operation.")
    task_name: str = Field(description="Display name; several tasks may share it.")
    status: TaskStatus = Field(description="active, running or paused.")
    interval_seconds: float = Field(description="Seconds between runs.")
    fixed_interval: bool = Field(description="True: cadence anchored on the time a run was due.")
    run_once: bool = Field(description="True if the task is deleted after its one run.")
    next_run_at: datetime = Field(description="When the task is next due (UTC).")
    args: list[Any] | None = Field(
        default=None, description="Positional arguments, only when the router exposes arguments."
    )
    kwargs: dict[str, Any] | None = Field(
        default=None, description="Keyword arguments, only when the router exposes arguments."
    )

    @classmethod
    def from_task(cls, task: Task, *, expose_arguments: bool = False) -> QuivTask:
        """Build from an engine ``Task``; arguments are left out unless asked for."""
        return cls(
            id=task.id,
            task_name=task.task_name,
            status=task.status,
            interval_seconds=task.interval_seconds,
            fixed_interval=task.fixed_interval,
            run_once=task.run_once,
            next_run_at=task.next_run_at,
            args=[_jsonable(value) for value in task.args] if expose_arguments else None,
            kwargs={k: _jsonable(v) for k, v in task.kwargs.items()} if expose_arguments else None,
        )


class QuivJob(BaseModel):
    """One run of a task."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Job id, also passed to the handler as _job_id.")
    task_id: str = Field(description="Id of the task this job ran.")
    task_name: str = Field(description="Name of the task when the job started.")
    status: JobStatus = Field(description="scheduled, running, completed, cancelled or failed.")
    started_at: datetime = Field(description="When the job was handed to a worker (UTC).")
    ended_at: datetime | None = Field(default=None, description="When the job ended (UTC).")
    duration_seconds: float | None = Field(default=None, description="Run time, once ended.")
    error_message: str | None = Field(default=None, description="Why the job failed or was cancelled.")

    @classmethod
    def from_job(cls, job: Job) -> QuivJob:
        """Build from an engine ``Job``."""
        return cls(
            id=job.id,
            task_id=job.task_id,
            task_name=job.task_name,
            status=job.status,
            started_at=job.started_at,
            ended_at=job.ended_at,
            duration_seconds=job.duration_seconds,
            error_message=job.error_message,
        )


class QuivJobPage(BaseModel):
    """One page of jobs, newest first."""

    items: list[QuivJob] = Field(description="The jobs of this page, newest first.")
    total: int = Field(description="How many jobs match the filters, over all pages.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many matching jobs come before this page.")


class QuivRunResult(BaseModel):
    """The answer to "run now"."""

    task_id: str = Field(description="The task asked to run.")
    queued: int = Field(description="How many runs were queued (1).")


class QuivErrorDetail(BaseModel):
    """The body of every error answer (404, 409, 503)."""

    detail: str = Field(description="What went wrong, in a sentence.")


# ------------------------------------------------------------------ stream
class HelloMessage(TypedDict):
    """First message on every connection: the client is now subscribed."""

    event: Literal["hello"]
    at: str
    queue_size: int


class TaskEventMessage(TypedDict):
    """A ``task_*`` lifecycle event."""

    event: Literal["task_added", "task_removed", "task_paused", "task_resumed"]
    at: str
    task_id: str
    task_name: str
    status: str
    next_run_at: str


class JobEventMessage(TypedDict):
    """A ``job_*`` lifecycle event."""

    event: Literal["job_started", "job_completed", "job_failed", "job_cancelled"]
    at: str
    task_id: str
    task_name: str
    job_id: str
    status: str
    started_at: str
    ended_at: str | None
    duration_seconds: float | None
    error: str | None


class ProgressMessage(TypedDict):
    """What a handler passed to ``_progress_hook``: ``args`` and ``payload`` (its keyword arguments)."""

    event: Literal["progress"]
    at: str
    task_id: str
    task_name: str
    job_id: str
    args: list[Any]
    payload: dict[str, Any]


class OverflowMessage(TypedDict):
    """This client was too slow: ``dropped`` older messages were discarded just before this one."""

    event: Literal["overflow"]
    at: str
    dropped: int


StreamMessage = HelloMessage | TaskEventMessage | JobEventMessage | ProgressMessage | OverflowMessage
"""Any message of the live stream; ``event`` tells which."""


def _jsonable(value: object) -> Any:
    """``value`` if JSON can carry it as is (recursively), else its ``repr``."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return repr(value)
