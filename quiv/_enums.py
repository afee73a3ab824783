"""Enumerations shared by the engine, the models and the listeners."""

from __future__ import annotations

from enum import Enum

__all__ = ["JOB_EVENTS", "TERMINAL_JOB_STATUSES", "Event", "JobStatus", "TaskStatus"]


class Event(str, Enum):
    """Lifecycle events a listener can subscribe to."""

    TASK_ADDED = "task_added"
    TASK_REMOVED = "task_removed"
    TASK_PAUSED = "task_paused"
    TASK_RESUMED = "task_resumed"
    TASK_UPDATED = "task_updated"
    JOB_STARTED = "job_started"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    JOB_MISSED = "job_missed"

    def __str__(self) -> str:
        return self.value

    @property
    def is_job_event(self) -> bool:
        """True for the ``JOB_*`` group, whose listeners also receive the job."""
        return self in JOB_EVENTS


class TaskStatus(str, Enum):
    """Where a task stands in its schedule."""

    ACTIVE = "active"
    RUNNING = "running"
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value


class JobStatus(str, Enum):
    """Where one execution of a task stands."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    #: The process running the job stopped heartbeating (durable and shared modes).
    ABANDONED = "abandoned"
    #: A slot of the schedule that no job ran (downtime, or the previous run was still going).
    MISSED = "missed"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True once the job has ended and will not change again."""
        return self in TERMINAL_JOB_STATUSES


JOB_EVENTS = frozenset(
    {Event.JOB_STARTED, Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED, Event.JOB_MISSED}
)
TERMINAL_JOB_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.ABANDONED, JobStatus.MISSED}
)
