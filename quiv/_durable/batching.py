"""Group commit: threads that each have a write to make share one transaction.

The first thread to arrive becomes the *leader*: it takes every write waiting
(its own included) and makes them in one call. Threads that arrive while it
works queue up; when the leader is done, it hands the role to the first of
them, which takes the whole queue in turn. A lone write goes out at once (no
timer, no waiting for company), and under load the cost of a transaction is
shared by everything that queued during the previous one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


class _Entry(Generic[T, R]):
    __slots__ = ("error", "finished", "item", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.finished = False
        #: Set when the write is made, or when this thread is to lead the next batch.
        self.wake = threading.Event()


class GroupCommit(Generic[T, R]):
    """Run ``write`` over batches of the items submitted concurrently; see the module docstring.

    ``write`` gets the items in arrival order and returns one result per item,
    in the same order. If it raises, every item of that batch gets the
    exception.
    """

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R]], *, limit: int = 256) -> None:
        self._write = write
        self._limit = limit
        self._lock = threading.Lock()
        self._queue: list[_Entry[T, R]] = []
        self._busy = False

    def submit(self, item: T) -> R:
        """Write ``item`` (in a batch with whatever else is waiting) and return its result."""
        entry: _Entry[T, R] = _Entry(item)
        with self._lock:
            self._queue.append(entry)
            lead = not self._busy
            self._busy = True
        if not lead:
            entry.wake.wait()
        while not entry.finished:  # leading: the first batch holds this entry (it is first in line)
            self._lead_once()
        return self._outcome(entry)

    def _lead_once(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
        try:
            results = self._write([e.item for e in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} writes returned {len(results)} results")
        except BaseException as exc:  # every waiter of the batch hears of it, then it goes on
            for e in batch:
                e.error = exc
        else:
            for e, result in zip(batch, results, strict=True):
                e.result = result
        with self._lock:
            following = self._queue[0] if self._queue else None
            if following is None:
                self._busy = False
        for e in batch:
            e.finished = True
            e.wake.set()
        if following is not None:
            following.wake.set()  # not finished: its thread leads the next batch

    @staticmethod
    def _outcome(entry: _Entry[T, R]) -> R:
        if entry.error is not None:
            raise entry.error
        return entry.result  # type: ignore[return-value]
