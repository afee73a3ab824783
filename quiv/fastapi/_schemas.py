"""What the control router returns and what the live stream sends.

The response models are prefixed ``Quiv`` so they never collide with an
application's own ``Task`` or ``Job`` schemas in the OpenAPI document. The
stream messages are ``TypedDict``\\ s: they document the JSON a WebSocket
client receives and let Python clients type what they parse.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from typing_extensions import TypedDict

from quiv._delivery.jsonable import jsonable as _jsonable
from quiv._enums import Event, JobStatus
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
    "QuivStats",
    "QuivTask",
    "StreamMessage",
    "TaskEventMessage",
]


class _TaskSchema(BaseModel):
    """What every ``QuivTask`` is; its fields are copied from the public ``Task``."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_task(cls, task: Task, *, expose_arguments: bool = False) -> QuivTask:
        """Build from an engine ``Task``; arguments are left out unless asked for."""
        fields = task.model_dump(exclude={"args", "kwargs"})
        if expose_arguments:
            fields["args"] = [_jsonable(value) for value in task.args]
            fields["kwargs"] = {key: _jsonable(value) for key, value in task.kwargs.items()}
        return QuivTask.model_validate(fields)


def _task_schema() -> type[_TaskSchema]:
    """``QuivTask``: the fields of ``Task`` (so of the option schema), arguments made optional."""
    fields: dict[str, Any] = {}
    for name, info in Task.model_fields.items():
        if name == "args":
            fields[name] = (
                list[Any] | None,
                Field(default=None, description=_ARGUMENTS.format(info.description)),
            )
        elif name == "kwargs":
            fields[name] = (
                dict[str, Any] | None,
                Field(default=None, description=_ARGUMENTS.format(info.description)),
            )
        else:
            fields[name] = (info.annotation, info)
    return create_model(
        "QuivTask", __base__=_TaskSchema, __doc__="A task as the control API shows it.", **fields
    )


_ARGUMENTS = "{} Only when the router exposes arguments."

if TYPE_CHECKING:

    class QuivTask(_TaskSchema):
        """A task as the control API shows it."""

else:
    QuivTask = _task_schema()
    QuivTask.__module__ = __name__


class QuivJob(BaseModel):
    """One run of a task."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Job id, also passed to the handler as _job_id.")
    task_id: str = Field(description="Id of the task this job ran.")
    task_name: str = Field(description="Name of the task when the job started.")
    status: JobStatus = Field(
        description="scheduled, running, completed, cancelled, failed, abandoned or missed."
    )
    started_at: datetime = Field(description="When the job was handed to a worker (UTC).")
    ended_at: datetime | None = Field(default=None, description="When the job ended (UTC).")
    duration_seconds: float | None = Field(default=None, description="Run time, once ended.")
    error_message: str | None = Field(default=None, description="Why the job failed or was cancelled.")
    attempt: int = Field(default=1, description="1 for a first run, 2 for its first retry, and so on.")
    retry_of: str | None = Field(default=None, description="For a retry: the id of the first attempt's job.")
    scheduled_for: datetime | None = Field(
        default=None, description="The slot of the schedule this job ran for (UTC)."
    )
    worker: str | None = Field(
        default=None, description="Id of the process that ran it (with a database_url), else null."
    )

    @classmethod
    def from_job(cls, job: Job) -> QuivJob:
        """Build from an engine ``Job``."""
        return cls.model_validate(job.model_dump())


class QuivJobPage(BaseModel):
    """One page of jobs, newest first."""

    items: list[QuivJob] = Field(description="The jobs of this page, newest first.")
    total: int = Field(description="How many jobs match the filters, over all pages.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many matching jobs come before this page.")


class QuivStats(BaseModel):
    """Counts for a dashboard."""

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


TaskEventName = Literal["task_added", "task_removed", "task_paused", "task_resumed", "task_updated"]
JobEventName = Literal["job_started", "job_completed", "job_failed", "job_cancelled", "job_missed"]
#: The wire name of each event (mypy checks each one against the message's Literal).
TASK_EVENT_NAMES: dict[Event, TaskEventName] = {
    Event.TASK_ADDED: "task_added",
    Event.TASK_REMOVED: "task_removed",
    Event.TASK_PAUSED: "task_paused",
    Event.TASK_RESUMED: "task_resumed",
    Event.TASK_UPDATED: "task_updated",
}
JOB_EVENT_NAMES: dict[Event, JobEventName] = {
    Event.JOB_STARTED: "job_started",
    Event.JOB_COMPLETED: "job_completed",
    Event.JOB_FAILED: "job_failed",
    Event.JOB_CANCELLED: "job_cancelled",
    Event.JOB_MISSED: "job_missed",
}


class TaskEventMessage(TypedDict):
    """A ``task_*`` lifecycle event."""

    event: TaskEventName
    at: str
    task_id: str
    task_name: str
    status: str
    next_run_at: str


class JobEventMessage(TypedDict):
    """A ``job_*`` lifecycle event."""

    event: JobEventName
    at: str
    task_id: str
    task_name: str
    job_id: str
    status: str
    started_at: str
    ended_at: str | None
    duration_seconds: float | None
    error: str | None
    attempt: int
    scheduled_for: str | None
    worker: str | None


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
