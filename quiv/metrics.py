"""Prometheus metrics of a scheduler, read when Prometheus scrapes.

Install with ``pip install "quiv[prometheus]"`` (the official
``prometheus-client``), then register a collector::

    from prometheus_client import REGISTRY
    from quiv.metrics import QuivCollector

    REGISTRY.register(QuivCollector(scheduler))

or let ``quiv.fastapi`` serve it: ``quiv_router(scheduler, metrics=True)``
adds ``GET /metrics``.

What a job costs: the scheduler counts its start (start delay, retry) and
its end (final status, duration) in a few plain-Python additions under a
small lock of their own. Everything else (tasks by status, running jobs,
free workers, the oldest running job, the workers of a shared database) is
read from :meth:`quiv.Quiv.stats` when Prometheus asks. The list of metrics,
their labels and example queries are in the operations guide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, cast

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('quiv.metrics needs prometheus-client: pip install "quiv[prometheus]"') from exc

from quiv._core.instruments import (
    COUNTED_STATUSES,
    DEFAULT_DELAY_BUCKETS,
    DEFAULT_DURATION_BUCKETS,
    HistogramCounts,
    JobMetrics,
    TaskCounts,
)
from quiv._enums import TaskStatus
from quiv._exceptions import ConfigurationError, InvalidArgumentError, QuivError, SchedulerStoppedError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from quiv._core.scheduler import Quiv
    from quiv.models import SchedulerStats

__all__ = ["DEFAULT_DELAY_BUCKETS", "DEFAULT_DURATION_BUCKETS", "QuivCollector"]


class QuivCollector(Collector):
    """A Prometheus collector for one scheduler; building it starts counting the scheduler's jobs.

    ``duration_buckets`` and ``delay_buckets`` are the upper bounds (seconds)
    of the job duration and start delay histograms. Several collectors of one
    scheduler share its counts, so they must agree on the buckets (a
    ``ConfigurationError`` says otherwise). Register it on one registry
    only: its metric names are fixed (``quiv_*``).
    """

    def __init__(
        self,
        scheduler: Quiv,
        *,
        duration_buckets: Sequence[float] | None = None,
        delay_buckets: Sequence[float] | None = None,
    ) -> None:
        from quiv._core.scheduler import Quiv

        if not isinstance(scheduler, Quiv):
            raise InvalidArgumentError(f"scheduler must be a quiv.Quiv, got {scheduler!r}")
        wanted = JobMetrics(
            DEFAULT_DURATION_BUCKETS if duration_buckets is None else duration_buckets,
            DEFAULT_DELAY_BUCKETS if delay_buckets is None else delay_buckets,
        )
        metrics = scheduler._instrument(metrics=wanted).metrics
        assert metrics is not None
        if metrics is not wanted and (
            (duration_buckets is not None and metrics.duration_buckets != wanted.duration_buckets)
            or (delay_buckets is not None and metrics.delay_buckets != wanted.delay_buckets)
        ):
            raise ConfigurationError(
                "this scheduler already counts its jobs with other histogram buckets "
                f"(duration {list(metrics.duration_buckets)}, delay {list(metrics.delay_buckets)}): "
                "every collector of one scheduler uses the same ones"
            )
        self.scheduler = scheduler
        self._metrics = metrics
        #: True while reading the scheduler's state fails (logged once per outage).
        self._failing = False

    def describe(self) -> Iterable[Metric]:
        """The metric families without samples (lets a registry check names without a scrape)."""
        return list(_Families().all(shared=_durable(self.scheduler)))

    def collect(self) -> Iterable[Metric]:
        """Every metric, as it stands now."""
        scheduler = self.scheduler
        families = _Families()
        for task, counts in sorted(self._metrics.read().items()):
            families.add_task(task, counts)
        stats: SchedulerStats | None = None
        health: tuple[int, float | None, float | None] | None = None
        try:
            stats = scheduler.stats()
            health = scheduler._worker_health()
            self._failing = False
        except SchedulerStoppedError:
            pass  # shut down: only the counts are left to show
        except QuivError as exc:  # the database of a shared scheduler is unreachable
            if not self._failing:
                self._failing = True
                scheduler.logger.warning("quiv's metrics leave out the scheduler's state for now: %s", exc)
        families.running.add_metric([], 1.0 if scheduler.running else 0.0)
        if stats is not None:
            families.add_stats(stats, scheduler._now())
        if health is not None:
            families.add_health(*health)
        return list(families.all(shared=_durable(scheduler)))


def _durable(scheduler: Quiv) -> bool:
    """True for a scheduler with a ``database_url`` (it has a workers table)."""
    return scheduler._durable is not None


class _Families:
    """The metric families of one scrape, filled in by :meth:`QuivCollector.collect`."""

    def __init__(self) -> None:
        self.jobs = CounterMetricFamily(
            "quiv_jobs",
            "Jobs that ended, by task and final status (completed, failed, cancelled, abandoned, missed).",
            labels=["task", "status"],
        )
        self.retries = CounterMetricFamily(
            "quiv_job_retries", "Retry attempts started (a job's second attempt and later).", labels=["task"]
        )
        self.duration = HistogramMetricFamily(
            "quiv_job_duration_seconds", "How long jobs ran, by task.", labels=["task"]
        )
        self.lateness = HistogramMetricFamily(
            "quiv_job_start_delay_seconds",
            "How late jobs started after they were due, by task.",
            labels=["task"],
        )
        self.running = GaugeMetricFamily("quiv_scheduler_running", "1 while the scheduler runs, else 0.")
        self.tasks = GaugeMetricFamily("quiv_tasks", "Tasks by status.", labels=["status"])
        self.running_jobs = GaugeMetricFamily(
            "quiv_running_jobs", "Jobs running now (with a shared database: in every process)."
        )
        self.pool_size = GaugeMetricFamily("quiv_pool_size", "The most jobs this process runs at once.")
        self.free_workers = GaugeMetricFamily(
            "quiv_free_workers", "How many more jobs this process could start now."
        )
        self.oldest = GaugeMetricFamily(
            "quiv_oldest_running_job_age_seconds",
            "How long the longest-running job has been running, 0 when none runs (shared: of any process).",
        )
        self.live_workers = GaugeMetricFamily(
            "quiv_live_workers", "Processes sharing the database whose heartbeat is recent enough."
        )
        self.heartbeat_age = GaugeMetricFamily(
            "quiv_heartbeat_age_seconds", "Seconds since this process's last heartbeat (database clock)."
        )
        self.stalest_heartbeat = GaugeMetricFamily(
            "quiv_stalest_heartbeat_age_seconds",
            "Seconds since the least recent heartbeat of a live process (database clock).",
        )

    def add_task(self, task: str, counts: TaskCounts) -> None:
        for status in COUNTED_STATUSES:
            self.jobs.add_metric([task, status], float(counts.jobs.get(status, 0)))
        self.retries.add_metric([task], float(counts.retries))
        self.duration.add_metric([task], _buckets(counts.duration), counts.duration.total)
        self.lateness.add_metric([task], _buckets(counts.lateness), counts.lateness.total)

    def add_stats(self, stats: SchedulerStats, now: float) -> None:
        for status in TaskStatus:
            self.tasks.add_metric([status.value], float(stats.tasks_by_status.get(status.value, 0)))
        self.running_jobs.add_metric([], float(stats.running_jobs))
        self.pool_size.add_metric([], float(stats.pool_size))
        self.free_workers.add_metric([], float(stats.free_workers))
        started = stats.oldest_running_job_started_at
        self.oldest.add_metric([], 0.0 if started is None else max(0.0, now - started.timestamp()))

    def add_health(self, live: int, own: float | None, stalest: float | None) -> None:
        self.live_workers.add_metric([], float(live))
        if own is not None:
            self.heartbeat_age.add_metric([], own)
        if stalest is not None:
            self.stalest_heartbeat.add_metric([], stalest)

    def all(self, *, shared: bool) -> Iterator[Metric]:
        yield from (self.jobs, self.retries, self.duration, self.lateness, self.running, self.tasks)
        yield from (self.running_jobs, self.pool_size, self.free_workers, self.oldest)
        if shared:
            yield from (self.live_workers, self.heartbeat_age, self.stalest_heartbeat)


#: How prometheus-client writes a bucket bound ("0.005", "1.0", "+Inf"), so ours look like its own.
_as_label = cast("Callable[[float], str]", floatToGoString)


def _buckets(histogram: HistogramCounts) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs, ending with ``+Inf``."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts, strict=True):
        total += count
        out.append((_as_label(bound), float(total)))
    return out
