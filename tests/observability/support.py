"""Helpers of the metrics and tracing tests: scraping a registry, waiting for job events, span capture.

Every wait has a deadline and fails the test when it passes; nothing sleeps
for a fixed time waiting for an outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quiv import Event, Job, Quiv, Task

__all__ = ["DEADLINE", "Ended", "Samples", "Spans", "eventually", "parse", "scrape"]

#: How long any positive wait may take before the test fails.
DEADLINE = 10.0

#: ``{(sample name, sorted labels): value}``
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[Samples, dict[str, str]]:
    """Samples and ``{family name: type}`` of a Prometheus text exposition."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def scrape(registry: CollectorRegistry) -> Samples:
    """What a scrape of ``registry`` returns, parsed back."""
    return parse(generate_latest(registry).decode())[0]


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the scrape does not have it."""
    return samples.get((name, tuple(sorted(labels.items()))))


def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Ended:
    """Every job event of a scheduler, kept in order, for a test to wait on (nothing is consumed)."""

    def __init__(self, scheduler: Quiv) -> None:
        self.seen: list[tuple[Event, Job]] = []
        self._changed = threading.Condition()
        for event in (
            Event.JOB_STARTED,
            Event.JOB_COMPLETED,
            Event.JOB_FAILED,
            Event.JOB_CANCELLED,
            Event.JOB_MISSED,
        ):
            scheduler.add_listener(event, self._record)

    def _record(self, event: Event, task: Task, job: Job) -> None:
        with self._changed:
            self.seen.append((event, job))
            self._changed.notify_all()

    def wait(
        self, event: Event, count: int = 1, task: str | None = None, timeout: float = DEADLINE
    ) -> list[Job]:
        """The first ``count`` jobs of ``event`` (of the task named ``task``, if given), once there are."""

        def matching() -> list[Job]:
            return [j for e, j in self.seen if e is event and (task is None or j.task_name == task)]

        with self._changed:
            if not self._changed.wait_for(lambda: len(matching()) >= count, timeout):
                raise AssertionError(f"fewer than {count} {event.value} event(s) within {timeout} s")
            return matching()[:count]

    def next(self, event: Event, task: str | None = None, timeout: float = DEADLINE) -> Job:
        """The first job of ``event`` (of task ``task``, if given)."""
        return self.wait(event, 1, task, timeout)[0]


class Spans:
    """A tracer provider of the OpenTelemetry SDK whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def finished(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def jobs(self) -> list[ReadableSpan]:
        """The finished ``quiv.job`` spans, in the order they ended."""
        return [span for span in self.finished() if span.name == "quiv.job"]

    def of_job(self, job_id: str, timeout: float = DEADLINE) -> ReadableSpan:
        """The span of job ``job_id``, once it has ended (spans end just before the job's end event)."""
        found: list[ReadableSpan] = []

        def ended() -> bool:
            found[:] = [s for s in self.jobs() if s.attributes and s.attributes.get("quiv.job.id") == job_id]
            return bool(found)

        eventually(ended, f"the span of job {job_id}", timeout)
        return found[0]
