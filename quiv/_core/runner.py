"""Running one job on a worker thread: arguments, injected hooks, context, outcome.

Nothing here holds the scheduler lock: this is where user code runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from quiv._core.context import JobContext, current_job
from quiv._core.instruments import Instruments
from quiv._core.task import JobState, TaskState
from quiv._delivery.dispatch import Dispatcher, run_coroutine_blocking, set_in_job_thread
from quiv._delivery.events import Listeners
from quiv._delivery.progress import ProgressReport
from quiv._enums import JobStatus

__all__ = ["JobRunner", "ProgressHook"]

#: A handler reporting progress in a tight loop holds the GIL: the event loop's thread, waiting
#: for it, gets it only at the next forced switch (5 ms by default) and needs it again at every
#: wake-up. Once in this many reports the hook releases it, so the loop runs.
GIL_OFFER_EVERY = 256
#: How long the hook then sleeps while live-stream clients are connected. ``sleep(0)`` releases
#: the GIL but the reporting thread usually takes it back before the loop's thread wakes; a real
#: sleep hands it over. With 50 clients on a compressed stream this shortened the longest gap
#: between two progress messages of a flooding job (bench/stream_flood.py), where the reporting
#: thread kept its rate; a handler that does real work between reports loses nothing measurable.
GIL_HANDOVER_SECONDS = 50e-6


class JobRunner:
    """Calls handlers; one per scheduler."""

    def __init__(
        self,
        owner: object,
        listeners: Listeners,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        now: Callable[[], Any],
    ) -> None:
        self.owner = owner  # what get_current_scheduler-style helpers see (the Quiv)
        self.listeners = listeners
        self.dispatcher: Dispatcher = listeners.dispatcher
        self.logger = logger
        self.now = now
        #: Metrics and traces (see :mod:`quiv._core.instruments`); None until asked for.
        self.instruments: Instruments | None = None

    def run(self, job: JobState) -> tuple[JobStatus, str | None]:
        """Run ``job``'s handler on this thread; return how it ended."""
        instruments = self.instruments
        if instruments is None:
            return self._outcome(job)[:2]
        handle = instruments.start(job)
        began = time.perf_counter()
        status: JobStatus = JobStatus.FAILED
        error: str | None = "quiv internal error; see the log"
        exc: BaseException | None = None
        try:
            status, error, exc = self._outcome(job)
        finally:
            instruments.end(job, handle, status, error, exc, time.perf_counter() - began)
        return status, error

    def _outcome(self, job: JobState) -> tuple[JobStatus, str | None, BaseException | None]:
        if job.stop.is_set() or job.stop_requested():
            return JobStatus.CANCELLED, job.cancel_reason or "cancelled before it started", None
        status, error, exc = self._call(job)
        if status is JobStatus.COMPLETED and job.stop_requested():
            status, error = JobStatus.CANCELLED, job.cancel_reason or "cancelled"
        return status, error, exc

    def _call(self, job: JobState) -> tuple[JobStatus, str | None, BaseException | None]:
        task = job.task
        settings = task.settings
        try:
            args, kwargs = settings.arguments()
        except Exception as exc:
            self.logger.error(
                "job %s of task %r: could not unpickle its arguments: %s", job.id, task.name, exc
            )
            why = f"could not unpickle the task's arguments: {type(exc).__name__}: {exc}"
            return JobStatus.FAILED, why, exc
        plan = task.plan
        if plan.job_id:
            kwargs["_job_id"] = job.id
        if plan.stop_event:
            kwargs["_stop_event"] = job.stop
        if plan.progress_hook:
            kwargs["_progress_hook"] = ProgressHook(self, task, job.id)
        set_in_job_thread(True)
        token = current_job.set(JobContext(job.id, task.id, task.name, job.stop, self.owner))
        try:
            result = task.func(*args, **kwargs)
            if plan.is_async or (result is not None and asyncio.iscoroutine(result)):
                run_coroutine_blocking(result)
        except BaseException as exc:  # a handler must never take the worker down
            if isinstance(exc, Exception):
                self.logger.exception("job %s of task %r failed", job.id, task.name)
            else:
                self.logger.error("job %s of task %r raised %s", job.id, task.name, type(exc).__name__)
            return JobStatus.FAILED, f"{type(exc).__name__}: {exc}", exc
        finally:
            current_job.reset(token)
            set_in_job_thread(False)
        return JobStatus.COMPLETED, None, None


class ProgressHook:
    """The ``_progress_hook`` a handler receives: forwards any payload to the task's callback."""

    __slots__ = ("_calls", "_dispatcher", "_job_id", "_runner", "_task")

    def __init__(self, runner: JobRunner, task: TaskState, job_id: str) -> None:
        self._runner = runner
        self._dispatcher = runner.dispatcher
        self._task = task
        self._job_id = job_id
        self._calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        # Called thousands of times a second by chatty handlers: keep it flat.
        task = self._task
        callback = task.settings.progress_callback
        if callback is not None and not task.removed:
            self._dispatcher.progress(task.id, callback, task.progress_is_async, args, kwargs)
        listeners = self._runner.listeners
        taps = listeners.taps
        if taps:
            for tap in taps:
                tap(task.id, task.name, self._job_id, args, kwargs)
        if listeners.progress:
            report = ProgressReport(task.id, task.name, self._job_id, args, kwargs, self._runner.now())
            listeners.report_progress(report)
        calls = self._calls + 1  # a race between threads sharing a hook only shifts the offer
        self._calls = calls
        if not calls % GIL_OFFER_EVERY:
            # Offer the GIL to the loop's thread (the live stream's taps never post); hand it over
            # for real when that thread has stream clients to serve.
            time.sleep(GIL_HANDOVER_SECONDS if taps else 0)

    def __repr__(self) -> str:
        return f"<progress hook of task {self._task.name!r}>"
