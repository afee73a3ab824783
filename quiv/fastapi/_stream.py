"""The live stream: scheduler events and progress fanned out to WebSocket clients.

An :class:`EventStream` subscribes to a scheduler while at least one client
is connected. Every event becomes one JSON text, encoded once and appended
to each client's own bounded queue; a per-client task sends from that queue.
Publishing never awaits a socket, so a slow or dead client cannot hold up
the main loop or the other clients.

Two lanes per client:

* **lifecycle** (task and job events): a bounded queue, sent in order. When it
  is full the *oldest* message is dropped and counted; before the next message
  that client receives, it gets one ``{"event": "overflow", "dropped": n}``
  saying how many it missed (a dashboard then reloads its state). Progress can
  never push an event out of this lane.
* **progress**: coalesced. Reports are taken in the job's own thread (a dict
  assignment), and at most every ``progress_interval`` seconds one flush on the
  loop turns the latest report of each job into one message, encoded once for
  every client. Each client keeps only the newest unsent message per job, and a
  job's last report is sent before its end event. However fast a handler
  reports, the loop does a bounded amount of work.

A client is disconnected with close code 1008 when one send takes longer
than ``send_timeout`` seconds, or when its lifecycle lane has stayed full
(dropping messages) for ``send_timeout`` seconds: both fire well before a
server's own ping timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from quiv._core.task import job_model, utc
from quiv._delivery.jsonable import jsonable as _jsonable
from quiv._enums import Event
from quiv._exceptions import InvalidArgumentError
from quiv.fastapi._schemas import (
    JOB_EVENT_NAMES,
    TASK_EVENT_NAMES,
    HelloMessage,
    JobEventMessage,
    OverflowMessage,
    ProgressMessage,
    TaskEventMessage,
)
from quiv.models import Job, Task

if TYPE_CHECKING:
    from quiv import Quiv

__all__ = ["EventStream", "streams_of"]

#: Close code sent to a client dropped for being too slow (policy violation).
SLOW_CLIENT_CLOSE_CODE = 1008
#: Close code sent to every client when the stream shuts down (going away).
SHUTDOWN_CLOSE_CODE = 1001
#: Close code for a connection refused because the stream is closed (try again later).
CLOSED_CLOSE_CODE = 1013

_streams: weakref.WeakKeyDictionary[Any, weakref.WeakSet[EventStream]] = weakref.WeakKeyDictionary()


def streams_of(scheduler: Quiv) -> list[EventStream]:
    """The live streams built for ``scheduler`` (the lifespan closes them on shutdown)."""
    return list(_streams.get(scheduler, ()))


def _iso(value: datetime) -> str:
    """UTC times written the way the REST answers write them (``...Z``)."""
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _iso(datetime.now(timezone.utc))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Client:
    """One connection: its bounded queue and what its sender must do next."""

    __slots__ = (
        "close_code",
        "close_reason",
        "full_since",
        "pending_drops",
        "progress",
        "queue",
        "wake",
        "websocket",
    )

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        #: The lifecycle lane.
        self.queue: deque[str] = deque()
        #: The progress lane: the newest unsent message of each job.
        self.progress: dict[str, str] = {}
        #: Since when (loop time) the lifecycle lane has been full and dropping.
        self.full_since: float | None = None
        self.wake = asyncio.Event()
        self.pending_drops = 0
        self.close_code: int | None = None
        self.close_reason = ""

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.wake.set()


class EventStream:
    """Broadcasts a scheduler's events and progress reports to WebSocket clients as JSON.

    Use :meth:`serve` as the body of a WebSocket endpoint (the router of
    :func:`quiv.fastapi.quiv_router` does). ``queue_size`` bounds the
    messages waiting for each client; ``send_timeout`` is how long one send
    may take before the client is dropped as too slow. ``progress_interval``
    is the shortest time between two progress messages of one job (0: send
    every report, coalescing only what arrives while the loop is busy).
    """

    def __init__(
        self,
        scheduler: Quiv,
        *,
        queue_size: int = 256,
        send_timeout: float = 10.0,
        progress_interval: float = 0.1,
    ) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InvalidArgumentError(f"queue_size must be an int >= 1, got {queue_size!r}")
        if isinstance(send_timeout, bool) or not isinstance(send_timeout, (int, float)) or send_timeout <= 0:
            raise InvalidArgumentError(f"send_timeout must be a number of seconds > 0, got {send_timeout!r}")
        if (
            isinstance(progress_interval, bool)
            or not isinstance(progress_interval, (int, float))
            or not 0 <= progress_interval < math.inf
        ):
            raise InvalidArgumentError(
                f"progress_interval must be a number of seconds >= 0, got {progress_interval!r}"
            )
        self.scheduler = scheduler
        self.queue_size = queue_size
        self.send_timeout = float(send_timeout)
        self.progress_interval = float(progress_interval)
        self.dropped = 0
        """Messages discarded so far because a client's queue was full (all clients)."""
        self.slow_disconnects = 0
        """Clients disconnected so far because a send took longer than ``send_timeout``."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[_Client] = set()
        self._attached = False
        self._closed = False
        self._idle: asyncio.Event | None = None
        # Progress waiting for the next flush: the latest report of each job.
        self._pending: dict[str, tuple[str, str, str, tuple[Any, ...], dict[str, Any], float]] = {}
        self._pending_lock = threading.Lock()
        self._flush_planned = False
        self._last_flush = -math.inf
        _streams.setdefault(scheduler, weakref.WeakSet()).add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._clients)} client(s)"
        return f"<EventStream {state} queue_size={self.queue_size}>"

    @property
    def clients(self) -> int:
        """How many clients are connected."""
        return len(self._clients)

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called; new connections are then refused."""
        return self._closed

    # ------------------------------------------------------------ clients
    async def serve(self, websocket: WebSocket) -> None:
        """Accept ``websocket`` and stream to it until it disconnects or the stream closes."""
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop.is_closed():
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this EventStream already serves clients on another running event loop; "
                "create one EventStream per application"
            )
        if self._closed or self.scheduler.stopped:
            # Refused before the handshake completes: the client sees the close (1013).
            await websocket.close(code=CLOSED_CLOSE_CODE, reason="the scheduler has been shut down")
            return
        await websocket.accept()
        client = _Client(websocket)
        self._clients.add(client)
        if self._idle is not None:
            self._idle.clear()
        self._attach()
        hello: HelloMessage = {"event": "hello", "at": _now(), "queue_size": self.queue_size}
        self._put(client, json.dumps(hello))
        pump = asyncio.ensure_future(self._pump(client))
        receive = asyncio.ensure_future(self._receive(websocket))
        try:
            await asyncio.wait({pump, receive}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Clean up before awaiting anything: a cancelled server task (anyio cancels
            # again at every await) must still leave the stream consistent.
            pump.cancel()
            receive.cancel()
            self._clients.discard(client)
            if not self._clients:
                self._detach()
                if self._idle is not None:
                    self._idle.set()
            await asyncio.wait({pump, receive})

    async def _receive(self, websocket: WebSocket) -> None:
        # Clients have nothing to say; reading is how a disconnect is noticed.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    async def _pump(self, client: _Client) -> None:
        websocket = client.websocket
        queue = client.queue
        while True:
            await client.wake.wait()
            client.wake.clear()
            progress = client.progress
            while queue or client.pending_drops or progress:
                if client.pending_drops:
                    dropped = client.pending_drops
                    notice: OverflowMessage = {"event": "overflow", "at": _now(), "dropped": dropped}
                    client.pending_drops = 0
                    text = json.dumps(notice)
                elif queue:
                    text = queue.popleft()
                    if not queue:
                        client.full_since = None
                else:
                    text = progress.pop(next(iter(progress)))
                try:
                    await asyncio.wait_for(websocket.send_text(text), self.send_timeout)
                except asyncio.TimeoutError:
                    if client.close_code is None:  # not already cut off by the full-lane rule
                        self.slow_disconnects += 1
                        self.scheduler.logger.warning(
                            "quiv event stream: dropping a client whose send took over %.1f s",
                            self.send_timeout,
                        )
                        client.close(SLOW_CLIENT_CLOSE_CODE, "client too slow")
                    await self._close_quietly(websocket, SLOW_CLIENT_CLOSE_CODE, "client too slow")
                    return
                except Exception:
                    return  # the client went away; the receiver notices too
            if client.close_code is not None:
                await self._close_quietly(websocket, client.close_code, client.close_reason)
                return

    async def _close_quietly(self, websocket: WebSocket, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.close(code=code, reason=reason), self.send_timeout)

    def _put(self, client: _Client, text: str) -> None:
        """Queue a lifecycle message (on the loop); a lane full for send_timeout s closes the client."""
        queue = client.queue
        if len(queue) >= self.queue_size:
            queue.popleft()
            client.pending_drops += 1
            self.dropped += 1
            now = time.monotonic()
            if client.full_since is None:
                client.full_since = now
            elif now - client.full_since > self.send_timeout and client.close_code is None:
                self.slow_disconnects += 1
                self.scheduler.logger.warning(
                    "quiv event stream: dropping a client that read nothing for %.1f s", self.send_timeout
                )
                client.close(SLOW_CLIENT_CLOSE_CODE, "client too slow")
        queue.append(text)
        client.wake.set()

    # --------------------------------------------------------- publishing
    def publish(self, message: Mapping[str, Any]) -> None:
        """Send ``message`` (made JSON-safe) to every connected client. Safe from any thread."""
        loop = self._loop
        if loop is None or self._closed or not self._clients:
            return
        text = json.dumps(_jsonable(dict(message)))
        if _running_loop() is loop:
            self._fan_out(text)
            return
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(self._fan_out, text)

    def _fan_out(self, text: str, ending: str | None = None) -> None:
        for client in self._clients:
            if client.close_code is None:
                if ending is not None:
                    # The job's last progress goes out before its end event.
                    last = client.progress.pop(ending, None)
                    if last is not None:
                        self._put(client, last)
                self._put(client, text)

    # ------------------------------------------------------------ progress
    def _tap(
        self, task_id: str, task_name: str, job_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """A progress report, in the reporting thread: keep it as the job's latest; plan one flush."""
        loop = self._loop
        if loop is None or self._closed or not self._clients:
            return
        report = (task_id, task_name, job_id, args, kwargs, time.time())
        with self._pending_lock:
            self._pending[job_id] = report
            if self._flush_planned:
                return
            self._flush_planned = True
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(self._plan_flush)

    def _plan_flush(self) -> None:
        wait = self._last_flush + self.progress_interval - time.monotonic()
        if wait > 0 and self._loop is not None:
            self._loop.call_later(wait, self._flush)
        else:
            self._flush()

    def _flush(self) -> None:
        """On the loop: one message per job with news, encoded once, into every client's progress lane."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            self._flush_planned = False
        self._last_flush = time.monotonic()
        for report in pending.values():
            self._publish_progress(report)

    def _publish_progress(self, report: tuple[str, str, str, tuple[Any, ...], dict[str, Any], float]) -> None:
        task_id, task_name, job_id, args, kwargs, at = report
        message: ProgressMessage = {
            "event": "progress",
            "at": _iso(datetime.fromtimestamp(at, timezone.utc)),
            "task_id": task_id,
            "task_name": task_name,
            "job_id": job_id,
            "args": [_jsonable(value) for value in args],
            "payload": {str(key): _jsonable(value) for key, value in kwargs.items()},
        }
        text = json.dumps(message)
        for client in self._clients:
            if client.close_code is None:
                client.progress[job_id] = text
                client.wake.set()

    def _on_task_event(self, event: Event, task: Task) -> None:
        self._task_message(event, task.id, task.task_name, str(task.status), task.next_run_at)

    def _task_message(self, event: Event, task_id: str, name: str, status: str, next_run: datetime) -> None:
        message: TaskEventMessage = {
            "event": TASK_EVENT_NAMES[event],
            "at": _now(),
            "task_id": task_id,
            "task_name": name,
            "status": status,
            "next_run_at": _iso(next_run),
        }
        self.publish(message)

    def _on_remote(self, data: dict[str, Any]) -> None:
        """An event or progress report another process relayed (shared PostgreSQL mode)."""
        kind = data.get("e")
        if kind == "progress":
            task_id, task_name, job_id, args, kwargs, _at = data["p"]
            self._tap(task_id, task_name, job_id, tuple(args), kwargs)
            return
        try:
            event = Event(kind)
        except ValueError:
            return  # from a newer quiv: not ours to show
        if event.is_job_event:
            self._on_job_event(event, None, job_model(tuple(data["j"])))
        else:
            task_id, name, status, next_run = data["t"]
            self._task_message(event, task_id, name, status, utc(next_run))

    def _on_job_event(self, event: Event, task: Task | None, job: Job) -> None:
        message: JobEventMessage = {
            "event": JOB_EVENT_NAMES[event],
            "at": _now(),
            "task_id": job.task_id,
            "task_name": job.task_name,
            "job_id": job.id,
            "status": str(job.status),
            "started_at": _iso(job.started_at),
            "ended_at": None if job.ended_at is None else _iso(job.ended_at),
            "duration_seconds": job.duration_seconds,
            "error": job.error_message,
            "attempt": job.attempt,
            "scheduled_for": None if job.scheduled_for is None else _iso(job.scheduled_for),
            "worker": job.worker,
        }
        if event is Event.JOB_STARTED:
            self.publish(message)
            return
        self._publish_end(job.id, message)

    def _publish_end(self, job_id: str, message: JobEventMessage) -> None:
        loop = self._loop
        if loop is None or self._closed or not self._clients:
            return
        text = json.dumps(_jsonable(dict(message)))
        if _running_loop() is loop:
            self._end_of_job(job_id, text)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._end_of_job, job_id, text)

    def _end_of_job(self, job_id: str, text: str) -> None:
        with self._pending_lock:
            report = self._pending.pop(job_id, None)
        if report is not None:
            self._publish_progress(report)
        self._fan_out(text, ending=job_id)

    # -------------------------------------------------------- subscription
    def _attach(self) -> None:
        if self._attached:
            return
        self._attached = True
        scheduler = self.scheduler
        for event in Event:
            listener = self._on_job_event if event.is_job_event else self._on_task_event
            scheduler.add_listener(event, listener)
        scheduler._add_progress_tap(self._tap)
        scheduler._subscribe_remote(self._on_remote)

    def _detach(self) -> None:
        if not self._attached:
            return
        self._attached = False
        scheduler = self.scheduler
        for event in Event:
            listener = self._on_job_event if event.is_job_event else self._on_task_event
            scheduler.remove_listener(event, listener)
        scheduler._remove_progress_tap(self._tap)
        scheduler._unsubscribe_remote(self._on_remote)

    # ------------------------------------------------------------- closing
    async def aclose(self, timeout: float | None = None) -> None:
        """Refuse new clients, close every connection (code 1001) and unsubscribe.

        Messages already queued are sent first. Waits up to ``timeout``
        seconds (default: ``send_timeout``) for the connections to end.
        """
        self._closed = True
        if self._clients and self._loop is _running_loop():
            for client in self._clients:
                client.close(SHUTDOWN_CLOSE_CODE, "server shutting down")
            if self._idle is None:
                self._idle = asyncio.Event()
            wait = self.send_timeout if timeout is None else timeout
            if self._clients:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), wait)
        self._detach()
