"""The store interface and the row snapshots that cross it.

The engine keeps live state in memory and hands the store snapshots of what
changed, in batches: one transaction per batch. Times are epoch seconds.
The durable and shared modes (``quiv._durable``) write through instead and
claim runs; they share only the read side, :class:`JobReader`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

__all__ = ["TASK_IDENTITY", "JobQuery", "JobReader", "JobRow", "Store", "TaskRow"]


#: A task row: :data:`TASK_IDENTITY` then the options' columns (``quiv._schedule.options.COLUMNS``).
TaskRow = tuple[Any, ...]
#: The leading columns of a task row, before the options'.
TASK_IDENTITY = ("id", "task_name", "status", "next_run_at", "created_at")


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
    #: The slot of the schedule the job ran for (epoch seconds).
    scheduled_for: float | None = None
    #: The worker (process) that ran it: durable and shared modes only.
    worker: str | None = None


@dataclass(frozen=True)
class JobQuery:
    """Which stored jobs to read: filters, order and one page of the result.

    Jobs are ordered by ``started_at`` then ``id``, ascending, or descending
    when ``newest_first``; the order is total, so pages never overlap or skip.
    ``limit=None`` reads every matching job after the first ``offset``.
    Callers validate the values (``limit`` and ``offset`` are ints >= 0);
    counting ignores the order and the page.
    """

    task_id: str | None = None
    status: str | None = None
    newest_first: bool = False
    limit: int | None = None
    offset: int = 0


class JobReader(Protocol):
    """What reads of the job history need: every store has it, the durable one too."""

    def get_job(self, job_id: str) -> JobRow | None: ...

    def list_jobs(self, query: JobQuery) -> list[JobRow]:
        """The page of jobs that ``query`` selects, in its order.

        A backend filters, orders and cuts the page itself (through an index
        in this order), so the cost follows ``offset + limit``, not the history.
        """
        ...

    def count_matching(self, query: JobQuery) -> int:
        """How many jobs pass the filters of ``query`` (its order and page are ignored)."""
        ...

    def count_jobs(self) -> dict[str, int]:
        """Number of stored jobs per status (statuses without jobs are left out)."""
        ...


class Store(JobReader, Protocol):
    """Where the default mode persists task and job state, written in batches by the writer."""

    def write(
        self, tasks: Sequence[TaskRow], deleted_tasks: Iterable[str], jobs: Sequence[tuple[Any, ...]]
    ) -> None:
        """Upsert ``tasks`` and ``jobs`` and delete ``deleted_tasks``, in one transaction."""
        ...

    def purge_jobs(self, ended_before: float) -> float | None:
        """Delete finished jobs that ended before ``ended_before``; return the oldest remaining end time."""
        ...

    def close(self) -> None:
        """Release every resource and delete what the store created."""
        ...
