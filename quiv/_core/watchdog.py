"""Enforces job timeouts on a thread of its own, so a full pool cannot delay them."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from quiv._core.clock import Clock

__all__ = ["Watchdog"]

T = TypeVar("T")


class Watchdog(Generic[T]):
    """Calls ``expire(item)`` once the clock passes the deadline an item was watched with.

    The thread starts with the first watched item and sleeps until the
    earliest deadline (or until the clock jumps); it never polls.
    """

    def __init__(self, clock: Clock, expire: Callable[[T], None]) -> None:
        self._clock = clock
        self._expire = expire
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, deadline: float, item: T) -> object:
        """Watch ``item`` until ``deadline``; return a handle for :meth:`unwatch`."""
        entry: list[Any] = [item]
        with self._cond:
            if self._closed:
                return entry
            heapq.heappush(self._heap, (deadline, next(self._seq), entry))
            if self._thread is None:
                self._clock.subscribe(self._wake)
                self._thread = threading.Thread(target=self._run, name="quiv-timeouts", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is entry:
                self._cond.notify()
        return entry

    def unwatch(self, handle: object) -> None:
        """Stop watching: the item is released now, its heap slot later."""
        with self._cond:
            assert isinstance(handle, list)
            handle.clear()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        heap = self._heap
        while True:
            expired: list[T] = []
            with self._cond:
                if self._closed:
                    return
                now = self._clock.now().timestamp()
                while heap and heap[0][0] <= now:
                    entry = heapq.heappop(heap)[2]
                    if entry:
                        expired.append(entry[0])
                while heap and not heap[0][2]:
                    heapq.heappop(heap)
                if not expired:
                    self._cond.wait(self._clock.wait_seconds(heap[0][0]) if heap else None)
                    continue
            for item in expired:
                self._expire(item)

    def close(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        self._clock.unsubscribe(self._wake)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
