"""The timeout watchdog, driven by a ManualClock: expiry, cancellation, and what it keeps alive.

Nothing sleeps: time moves with ``ManualClock.advance``, which wakes the
watchdog's thread. To know that the thread has dealt with a move, each test
watches a *probe* whose deadline is the new time: the thread expires
everything due in one pass, in deadline order, so once the probe has been
expired, whatever was not expired with it was not due.
"""

from __future__ import annotations

import gc
import queue
import weakref
from collections.abc import Iterator
from datetime import timedelta

import pytest

from quiv._core.watchdog import Watchdog
from quiv.testing import ManualClock

from .support import DEADLINE, EPOCH


class Item:
    """Stands in for a job's state: something worth releasing."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Item({self.name!r})"


class Harness:
    def __init__(self) -> None:
        self.clock = ManualClock(EPOCH)
        self.expired: queue.Queue[Item] = queue.Queue()
        self.dog: Watchdog[Item] = Watchdog(self.clock, self.expired.put)

    def at(self, seconds: float) -> float:
        """The epoch timestamp ``seconds`` after the start."""
        return (EPOCH + timedelta(seconds=seconds)).timestamp()

    def move_to(self, seconds: float) -> list[Item]:
        """Move the clock to ``seconds`` after the start; the items expired on the way, probe left out."""
        probe = Item(f"probe@{seconds}")
        self.dog.watch(self.at(seconds), probe)
        self.clock.set(EPOCH + timedelta(seconds=seconds))
        seen: list[Item] = []
        while True:
            try:
                item = self.expired.get(timeout=DEADLINE)
            except queue.Empty:
                raise AssertionError(f"the probe at {seconds} s never expired; got {seen}") from None
            if item is probe:
                return seen
            seen.append(item)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.dog.close()


def test_an_item_expires_once_the_clock_passes_its_deadline(h: Harness) -> None:
    a = Item("a")
    h.dog.watch(h.at(10), a)
    assert h.move_to(9) == []
    assert h.move_to(10) == [a]
    assert h.move_to(100) == []


def test_a_cancelled_item_is_never_expired(h: Harness) -> None:
    a, b = Item("a"), Item("b")
    watch_a = h.dog.watch(h.at(10), a)
    h.dog.watch(h.at(20), b)
    assert h.dog.cancel(watch_a) is True
    assert h.move_to(30) == [b]


def test_cancelling_the_earliest_item_leaves_the_next_one_on_time(h: Harness) -> None:
    a, b, c = Item("a"), Item("b"), Item("c")
    watch_a = h.dog.watch(h.at(5), a)
    h.dog.watch(h.at(10), b)
    h.dog.watch(h.at(20), c)
    h.dog.cancel(watch_a)
    assert h.move_to(9) == []
    assert h.move_to(10) == [b]
    assert h.move_to(20) == [c]


def test_cancel_says_whether_the_item_was_still_watched(h: Harness) -> None:
    a, b = Item("a"), Item("b")
    watch_a = h.dog.watch(h.at(10), a)
    watch_b = h.dog.watch(h.at(20), b)
    assert [watch_a.watched, watch_b.watched] == [True, True]
    assert h.dog.cancel(watch_a) is True
    assert h.dog.cancel(watch_a) is False  # twice is harmless
    assert [watch_a.watched, watch_b.watched] == [False, True]
    assert h.move_to(20) == [b]
    assert [watch_a.watched, watch_b.watched] == [False, False]
    assert h.dog.cancel(watch_b) is False  # it already expired


def test_a_cancelled_item_is_released_at_once(h: Harness) -> None:
    item = Item("long timeout, short job")
    ref = weakref.ref(item)
    watch = h.dog.watch(h.at(3600), item)
    h.dog.cancel(watch)
    del item
    gc.collect()
    assert ref() is None, "the watchdog still holds a cancelled item"
    assert h.move_to(3600) == []


def test_an_expired_item_is_released_even_if_its_watch_is_kept(h: Harness) -> None:
    item = Item("a")
    ref = weakref.ref(item)
    watch = h.dog.watch(h.at(10), item)
    assert h.move_to(10) == [item]
    del item
    gc.collect()
    assert ref() is None
    assert not watch.watched


def test_many_watch_and_cancel_cycles_keep_the_heap_bounded(h: Harness) -> None:
    """Short jobs with long timeouts, under one long-lived job whose deadline comes first."""
    long_lived = Item("long-lived")
    h.dog.watch(h.at(60), long_lived)
    kept: list[Item] = []
    largest = 0
    for i in range(20_000):
        item = Item(str(i))
        watch = h.dog.watch(h.at(3600 + i), item)
        if i % 1000 == 0:
            kept.append(item)  # a few stay watched
        else:
            h.dog.cancel(watch)
        largest = max(largest, len(h.dog._heap))
    assert largest < 1_000, f"the heap grew to {largest} entries for {len(kept) + 1} watched items"
    assert h.move_to(60) == [long_lived]
    assert h.move_to(3600 + 20_000) == kept


def test_cancel_from_many_items_in_random_order_expires_exactly_the_rest(h: Harness) -> None:
    items = [Item(str(i)) for i in range(500)]
    watches = [h.dog.watch(h.at(10 + (i * 7919) % 500), item) for i, item in enumerate(items)]
    cancelled = {i for i in range(500) if (i * 31) % 3}
    for i in sorted(cancelled, key=lambda i: (i * 104729) % 500):
        assert h.dog.cancel(watches[i])
    rest = [items[i] for i in range(500) if i not in cancelled]
    expired = h.move_to(600)
    assert sorted(expired, key=lambda item: int(item.name)) == rest
    # They expired in deadline order.
    deadlines = [10 + (int(item.name) * 7919) % 500 for item in expired]
    assert deadlines == sorted(deadlines)


def test_close_releases_what_is_watched_and_cancel_after_it_is_harmless(h: Harness) -> None:
    item = Item("a")
    ref = weakref.ref(item)
    watch = h.dog.watch(h.at(10), item)
    h.dog.close()
    del item
    gc.collect()
    assert ref() is None
    assert h.dog.cancel(watch) is False
    assert not h.dog.watch(h.at(20), Item("late")).watched
