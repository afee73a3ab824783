"""A small pool of daemon worker threads, spawned on demand.

The scheduler decides how many jobs run at once; the pool only supplies
threads. Workers are daemons so a handler that never returns cannot keep
the interpreter from exiting, and a worker that finishes a job may hand
itself the next due job directly (``run`` returns it) instead of going
back through the scheduler thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WorkerPool"]

T = TypeVar("T")


class WorkerPool(Generic[T]):
    """Runs items with ``run(item) -> next item or None`` on up to ``size`` threads."""

    def __init__(self, size: int, run: Callable[[T], T | None], name: str = "quiv-worker") -> None:
        self._size = size
        self._run = run
        self._name = name
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, item: T) -> None:
        """Hand ``item`` to an idle worker, starting a thread if none is idle."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self._idle > 0:
                self._idle -= 1
            else:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put(item)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            while item is not None:
                item = self._run(item)
            with self._lock:
                if self._closed:
                    return
                self._idle += 1

    def close(self, timeout: float) -> list[threading.Thread]:
        """Stop the threads; wait up to ``timeout`` s; return those still alive."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t for t in threads if t.is_alive()]
