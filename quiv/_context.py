"""Context variables the engine sets while a job runs."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current_job_id", "current_scheduler", "get_current_job_id"]

current_job_id: ContextVar[str | None] = ContextVar("quiv_current_job_id", default=None)
"""Id of the job running in this context (sync or async handler), else None."""

current_scheduler: ContextVar[object | None] = ContextVar("quiv_current_scheduler", default=None)


def get_current_job_id() -> str | None:
    """The id of the quiv job running the calling code, or None outside a job."""
    return current_job_id.get()
