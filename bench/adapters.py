"""One small adapter per benchmark target, so every scenario speaks one API.

This module runs inside each target's own virtual environment and imports
nothing but the standard library at module level: the scheduler library is
imported lazily by the adapter that needs it.

Targets:

``ours``
    This repository's ``quiv`` (hooks injected as ``_job_id`` / ``_stop_event``
    / ``_progress_hook``; ``Quiv(..., main_loop=loop)``).
``quiv140``
    The published ``quiv==1.4.0`` (hooks injected as ``job_id`` /
    ``stop_event`` / ``progress_hook``), used through its documented API only.
``aps``
    APScheduler 3.11 ``BackgroundScheduler``, thread pool, in-memory job store.
``aps-sqlite``
    The same with the SQLAlchemy job store on a SQLite file (the persisted
    comparison).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["TARGETS", "Adapter", "ApsAdapter", "QuivAdapter", "UnsupportedError", "make_adapter"]

TARGETS = ("ours", "quiv140", "aps", "aps-sqlite")
#: Set (by ``run.py --instrument``) to run ours with ``metrics``, ``traces`` or ``both`` turned on.
INSTRUMENT_ENV = "QUIV_BENCH_INSTRUMENT"
#: The share of job spans the tracer provider samples (``run.py --trace-sample``; default 1: every job).
TRACE_SAMPLE_ENV = "QUIV_BENCH_TRACE_SAMPLE"
#: How often the instrumented run renders its metrics, as a scrape would.
SCRAPE_SECONDS = 1.0

# Every library's own logging is cut to errors, identically for all targets: a
# warning per job (for example "pool busy") written to stderr would measure the
# terminal, not the scheduler.
for _name in ("quiv", "Quiv", "apscheduler"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class UnsupportedError(Exception):
    """The target has no equivalent of what the scenario needs."""


class Adapter:
    """What a scenario may ask of a scheduler."""

    name: str = ""
    #: ``"underscore"`` (``_job_id`` ...), ``"plain"`` (``job_id`` ...) or ``"none"``.
    hooks: str = "none"
    persisted: bool = False
    supports_cancel: bool = False
    supports_progress: bool = False
    supports_listener: bool = False

    def preload(self) -> None:
        """Import the library, so a memory baseline taken next excludes the import."""
        raise NotImplementedError

    def create(
        self,
        *,
        pool_size: int = 10,
        retention: int = 86400,
        main_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        raise NotImplementedError

    def add(
        self,
        func: Callable[..., Any],
        *,
        interval: float,
        delay: float = 0.0,
        run_once: bool = False,
        args: tuple[Any, ...] | None = None,
        progress_callback: Callable[..., Any] | None = None,
        name: str = "bench",
    ) -> str:
        """Schedule ``func``; first run ``delay`` seconds from now; return the id."""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        raise NotImplementedError

    def cancel(self, job_id: str) -> bool:
        raise UnsupportedError(f"{self.name} has no job cancellation")

    def on_job_completed(self, callback: Callable[[], None]) -> None:
        """Have the library's own job-completed event call ``callback()`` (a sync listener)."""
        raise UnsupportedError(f"{self.name} has no job-completed listener")

    def version(self) -> str:
        return ""

    def raw(self) -> Any:
        """The underlying scheduler object (for target-specific scenarios)."""
        raise NotImplementedError


