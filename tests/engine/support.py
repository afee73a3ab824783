"""Helpers shared by the engine tests: recorders, blocking handlers, a main loop on a thread.

Nothing here sleeps for a fixed time: every wait has a deadline and fails the
test when it passes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from quiv import Quiv

__all__ = [
    "DEADLINE",
    "EPOCH",
    "Blocker",
    "Call",
    "Calls",
    "LoopThread",
    "QuivFactory",
    "SilentClock",
    "running_loop",
    "wait_until",
]

T = TypeVar("T")

#: How long any positive wait may take before the test fails.
DEADLINE = 5.0
#: Where the ManualClock of the fixtures starts.
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)

QuivFactory = Callable[..., Quiv]


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; for outcomes no event reports."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)


@dataclass(frozen=True)
class Call:
    """One recorded call: what it received, and where it ran."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    thread: int
    loop: asyncio.AbstractEventLoop | None
    tag: str = ""


@dataclass
class Calls:
    """A thread-safe record of calls, with a deadline-bounded wait."""

    _cond: threading.Condition = field(default_factory=threading.Condition)
    _items: list[Call] = field(default_factory=list)

    def record(self, args: tuple[Any, ...], kwargs: dict[str, Any], tag: str = "") -> None:
        call = Call(args, kwargs, threading.get_ident(), running_loop(), tag)
        with self._cond:
            self._items.append(call)
            self._cond.notify_all()

    def sync(self, tag: str = "") -> Callable[..., None]:
        """A sync callable that records its calls here."""

        def callback(*args: Any, **kwargs: Any) -> None:
            self.record(args, kwargs, tag)

        return callback

    def async_(self, tag: str = "") -> Callable[..., Coroutine[Any, Any, None]]:
        """An async callable that records its calls here (after one suspension point)."""

        async def callback(*args: Any, **kwargs: Any) -> None:
            await asyncio.sleep(0)
            self.record(args, kwargs, tag)

        return callback

    def wait_for(self, count: int, timeout: float = DEADLINE) -> list[Call]:
        """Wait until at least ``count`` calls were recorded; fail the test otherwise."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._items) >= count, timeout)
            items = list(self._items)
        assert ok, f"expected {count} call(s) within {timeout} s, got {len(items)}: {items}"
        return items

    @property
    def items(self) -> list[Call]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Blocker:
    """A handler that reports each start and then blocks until released (or stopped).

    It declares ``_job_id`` and ``_stop_event``; ``stop_seen`` records, per
    job, whether the stop event was set when the handler returned.
    """

    def __init__(self, *, return_on_stop: bool = True) -> None:
        self.release = threading.Event()
        self.started: queue.Queue[str] = queue.Queue()
        self.returned: queue.Queue[str] = queue.Queue()
        self.stop_seen: dict[str, bool] = {}
        self.threads: dict[str, int] = {}
        self._return_on_stop = return_on_stop
        self._lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def __call__(self, _job_id: str, _stop_event: threading.Event) -> None:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.threads[_job_id] = threading.get_ident()
        self.started.put(_job_id)
        try:
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                if self.release.wait(0.005):
                    break
                if self._return_on_stop and _stop_event.is_set():
                    break
            self.stop_seen[_job_id] = _stop_event.is_set()
        finally:
            with self._lock:
                self.running -= 1
            self.returned.put(_job_id)

    def next_start(self, timeout: float = DEADLINE) -> str:
        """The id of the next job that started; fail the test if none does in time."""
        try:
            return self.started.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no job of the blocking handler started within {timeout} s") from None

    def no_start_within(self, seconds: float) -> bool:
        """True if no further job started in ``seconds`` (a bounded wait for a negative outcome)."""
        try:
            job_id = self.started.get(timeout=seconds)
        except queue.Empty:
            return True
        self.started.put(job_id)
        return False


class LoopThread:
    """An asyncio loop running forever on its own thread: the application's main loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="test-main-loop", daemon=True)
        self.thread.start()
        assert self._ready.wait(DEADLINE), "the test main loop did not start"
        ident = self.thread.ident
        assert ident is not None
        self.ident: int = ident

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``func`` inside the running loop (a plain callback) and return its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            try:
                future.set_result(func(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(runner)
        return future.result(DEADLINE)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE)

    def settle(self) -> None:
        """Return once every callback queued on the loop before this call has run."""
        for _ in range(3):  # callbacks may queue more callbacks; give them a few turns
            self.call(lambda: None)

    def close(self) -> None:
        """Cancel what is pending, stop the loop and close it."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():

            async def cancel_pending() -> None:
                me = asyncio.current_task()
                pending = [task for task in asyncio.all_tasks() if task is not me]
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await self.loop.shutdown_asyncgens()
                await self.loop.shutdown_default_executor()

            self.run(cancel_pending())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(DEADLINE)
            assert not self.thread.is_alive(), "the test main loop did not stop"
        self.loop.close()


class SilentClock:
    """A test clock (quiv's ``Clock`` protocol) whose time moves without waking anyone.

    This is what the system clock does: time passes while the scheduler
    sleeps. ``advance(..., wake=True)`` also wakes the subscribers, like
    ``quiv.testing.ManualClock``.
    """

    def __init__(self, start: datetime = EPOCH) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def wait_seconds(self, deadline: float) -> float | None:
        return None

    def subscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if wake in self._subscribers:
                self._subscribers.remove(wake)

    def advance(self, seconds: float, *, wake: bool = False) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            subscribers = list(self._subscribers) if wake else []
        for callback in subscribers:
            callback()
