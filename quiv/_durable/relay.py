"""Relaying live events and progress between processes (PostgreSQL ``NOTIFY``).

Listeners run in the process that ran the job, so an alert is sent once. A
dashboard served by one process still wants to see the jobs of all of them:
a process whose live stream has clients marks itself in ``quiv_workers``
(``wants_events``); while any process wants them, every process also sends
its events and progress on the ``quiv_events`` channel, and the listener
thread of each process hands what the *others* sent to its stream.

Sending is batched by one thread (one transaction per batch, at most every
``BATCH_SECONDS``). Lifecycle events are sent in order, never coalesced;
progress is coalesced per job to the latest report, at most one per job per
``PROGRESS_GAP`` seconds, and flushed before that job's end event. Each
payload stays under NOTIFY's 8,000-byte limit: a larger progress payload is
replaced by ``{"truncated": true}`` and a long error message is cut.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quiv._delivery.events import Listeners
from quiv._delivery.jsonable import jsonable
from quiv._enums import Event
from quiv._exceptions import DatabaseError

if TYPE_CHECKING:
    from quiv._durable.store import DurableStore
    from quiv.models import Job, Task

__all__ = ["CHANNEL", "Relay"]

CHANNEL = "quiv_events"
BATCH_SECONDS = 0.05
PROGRESS_GAP = 0.1
#: NOTIFY refuses payloads of 8,000 bytes or more; keep a margin.
MAX_PAYLOAD = 7900
#: Events kept while the database cannot be reached; older ones are dropped (the history has them).
MAX_PENDING = 10_000
_END = frozenset({Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED})

Sink = Callable[[dict[str, Any]], None]
_Report = tuple[str, str, str, tuple[Any, ...], dict[str, Any], float]


class Relay:
    """Sends this process's events to the other processes, and hands theirs to local sinks."""

    def __init__(
        self,
        store: DurableStore,
        worker_id: Callable[[], str],
        listeners: Listeners,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.store = store
        self._worker_id = worker_id
        self.listeners = listeners
        self.logger = logger
        self.sending = False
        self.sinks: tuple[Sink, ...] = ()
        self._lock = threading.Condition()
        #: Serialises :meth:`send` (its own lock: the listeners' taps take ``_lock``).
        self._switch = threading.Lock()
        self._events: list[str] = []
        self._progress: dict[str, _Report] = {}
        self._last_progress: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.dropped = 0

    # --------------------------------------------------------------- sending
    def send(self, wanted: bool) -> None:
        """Start or stop sending, as some process (or none) wants events (heartbeat or listener thread)."""
        with self._switch:
            self._send(wanted)

    def _send(self, wanted: bool) -> None:
        if wanted == self.sending or (wanted and self._stopping):
            return
        self.sending = wanted
        for event in Event:
            if wanted:
                self.listeners.add(event, self._on_event)
            else:
                self.listeners.remove(event, self._on_event)
        if wanted:
            self.listeners.add_tap(self._tap)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="quiv-relay", daemon=True)
                self._thread.start()
        else:
            self.listeners.remove_tap(self._tap)

    def _payload(self, data: dict[str, Any]) -> str:
        data["w"] = self._worker_id()
        return json.dumps(data, separators=(",", ":"))

    def _on_event(self, event: Event, task: Task, job: Job | None = None) -> None:
        data: dict[str, Any] = {
            "e": event.value,
            "t": [task.id, task.task_name, task.status.value, task.next_run_at.timestamp()],
        }
        if job is not None:
            error = job.error_message
            data["j"] = [
                job.id,
                job.task_id,
                job.task_name,
                job.status.value,
                job.started_at.timestamp(),
                None if job.ended_at is None else job.ended_at.timestamp(),
                job.duration_seconds,
                None if error is None else error[:2000],
                job.attempt,
                job.retry_of,
                None if job.scheduled_for is None else job.scheduled_for.timestamp(),
                job.worker,
            ]
        texts = [self._payload(data)]
        if job is not None and event in _END:
            # The job's last progress goes out before its end (encoded outside the lock: repr() is user code).
            with self._lock:
                pending = self._progress.pop(job.id, None)
                self._last_progress.pop(job.id, None)
            if pending is not None:
                texts.insert(0, self._encode_progress(pending))
        with self._lock:
            self._events.extend(texts)
            if len(self._events) > MAX_PENDING:
                del self._events[: len(self._events) - MAX_PENDING]
                self.dropped += 1
            self._lock.notify()

    def _tap(
        self, task_id: str, task_name: str, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """A progress report, in the job's thread: keep it as the job's latest (encoded when sent)."""
        with self._lock:
            first = not self._progress
            self._progress[job_id] = (task_id, task_name, job_id, args, kwargs, time.time())
            if first:
                self._lock.notify()

    def _encode_progress(self, report: _Report) -> str:
        task_id, task_name, job_id, args, kwargs, at = report
        data: dict[str, Any] = {
            "e": "progress",
            "p": [task_id, task_name, job_id, jsonable(list(args)), jsonable(dict(kwargs)), at],
        }
        text = self._payload(data)
        if len(text.encode()) > MAX_PAYLOAD:
            data["p"][3], data["p"][4] = [], {"truncated": True}
            text = self._payload(data)
        return text

    def _take(self) -> tuple[list[str], list[_Report]]:
        """The next batch: every pending event, and the progress of jobs not sent to lately."""
        now = time.monotonic()
        events, self._events = self._events, []
        reports = []
        for job_id in list(self._progress):
            if now - self._last_progress.get(job_id, 0.0) >= PROGRESS_GAP:
                reports.append(self._progress.pop(job_id))
                self._last_progress[job_id] = now
        return events, reports

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._events and not self._progress:
                    self._lock.wait()
                if self._stopping:
                    return
                events, reports = self._take()
            # Encoding may call repr() on the handler's values: never under the lock.
            batch = events + [self._encode_progress(report) for report in reports]
            if batch:
                try:
                    self.store.notify_many(CHANNEL, batch)
                except DatabaseError as exc:
                    self.logger.debug("quiv could not relay %d event(s): %s", len(batch), exc)
            time.sleep(BATCH_SECONDS)  # gather the next batch (the rate limit of the relay)

    # ------------------------------------------------------------- receiving
    def receive(self, text: str) -> None:
        """A payload from the channel: hand it to the local sinks unless this process sent it."""
        sinks = self.sinks
        if not sinks:
            return
        try:
            data = json.loads(text)
        except ValueError:
            return
        if data.get("w") == self._worker_id():
            return
        for sink in sinks:
            try:
                sink(data)
            except Exception:
                self.logger.exception("quiv could not deliver a relayed event")

    def subscribe(self, sink: Sink) -> bool:
        """Add a local sink; True if it is the first (this process now wants events)."""
        first = not self.sinks
        if sink not in self.sinks:
            self.sinks = (*self.sinks, sink)
        return first

    def unsubscribe(self, sink: Sink) -> bool:
        """Remove a local sink; True if none is left."""
        self.sinks = tuple(s for s in self.sinks if s is not sink)
        return not self.sinks

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
