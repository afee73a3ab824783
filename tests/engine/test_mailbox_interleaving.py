"""Forced interleavings of ``Mailbox.post`` (a producer thread) against ``Mailbox._drain`` (the loop).

Each test pins one interleaving of the two sides, so a race shows up on every
run rather than once in a million. The pause points come from stand-ins that
replace the mailbox's own queue(s) and lock after construction: a deque whose
``append`` can stop the producer after it has read the queue attribute but
before the item goes in, and a lock whose ``__enter__`` can stop a thread just
before it takes the lock. The production code carries no hook at all, so
``post()`` costs nothing extra for being testable.

Every pause has a deadline (``DEADLINE``); a test that goes wrong fails instead
of hanging.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import pytest

from quiv._delivery.dispatch import Mailbox

from .support import DEADLINE, Calls, LoopThread, wait_until

LOGGER = logging.getLogger("quiv.tests.mailbox")
PRODUCER = "test-producer"


class Gate:
    """A pause point: the thread that reaches it says so, then waits to be let go."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._arrived = threading.Event()
        self._go = threading.Event()

    def pause(self) -> None:
        self._arrived.set()
        assert self._go.wait(DEADLINE), f"{self.name}: never released"

    def wait_arrived(self) -> None:
        assert self._arrived.wait(DEADLINE), f"{self.name}: never reached"

    @property
    def reached(self) -> bool:
        return self._arrived.is_set()

    def release(self) -> None:
        self._go.set()


@dataclass
class _Rule:
    point: str
    when: Callable[[], bool]
    gate: Gate
    fired: bool = False


@dataclass
class Seams:
    """The pause points armed on one mailbox; each rule fires once, on its first match."""

    box: Mailbox
    rules: list[_Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, point: str, when: Callable[[], bool]) -> Gate:
        gate = Gate(point)
        with self._lock:
            self.rules.append(_Rule(point, when, gate))
        return gate

    def reached(self, point: str) -> None:
        with self._lock:
            rule = next((r for r in self.rules if r.point == point and not r.fired and r.when()), None)
            if rule is not None:
                rule.fired = True
        if rule is not None:
            rule.gate.pause()

    def release_all(self) -> None:
        with self._lock:
            for rule in self.rules:
                rule.gate.release()

    def queued(self) -> int:
        """Items waiting in the mailbox, whichever of its queues they are in."""
        return sum(len(value) for value in vars(self.box).values() if isinstance(value, PausingDeque))


class PausingDeque(deque[Any]):
    """A deque whose ``append`` passes the ``"append"`` pause point before appending."""

    def __init__(self, items: Iterable[Any], seams: Seams) -> None:
        super().__init__(items)
        self.seams = seams

    def append(self, item: Any) -> None:
        self.seams.reached("append")
        super().append(item)


class PausingLock:
    """A lock whose acquisition passes the ``"lock"`` pause point first."""

    def __init__(self, seams: Seams) -> None:
        self.seams = seams
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.seams.reached("lock")
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def instrument(box: Mailbox) -> Seams:
    """Swap the mailbox's deques and lock for pausing stand-ins (before anything is posted)."""
    seams = Seams(box)
    for name, value in list(vars(box).items()):
        if isinstance(value, deque):
            setattr(box, name, PausingDeque(value, seams))
    box._lock = cast(threading.Lock, PausingLock(seams))
    return seams


@pytest.fixture
def seams(loop_thread: LoopThread) -> Iterator[Seams]:
    """A mailbox on the test main loop, instrumented; every gate is released at the end."""
    armed = instrument(Mailbox(loop_thread.loop, LOGGER))
    try:
        yield armed
    finally:
        armed.release_all()


def on_thread(name: str) -> Callable[[], bool]:
    return lambda: threading.current_thread().name == name


def hold_loop(loop_thread: LoopThread) -> threading.Event:
    """Keep the loop busy in one callback until the returned event is set."""
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(DEADLINE)

    loop_thread.loop.call_soon_threadsafe(hold)
    assert holding.wait(DEADLINE), "the loop never ran the holding callback"
    return release


