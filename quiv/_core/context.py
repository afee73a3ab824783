"""Context variables the engine sets while a job runs (sync and async handlers alike)."""

from __future__ import annotations

import threading
from contextvars import ContextVar

__all__ = [
    "current_job_id",
    "current_scheduler",
    "current_stop_event",
    "current_task",
    "get_current_job_id",
    "get_current_task_id",
    "get_current_task_name",
]

current_job_id: ContextVar[str | None] = ContextVar("quiv_current_job_id", default=None)
"""Id of the job running in this context, else None."""

current_task: ContextVar[tuple[str, str] | None] = ContextVar("quiv_current_task", default=None)
"""``(task_id, task_name)`` of the job running in this context, else None."""

current_stop_event: ContextVar[threading.Event | None] = ContextVar("quiv_current_stop_event", default=None)
"""The stop event of the job running in this context, else None."""

current_scheduler: ContextVar[object | None] = ContextVar("quiv_current_scheduler", default=None)


def get_current_job_id() -> str | None:
    """The id of the quiv job running the calling code, or None outside a job."""
    return current_job_id.get()


def get_current_task_id() -> str | None:
    """The id of the task whose job runs the calling code, or None outside a job."""
    task = current_task.get()
    return None if task is None else task[0]


def get_current_task_name() -> str | None:
    """The name of the task whose job runs the calling code, or None outside a job."""
    task = current_task.get()
    return None if task is None else task[1]
