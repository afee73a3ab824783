"""The one seam metrics and traces plug into: what a scheduler tells about its jobs.

A scheduler holds no :class:`Instruments` until :mod:`quiv.metrics` or
:mod:`quiv.tracing` asks for one; until then every call site is a single
``is None`` test and nothing else happens per job. Once attached:

* the :class:`~quiv._core.runner.JobRunner` calls :meth:`Instruments.start`
  just before a handler runs (on the job's thread, so a span made current
  there is the parent of whatever the handler traces) and
  :meth:`Instruments.end` right after, with the job's outcome;
* the engine (a run skipped by ``misfire_grace``) and the durable
  coordinator (``missed`` slots, ``abandoned`` runs) call
  :meth:`Instruments.skipped`;
* ``add_task`` and ``run_task_immediately`` ask :meth:`Instruments.capture`
  for the caller's trace context, which the tracer turns into a span link.

This module imports neither ``prometheus_client`` nor OpenTelemetry:
:class:`JobMetrics` only counts, in plain Python, and the Prometheus
collector reads it at scrape time. A tracer is anything with the methods of
:class:`JobTracer`; :mod:`quiv.tracing` provides the OpenTelemetry one.

Nothing here may break a job: a failure inside an instrument is logged and
the job goes on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from quiv._enums import JobStatus

if TYPE_CHECKING:
    from quiv._core.task import JobState

__all__ = [
    "COUNTED_STATUSES",
    "DEFAULT_DELAY_BUCKETS",
    "DEFAULT_DURATION_BUCKETS",
    "HistogramCounts",
    "Instruments",
    "JobMetrics",
    "JobTracer",
    "TaskCounts",
]

#: Upper bounds (seconds) of the job duration histogram: from 5 ms to an hour.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
#: Upper bounds (seconds) of the start delay histogram: from 1 ms to 5 minutes.
DEFAULT_DELAY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
#: The final statuses a job is counted under, in the order they are shown.
COUNTED_STATUSES: tuple[str, ...] = tuple(
    s.value
    for s in (
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.ABANDONED,
        JobStatus.MISSED,
    )
)


class JobTracer(Protocol):
    """What :class:`Instruments` needs of a tracer (see :mod:`quiv.tracing`)."""

    def capture(self, reason: str) -> object | None:
        """The caller's trace context as a link for a future job, or None when there is none."""

    def expect(self, task_id: str, due: float, link: object) -> None:
        """Attach ``link`` to the job of ``task_id`` that will run for the run due at ``due``."""

    def incoming(self, headers: Mapping[str, str]) -> contextlib.AbstractContextManager[None]:
        """Make the trace context carried by request ``headers`` current, unless a span already is."""

    def start(self, job: JobState) -> object:
        """A job starts on this thread: open its span and make it current; return a handle for ``end``."""

    def end(
        self,
        handle: object,
        job: JobState,
        status: JobStatus,
        error: str | None,
        exc: BaseException | None,
    ) -> None:
        """The job ended with ``status``: close what :meth:`start` opened."""


class _Histogram:
    """Bucket counts (one more than the bounds, for +Inf) and the sum of what was observed."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # The first bound >= value: Prometheus buckets are "less than or equal".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def copy(self) -> HistogramCounts:
        return HistogramCounts(self.bounds, tuple(self.counts), self.total)


class HistogramCounts(NamedTuple):
    """A histogram as read at one moment: bounds, per-bucket counts (last: above every bound), sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float


class TaskCounts(NamedTuple):
    """Everything counted for one task name, as read at one moment."""

    jobs: dict[str, int]
    retries: int
    duration: HistogramCounts
    lateness: HistogramCounts


class _Task:
    __slots__ = ("duration", "jobs", "lateness", "retries")

    def __init__(self, duration: tuple[float, ...], lateness: tuple[float, ...]) -> None:
        #: Keyed by the status itself (hashing a member is cheaper than reading its value).
        self.jobs: dict[JobStatus, int] = {}
        self.retries = 0
        self.duration = _Histogram(duration)
        self.lateness = _Histogram(lateness)


def _bounds(name: str, values: Sequence[float]) -> tuple[float, ...]:
    from quiv._exceptions import ConfigurationError

    try:
        bounds = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if not bounds or any(b != b or b <= 0 or b == float("inf") for b in bounds):
        raise ConfigurationError(f"{name} must be finite numbers > 0, got {values!r}")
    if list(bounds) != sorted(set(bounds)):
        raise ConfigurationError(f"{name} must be strictly increasing, got {values!r}")
    return bounds


