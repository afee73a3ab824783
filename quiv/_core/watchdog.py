"""Enforces job timeouts on a thread of its own, so a full pool cannot delay them."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from quiv._core.clock import Clock

__all__ = ["Watch", "Watchdog"]

T = TypeVar("T")


class Watch(Generic[T]):
    """One watched item, as returned by :meth:`Watchdog.watch`; give it to :meth:`Watchdog.cancel`.

    It holds the item only while the item is watched: once the item expired
    or was cancelled, the item is dropped, so keeping the watch (on the job
    it watches, say) keeps nothing else alive.
    """

    __slots__ = ("_item", "_watched", "deadline")

    def __init__(self, deadline: float, item: T | None, watched: bool) -> None:
        self.deadline = deadline
        self._item = item
        self._watched = watched

    @property
    def watched(self) -> bool:
        """True until the item expires or the watch is cancelled."""
        return self._watched

    def _end(self) -> T:
        """Stop watching and return the item (called only while watched, so it is there)."""
        item = cast(T, self._item)
        self._item = None
        self._watched = False
        return item

    def __repr__(self) -> str:
        state = "watched" if self._watched else "ended"
        return f"<Watch deadline={self.deadline!r} {state}>"


class Watchdog(Generic[T]):
    """Calls ``expire(item)`` once the clock passes the deadline an item was watched with.

    The thread starts with the first watched item and sleeps until the
    earliest deadline (or until the clock jumps); it never polls.

    :meth:`cancel` stops watching an item (a job that ended before its
    timeout). The heap entry stays behind, holding only the emptied
    :class:`Watch`, until it reaches the top of the heap or cancelled entries
    make up more than half the heap (and at least ``COMPACT_AT`` of them),
    when the heap is rebuilt without them: memory stays proportional to what
    is actually watched, and cancelling costs O(log n) amortised.
    """

    #: Cancelled entries tolerated in the heap before it may be compacted.
    COMPACT_AT = 64

    def __init__(self, clock: Clock, expire: Callable[[T], None]) -> None:
        self._clock = clock
        self._expire = expire
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch[T]]] = []
        self._cancelled = 0  # entries in the heap whose watch was cancelled
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, deadline: float, item: T) -> Watch[T]:
        """Watch ``item`` until ``deadline`` (epoch seconds); keep the result to :meth:`cancel` it."""
        with self._cond:
            if self._closed:
                return Watch(deadline, None, watched=False)
            watch = Watch(deadline, item, watched=True)
            heapq.heappush(self._heap, (deadline, next(self._seq), watch))
            if self._thread is None:
                self._clock.subscribe(self._wake)
                self._thread = threading.Thread(target=self._run, name="quiv-timeouts", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()
            return watch

    def cancel(self, watch: Watch[T]) -> bool:
        """Stop watching: the item is dropped at once and will not be expired.

        Returns False if it was no longer watched: cancelled before, or
        already expired (its ``expire`` call may then still be under way).
        """
        with self._cond:
            if not watch._watched:
                return False
            watch._end()
            self._cancelled += 1
            heap = self._heap
            while heap and not heap[0][2]._watched:  # cheap: the top is cancelled, drop it now
                heapq.heappop(heap)
                self._cancelled -= 1
            if self._cancelled > self.COMPACT_AT and 2 * self._cancelled > len(heap):
                heap[:] = [entry for entry in heap if entry[2]._watched]  # in place: _run holds it
                heapq.heapify(heap)
                self._cancelled = 0
            # No need to wake the thread: if it sleeps until a cancelled deadline, it wakes
            # then, finds nothing due and sleeps again.
            return True

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
                    watch = heapq.heappop(heap)[2]
                    if watch._watched:
                        expired.append(watch._end())
                    else:
                        self._cancelled -= 1
                if not expired:
                    self._cond.wait(self._clock.wait_seconds(heap[0][0]) if heap else None)
                    continue
            for item in expired:
                self._expire(item)

    def close(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._closed = True
            for _, _, watch in self._heap:
                watch._end()
            self._heap.clear()
            self._cancelled = 0
            self._cond.notify()
            thread = self._thread
        self._clock.unsubscribe(self._wake)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
