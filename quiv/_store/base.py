"""The store interface and the row snapshots that cross it.

The engine keeps live state in memory and hands the store snapshots of what
changed, in batches: one transaction per batch. Times are epoch seconds.
A shared backend (several processes on one PostgreSQL database) would add
a claim step to this interface; nothing in the engine assumes SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

__all__ = ["JobRow", "Store", "TaskRow"]


class TaskRow(NamedTuple):
    id: str
    task_name: str
    args: bytes
    kwargs: bytes
    interval_seconds: float | None
    fixed_interval: bool
    run_once: bool
    status: str
    next_run_at: float
    created_at: float
    cron: str | None
    cron_timezone: str | None
    max_retries: int
    retry_backoff: float
    timeout: float | None
    jitter: float
    misfire: str
    misfire_grace: float | None


class JobRow(NamedTuple):
    id: str
    task_id: str
    task_name: str
    status: str
    started_at: float
    ended_at: float | None
    duration_seconds: float | None
    error_message: str | None
    attempt: int
    retry_of: str | None


class Store(Protocol):
    """Where task and job state is persisted."""

    def write(self, tasks: Sequence[TaskRow], deleted_tasks: Iterable[str], jobs: Sequence[JobRow]) -> None:
        """Upsert ``tasks`` and ``jobs`` and delete ``deleted_tasks``, in one transaction."""
        ...

    def get_job(self, job_id: str) -> JobRow | None: ...

    def list_jobs(self, status: str | None) -> list[JobRow]:
        """Jobs oldest first, optionally only those with ``status``."""
        ...

    def count_jobs(self) -> dict[str, int]:
        """Number of stored jobs per status."""
        ...

    def purge_jobs(self, ended_before: float) -> float | None:
        """Delete finished jobs that ended before ``ended_before``; return the oldest remaining end time."""
        ...

    def close(self) -> None:
        """Release every resource and delete what the store created."""
        ...
