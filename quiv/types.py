"""Public type aliases for handlers and listeners.

These exist for annotations in user code; quiv checks them with mypy (and,
for injected handler parameters, at registration time).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from quiv._enums import Event

if TYPE_CHECKING:  # the models pull in SQLModel: only type checkers need them here
    from quiv.models import Job, Task

__all__ = [
    "JobEvent",
    "JobId",
    "JobListener",
    "ProgressCallback",
    "ProgressHook",
    "TaskEvent",
    "TaskId",
    "TaskListener",
]

TaskId: TypeAlias = str
"""The id returned by ``add_task`` (a UUID string)."""

JobId: TypeAlias = str
"""The id of one job (a UUID string), also injected as ``_job_id``."""


class ProgressHook(Protocol):
    """What quiv injects as ``_progress_hook``: call it with any payload."""

    def __call__(self, *args: Any, **kwargs: Any) -> None: ...


ProgressCallback: TypeAlias = Callable[..., Awaitable[None] | None]
"""A progress callback receives exactly what the handler passed to the hook."""

TaskListener: TypeAlias = "Callable[[Event, Task], Awaitable[None] | None]"
"""Listener for ``TASK_*`` events: ``(event, task)``, sync or async."""

JobListener: TypeAlias = "Callable[[Event, Task, Job], Awaitable[None] | None]"
"""Listener for ``JOB_*`` events: ``(event, task, job)``, sync or async."""

TaskEvent: TypeAlias = Literal[
    Event.TASK_ADDED, Event.TASK_REMOVED, Event.TASK_PAUSED, Event.TASK_RESUMED, Event.TASK_UPDATED
]
"""The ``TASK_*`` events, whose listeners are :data:`TaskListener`."""

JobEvent: TypeAlias = Literal[
    Event.JOB_STARTED, Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED, Event.JOB_MISSED
]
"""The ``JOB_*`` events, whose listeners are :data:`JobListener`."""
