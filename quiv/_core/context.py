"""The context variable the engine sets while a job runs (sync and async handlers alike).

One variable holds everything about the running job, so starting a job sets
one context variable, not one per fact.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import NamedTuple

__all__ = [
    "JobContext",
    "current_job",
    "get_current_job_id",
    "get_current_stop_event",
    "get_current_task_id",
    "get_current_task_name",
]


class JobContext(NamedTuple):
    """The job running in this context."""

    job_id: str
    task_id: str
    task_name: str
    stop_event: threading.Event
    #: The scheduler running the job (a ``Quiv``; typed loosely to avoid an import cycle).
    scheduler: object


current_job: ContextVar[JobContext | None] = ContextVar("quiv_current_job", default=None)
"""The job running in this context, else None."""


def get_current_job_id() -> str | None:
    """The id of the quiv job running the calling code, or None outside a job."""
    job = current_job.get()
    return None if job is None else job.job_id


def get_current_task_id() -> str | None:
    """The id of the task whose job runs the calling code, or None outside a job."""
    job = current_job.get()
    return None if job is None else job.task_id


def get_current_task_name() -> str | None:
    """The name of the task whose job runs the calling code, or None outside a job."""
    job = current_job.get()
    return None if job is None else job.task_name


def get_current_stop_event() -> threading.Event | None:
    """The stop event of the job running the calling code, or None outside a job."""
    job = current_job.get()
    return None if job is None else job.stop_event