class QuivAdapter(Adapter):
    """Both quiv flavours: this repository's and the published 1.4.0."""

    supports_cancel = True
    supports_progress = True
    supports_listener = True
    persisted = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.hooks = "underscore" if name == "ours" else "plain"
        self._sched: Any = None
        #: Set to stop the scrape thread of an instrumented run.
        self._scraper: threading.Event | None = None

    def preload(self) -> None:
        import quiv  # noqa: F401

    def create(
        self,
        *,
        pool_size: int = 10,
        retention: int = 86400,
        main_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        from quiv import Quiv

        if self.name == "ours" and main_loop is not None:
            self._sched = Quiv(pool_size=pool_size, history_retention_seconds=retention, main_loop=main_loop)
        else:
            # quiv 1.4.0 resolves the main loop when start() runs inside it.
            self._sched = Quiv(pool_size=pool_size, history_retention_seconds=retention)
        what = os.environ.get(INSTRUMENT_ENV, "")
        if self.name == "ours" and what:
            self._scraper = _instrument(self._sched, what, float(os.environ.get(TRACE_SAMPLE_ENV, "1")))

    def add(
        self,
        func: Callable[..., Any],
        *,
        interval: float,
        delay: float = 0.0,
        run_once: bool = False,
        args: tuple[Any, ...] | None = None,
        progress_callback: Callable[..., Any] | None = None,
        name: str = "bench",
    ) -> str:
        return str(
            self._sched.add_task(
                name,
                func,
                interval,
                delay=delay,
                run_once=run_once,
                args=args,
                progress_callback=progress_callback,
            )
        )

    def start(self) -> None:
        self._sched.start()

    def shutdown(self) -> None:
        self._sched.shutdown()
        if self._scraper is not None:
            self._scraper.set()

    def cancel(self, job_id: str) -> bool:
        return bool(self._sched.cancel_job(job_id))

    def on_job_completed(self, callback: Callable[[], None]) -> None:
        # Both flavours document add_listener(Event.JOB_COMPLETED, cb) with cb(event, task, job).
        from quiv import Event

        def listener(event: Any, task: Any, job: Any) -> None:
            callback()

        self._sched.add_listener(Event.JOB_COMPLETED, listener)

    def version(self) -> str:
        try:
            from importlib.metadata import version

            return version("quiv")
        except Exception:  # not installed as a distribution (smoke run from the tree)
            return "source tree"

    def raw(self) -> Any:
        return self._sched


def _instrument(scheduler: Any, what: str, sample: float) -> threading.Event:
    """Turn quiv's extras on the way a production app would; return the scrape thread's stop flag.

    ``what`` is ``metrics``, ``traces`` or ``both``. Prometheus: a collector on
    its own registry, scraped (rendered to text) every second by a thread.
    OpenTelemetry: the SDK with a batch processor whose exporter drops the
    spans (as one sending them to a collector would, off the jobs' threads,
    without keeping them in memory), sampling ``sample`` of the jobs (1:
    every one).
    """
    stop = threading.Event()
    if what in ("traces", "both"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

        from quiv.tracing import instrument

        class Dropped(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider(sampler=ParentBasedTraceIdRatio(sample))
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        instrument(scheduler, tracer_provider=provider)
    if what not in ("metrics", "both"):
        return stop
    from prometheus_client import CollectorRegistry, generate_latest

    from quiv.metrics import QuivCollector

    registry = CollectorRegistry()
    registry.register(QuivCollector(scheduler))

    def scrape() -> None:
        while not stop.wait(SCRAPE_SECONDS):
            try:
                generate_latest(registry)
            except Exception as exc:  # the measurement goes on; say why the scrape failed
                print(f"scrape failed: {exc!r}", file=sys.stderr)

    threading.Thread(target=scrape, name="bench-scrape", daemon=True).start()
    return stop


class ApsAdapter(Adapter):
    """APScheduler 3 ``BackgroundScheduler`` with a thread pool."""

    hooks = "none"
    supports_listener = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.persisted = name == "aps-sqlite"
        self._sched: Any = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def preload(self) -> None:
        import apscheduler.executors.pool
        import apscheduler.jobstores.memory
        import apscheduler.schedulers.background

        if self.persisted:
            import apscheduler.jobstores.sqlalchemy  # noqa: F401

    def create(
        self,
        *,
        pool_size: int = 10,
        retention: int = 86400,
        main_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        store: Any
        if self.persisted:
            from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

            self._tmpdir = tempfile.TemporaryDirectory(prefix="bench-aps-")
            store = SQLAlchemyJobStore(url=f"sqlite:///{os.path.join(self._tmpdir.name, 'jobs.sqlite')}")
        else:
            from apscheduler.jobstores.memory import MemoryJobStore

            store = MemoryJobStore()
        self._sched = BackgroundScheduler(
            jobstores={"default": store},
            executors={"default": ThreadPoolExecutor(pool_size)},
            # No misfire window: a job that waited for a worker still runs, as in quiv.
            job_defaults={"coalesce": False, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )

    def add(
        self,
        func: Callable[..., Any],
        *,
        interval: float,
        delay: float = 0.0,
        run_once: bool = False,
        args: tuple[Any, ...] | None = None,
        progress_callback: Callable[..., Any] | None = None,
        name: str = "bench",
    ) -> str:
        if progress_callback is not None:
            raise UnsupportedError("APScheduler has no progress callbacks")
        first = datetime.now(timezone.utc) + timedelta(seconds=delay)
        if run_once:
            job = self._sched.add_job(func, "date", run_date=first, args=args, name=name)
        else:
            job = self._sched.add_job(
                func, "interval", seconds=interval, next_run_time=first, args=args, name=name
            )
        return str(job.id)

    def start(self) -> None:
        self._sched.start()

    def on_job_completed(self, callback: Callable[[], None]) -> None:
        from apscheduler.events import EVENT_JOB_EXECUTED

        def listener(event: Any) -> None:
            callback()

        self._sched.add_listener(listener, EVENT_JOB_EXECUTED)

    def shutdown(self) -> None:
        try:
            self._sched.shutdown(wait=True)
        finally:
            if self._tmpdir is not None:
                self._tmpdir.cleanup()

    def version(self) -> str:
        from importlib.metadata import version

        v = version("apscheduler")
        if self.persisted:
            v += f" + SQLAlchemy {version('sqlalchemy')} (SQLite file)"
        return v

    def raw(self) -> Any:
        return self._sched


def make_adapter(target: str) -> Adapter:
    if target in ("ours", "quiv140"):
        return QuivAdapter(target)
    if target in ("aps", "aps-sqlite"):
        return ApsAdapter(target)
    raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