class JobMetrics:
    """Per-task job counts and histograms, kept in plain Python and read at scrape time.

    Every update takes one small lock of its own (never the scheduler's) for a
    few additions; :meth:`read` copies everything under it.
    """

    def __init__(
        self,
        duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
        delay_buckets: Sequence[float] = DEFAULT_DELAY_BUCKETS,
    ) -> None:
        self.duration_buckets = _bounds("duration_buckets", duration_buckets)
        self.delay_buckets = _bounds("delay_buckets", delay_buckets)
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}

    def _task(self, name: str) -> _Task:
        """The counts of task ``name`` (lock held)."""
        counts = self._tasks.get(name)
        if counts is None:
            counts = self._tasks[name] = _Task(self.duration_buckets, self.delay_buckets)
        return counts

    def started(self, job: JobState) -> None:
        """A job starts: how late it starts, and a retry if it is not the first attempt."""
        lateness = job.started - job.due
        if lateness < 0.0:
            lateness = 0.0  # started within the scheduler's tolerance before its due time
        with self._lock:
            counts = self._tasks.get(job.task_name) or self._task(job.task_name)
            counts.lateness.observe(lateness)
            if job.attempt > 1:
                counts.retries += 1

    def ended(self, job: JobState, status: JobStatus, elapsed: float) -> None:
        """A job's handler returned (or the job was cancelled before it ran)."""
        with self._lock:
            counts = self._tasks.get(job.task_name) or self._task(job.task_name)
            jobs = counts.jobs
            jobs[status] = jobs.get(status, 0) + 1
            counts.duration.observe(elapsed)

    def skipped(self, task_name: str, status: JobStatus, count: int = 1) -> None:
        """``count`` runs of a task ended without running here: ``missed`` or ``abandoned``."""
        with self._lock:
            jobs = self._task(task_name).jobs
            jobs[status] = jobs.get(status, 0) + count

    def read(self) -> dict[str, TaskCounts]:
        """A consistent copy of every count, by task name (every counted status present, 0 if none)."""
        with self._lock:
            return {
                name: TaskCounts(
                    {status: c.jobs.get(JobStatus(status), 0) for status in COUNTED_STATUSES},
                    c.retries,
                    c.duration.copy(),
                    c.lateness.copy(),
                )
                for name, c in self._tasks.items()
            }


class Instruments:
    """A metrics recorder, a tracer, or both, as one scheduler uses them. Never changed: replaced whole."""

    __slots__ = ("logger", "metrics", "tracer")

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        metrics: JobMetrics | None = None,
        tracer: JobTracer | None = None,
    ) -> None:
        self.logger = logger
        self.metrics = metrics
        self.tracer = tracer

    def start(self, job: JobState) -> object:
        """Before the handler runs, on its thread; the result goes back to :meth:`end`."""
        try:
            if self.metrics is not None:
                self.metrics.started(job)
            return None if self.tracer is None else self.tracer.start(job)
        except Exception:
            self.logger.exception("quiv's instrumentation failed at the start of job %s", job.id)
            return None

    def end(
        self,
        job: JobState,
        handle: object,
        status: JobStatus,
        error: str | None,
        exc: BaseException | None,
        elapsed: float,
    ) -> None:
        """After the handler, on the same thread as :meth:`start`."""
        try:
            if self.tracer is not None and handle is not None:
                self.tracer.end(handle, job, status, error, exc)
            if self.metrics is not None:
                self.metrics.ended(job, status, elapsed)
        except Exception:
            self.logger.exception("quiv's instrumentation failed at the end of job %s", job.id)

    def skipped(self, task_name: str, status: JobStatus, count: int = 1) -> None:
        """Runs that ended without running here (``missed``, ``abandoned``)."""
        if self.metrics is not None:
            try:
                self.metrics.skipped(task_name, status, count)
            except Exception:
                self.logger.exception("quiv's instrumentation failed counting a %s run", status.value)

    def capture(self, reason: str) -> object | None:
        """The caller's trace context, to link the job it leads to; None without a tracer or a span."""
        if self.tracer is None:
            return None
        try:
            return self.tracer.capture(reason)
        except Exception:
            self.logger.exception("quiv's instrumentation failed reading the trace context")
            return None

    def expect(self, task_id: str, due: float, link: object | None) -> None:
        """Give the job that runs for ``due`` the ``link`` captured when it was asked for."""
        if link is not None and self.tracer is not None:
            try:
                self.tracer.expect(task_id, due, link)
            except Exception:
                self.logger.exception("quiv's instrumentation failed keeping a trace link")