class Producer:
    """Posts on a thread of its own and records what each post returned."""

    def __init__(self, box: Mailbox, posts: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
        self.results: list[bool] = []
        self._box = box
        self._posts = posts
        self.thread = threading.Thread(target=self._run, name=PRODUCER, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for func, args in self._posts:
            self.results.append(self._box.post(func, args))

    def join(self) -> list[bool]:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the producer is still stuck in post()"
        return self.results


def received(calls: Calls, count: int) -> list[Any]:
    return [call.args[0] for call in calls.wait_for(count)]


def drain_at_its_last_look(seams: Seams, loop_thread: LoopThread) -> Gate:
    """Stop the drain when it is about to conclude there is nothing left (queues empty)."""
    return seams.arm("lock", lambda: threading.get_ident() == loop_thread.ident and seams.queued() == 0)


def test_an_append_racing_the_drains_last_look_is_not_stranded(loop_thread: LoopThread, seams: Seams) -> None:
    """The producer reads the queue, the drain swaps it out, runs it dry and is about to stop;
    the producer's append lands now and its check still sees a drain scheduled."""
    box, calls = seams.box, Calls()
    record = calls.sync()
    producer_read = seams.arm("append", on_thread(PRODUCER))
    drain_ending = drain_at_its_last_look(seams, loop_thread)

    loop_free = hold_loop(loop_thread)
    assert box.post(record, ("a",))  # schedules a drain, queued behind the holding callback
    producer = Producer(box, [(record, ("b",))])
    producer_read.wait_arrived()  # the producer holds the queue it is about to append to

    loop_free.set()
    drain_ending.wait_arrived()  # "a" ran and the drain saw nothing more to do
    assert received(calls, 1) == ["a"]

    producer_read.release()
    assert producer.join() == [True]  # "b" is in, and post() saw the drain still scheduled
    drain_ending.release()

    assert received(calls, 2) == ["a", "b"]


def test_one_producers_messages_keep_their_order_when_an_append_races_the_drain(
    loop_thread: LoopThread, seams: Seams
) -> None:
    """Same race, but the producer posts again before the drain goes on: FIFO must hold."""
    box, calls = seams.box, Calls()
    record = calls.sync()
    producer_read = seams.arm("append", on_thread(PRODUCER))
    drain_ending = drain_at_its_last_look(seams, loop_thread)

    loop_free = hold_loop(loop_thread)
    assert box.post(record, ("a",))
    producer = Producer(box, [(record, ("b",)), (record, ("c",))])
    producer_read.wait_arrived()

    loop_free.set()
    drain_ending.wait_arrived()
    producer_read.release()
    assert producer.join() == [True, True]
    drain_ending.release()

    assert received(calls, 3) == ["a", "b", "c"]


def test_a_post_to_an_idle_mailbox_racing_the_drains_last_look_runs(
    loop_thread: LoopThread, seams: Seams
) -> None:
    """The producer appends just before the drain's final look, with no stale queue involved."""
    box, calls = seams.box, Calls()
    record = calls.sync()
    drain_ending = drain_at_its_last_look(seams, loop_thread)

    assert box.post(record, ("a",))
    drain_ending.wait_arrived()
    producer = Producer(box, [(record, ("b",))])
    assert producer.join() == [True]
    drain_ending.release()

    assert received(calls, 2) == ["a", "b"]


# --- the high-water mark -----------------------------------------------------


def test_a_producer_held_at_high_water_is_let_go_once_the_loop_drains(
    loop_thread: LoopThread, seams: Seams
) -> None:
    box, calls = seams.box, Calls()
    record = calls.sync()
    box.HIGH_WATER = 8
    count = 3 * box.HIGH_WATER + 5

    loop_free = hold_loop(loop_thread)
    producer = Producer(box, [(record, (i,)) for i in range(count)])
    assert wait_until(lambda: not box._room.is_set()), "the producer was never held"
    # The post that found HIGH_WATER items waiting has not returned: the loop is busy.
    assert len(producer.results) == box.HIGH_WATER - 1
    assert producer.thread.is_alive()

    loop_free.set()
    assert producer.join() == [True] * count
    assert received(calls, count) == list(range(count))


def test_a_hold_decided_while_the_drain_empties_the_mailbox_does_not_hold_forever(
    loop_thread: LoopThread, seams: Seams
) -> None:
    """The producer sees HIGH_WATER items, but the drain takes them all before it gets the lock."""
    box, calls = seams.box, Calls()
    record = calls.sync()
    box.HIGH_WATER = 4
    full = seams.arm("lock", lambda: on_thread(PRODUCER)() and seams.queued() >= box.HIGH_WATER)

    loop_free = hold_loop(loop_thread)
    producer = Producer(box, [(record, (i,)) for i in range(box.HIGH_WATER + 2)])
    full.wait_arrived()
    loop_free.set()
    assert received(calls, box.HIGH_WATER) == list(range(box.HIGH_WATER))
    loop_thread.settle()  # the drain has finished and gone idle

    full.release()
    assert producer.join() == [True] * (box.HIGH_WATER + 2)
    assert received(calls, box.HIGH_WATER + 2) == list(range(box.HIGH_WATER + 2))


def test_an_append_racing_the_drain_at_high_water_is_not_stranded(
    loop_thread: LoopThread, seams: Seams
) -> None:
    """The racing append is also the one that reaches HIGH_WATER: it must run and not hold forever."""
    box, calls = seams.box, Calls()
    record = calls.sync()
    box.HIGH_WATER = 2
    producer_read = seams.arm("append", on_thread(PRODUCER))
    drain_ending = drain_at_its_last_look(seams, loop_thread)

    loop_free = hold_loop(loop_thread)
    assert box.post(record, ("a",))
    producer = Producer(box, [(record, ("b",)), (record, ("c",))])
    producer_read.wait_arrived()
    loop_free.set()
    drain_ending.wait_arrived()
    producer_read.release()
    assert wait_until(lambda: len(producer.results) == 2 or not box._room.is_set())
    drain_ending.release()

    assert producer.join() == [True, True]
    assert received(calls, 3) == ["a", "b", "c"]


def test_posts_from_the_loop_itself_are_never_held(loop_thread: LoopThread, seams: Seams) -> None:
    box, calls = seams.box, Calls()
    record = calls.sync()
    box.HIGH_WATER = 4
    count = 3 * box.HIGH_WATER

    def post_from_the_loop() -> list[bool]:
        return [box.post(record, (i,)) for i in range(count)]

    assert loop_thread.call(post_from_the_loop) == [True] * count
    assert received(calls, count) == list(range(count))


# --- a callback that raises past the drain -----------------------------------


class Escape(BaseException):
    """Not an ``Exception``: the drain does not swallow it, the loop reports it."""


def test_a_callback_raising_a_base_exception_does_not_strand_the_messages_after_it(
    loop_thread: LoopThread, seams: Seams
) -> None:
    box, calls = seams.box, Calls()
    record = calls.sync()
    reported: list[object] = []
    loop_thread.loop.set_exception_handler(lambda loop, context: reported.append(context.get("exception")))

    def escape() -> None:
        raise Escape

    loop_free = hold_loop(loop_thread)
    assert box.post(escape, ())
    assert box.post(record, ("after",))
    loop_free.set()

    assert received(calls, 1) == ["after"]
    assert box.post(record, ("later",))
    assert received(calls, 2) == ["after", "later"]
    assert [type(exc) for exc in reported] == [Escape]
