"""Delivering callbacks: onto the main asyncio loop when there is one, else here.

Progress callbacks, listeners and ``run_on_main`` all go through a
:class:`Dispatcher`. With a main loop available, work is appended to a
:class:`Mailbox` that wakes the loop once per batch (not once per message)
and drains in short time slices, so a flood of progress never starves the
loop's other callbacks. Without a loop, sync callbacks run on the calling
thread and async ones in a temporary event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Dispatcher", "Mailbox", "in_job_thread", "run_coroutine_blocking"]

T = TypeVar("T")

#: How long one drain of the mailbox may hold the main loop before yielding.
SLICE_SECONDS = 0.002

_thread_state = threading.local()


def in_job_thread() -> bool:
    """True while the current thread is running a quiv job."""
    return getattr(_thread_state, "in_job", False)


def set_in_job_thread(value: bool) -> None:
    _thread_state.in_job = value


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, unless it is a job's private loop."""
    if in_job_thread():
        return None
    return asyncio._get_running_loop()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def run_coroutine_blocking(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to completion in a temporary event loop and return its result.

    When this thread already runs a loop (an async handler reporting progress
    with no main loop around), the temporary loop runs on a helper thread
    while this one waits, because one thread cannot run two loops.
    """
    coro: Coroutine[Any, Any, T] = awaitable if asyncio.iscoroutine(awaitable) else _await(awaitable)
    if asyncio._get_running_loop() is None:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the waiting thread
            box["error"] = exc

    helper = threading.Thread(target=target, name="quiv-temp-loop", daemon=True)
    helper.start()
    helper.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


class _OrderedChannel:
    """Awaits one task's async progress callbacks one after another, in order."""

    __slots__ = ("_items", "_mailbox", "_runner")

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._items: deque[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any]]] = deque()
        self._runner: asyncio.Task[None] | None = None

    def push(
        self, callback: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._items.append((callback, args, kwargs))
        if self._runner is None:
            self._runner = self._mailbox.loop.create_task(self._drain())

    async def _drain(self) -> None:
        items = self._items
        logger = self._mailbox.logger
        started = time.perf_counter()
        try:
            while items:
                callback, args, kwargs = items.popleft()
                try:
                    await callback(*args, **kwargs)
                except Exception:
                    logger.exception("progress callback %r raised", callback)
                if time.perf_counter() - started > SLICE_SECONDS:
                    await asyncio.sleep(0)
                    started = time.perf_counter()
        finally:
            self._runner = None


_NO_KWARGS: dict[str, Any] = {}
_Item = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class Mailbox:
    """A FIFO of calls to run on one event loop, woken once per batch.

    Producers append to one deque, without a lock; the loop pops from its
    other end in slices of at most ``SLICE_SECONDS``, so a flood cannot
    starve the loop's other callbacks. A drain is scheduled only when none is
    (``_scheduled``), so the loop is woken once per batch, not once per
    message. A producer on another thread that finds ``HIGH_WATER`` items
    waiting is held until the loop has worked the queue down to half that
    (so memory stays bounded), and every ``YIELD_EVERY`` posts it offers the
    GIL to the loop thread.

    Why no message is ever stranded (appended, yet no drain coming for it).
    Each step below is atomic and all threads see them in one order (the GIL;
    ``deque.append``/``popleft``/``len`` are atomic on their own):

    * The queue is one deque for the mailbox's whole life. A producer that
      read ``_incoming`` a moment ago therefore appends into the live queue:
      there is no stale buffer to append into. (An earlier design swapped an
      ``_incoming`` and a ``_pending`` deque; a producer that read
      ``_incoming`` just before a swap appended into ``_pending`` after the
      drain's last look at it, and the message sat there unrun.)
    * A producer appends (A) and then reads ``_scheduled`` (C). The drain
      stops only by clearing ``_scheduled`` (W) and *then* finding the queue
      empty (E), under the lock. If C saw True, then A < C < W < E, so E sees
      the message and the drain carries on. If C saw False, the producer
      takes the lock and schedules a drain unless one was scheduled since
      (by another producer, or by the drain re-arming after E found items):
      either way a drain runs after A.
    * ``_scheduled`` is only ever set under the lock, so at most one drain is
      queued or running at a time; ``post()`` takes the lock only when it
      reads ``_scheduled`` as False, i.e. about once per batch.
    * A producer is held only after seeing ``HIGH_WATER`` items queued under
      the lock, and clears ``_room`` in the same locked step. Its own message
      is among them, so a drain runs after that step (see above); the drain
      sets ``_room`` once the queue is down to ``HIGH_WATER // 2``, and in
      any case, under the lock, when it stops. So every hold ends, and a
      drain that stops just before the producer takes the lock leaves it
      nothing to be held for.
    """

    HIGH_WATER = 10_000
    YIELD_EVERY = 256

    def __init__(
        self, loop: asyncio.AbstractEventLoop, logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        self.loop = loop
        self.logger = logger
        self.channels: dict[object, _OrderedChannel] = {}
        self._incoming: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._room = threading.Event()
        self._room.set()
        self._scheduled = False
        self._posts = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def post(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] = _NO_KWARGS
    ) -> bool:
        """Queue ``func(*args, **kwargs)`` for the loop; False if the loop can no longer take it.

        The append itself takes no lock; the lock is only taken to schedule a
        drain when none is pending, and at the high-water mark (see the class
        docstring for why no message can be stranded).
        """
        incoming = self._incoming
        incoming.append((func, args, kwargs))
        if not self._scheduled:
            with self._lock:
                wake = not self._scheduled
                self._scheduled = True
            if wake:
                try:
                    self.loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # the loop was closed under us
                    with self._lock:
                        self._scheduled = False
                        incoming.clear()
                        self._room.set()
                    return False
        self._posts += 1  # approximate under several producers, which is fine
        if len(incoming) >= self.HIGH_WATER:
            if asyncio._get_running_loop() is not self.loop:
                with self._lock:
                    full = len(incoming) >= self.HIGH_WATER
                    if full:
                        self._room.clear()
                if full:
                    self._wait_for_room()
        elif not self._posts % self.YIELD_EVERY and asyncio._get_running_loop() is not self.loop:
            time.sleep(0)  # offer the GIL to the loop's thread
        return True

    def _wait_for_room(self) -> None:
        while not self._room.wait(0.05):
            if self.loop.is_closed() or not self.loop.is_running():
                return  # nobody will drain: stop holding the producer back

    def _drain(self) -> None:
        deadline = time.perf_counter() + SLICE_SECONDS
        logger = self.logger
        incoming = self._incoming
        room = self._room
        while True:
            for _ in range(min(64, len(incoming))):
                func, args, kwargs = incoming.popleft()
                try:
                    func(*args, **kwargs)
                except Exception:
                    logger.exception("callback %r raised on the main loop", func)
                except BaseException:
                    # Not ours to swallow (SystemExit, KeyboardInterrupt...), but _scheduled
                    # still promises a drain to the producers: keep that promise.
                    self.loop.call_soon(self._drain)
                    raise
            if not incoming:
                with self._lock:
                    self._scheduled = False  # first clear the flag (W), then look (E): see the class doc
                    if not incoming:
                        if not room.is_set():
                            room.set()
                        return
                    self._scheduled = True  # a post raced W: it relies on this drain
            elif not room.is_set() and len(incoming) <= self.HIGH_WATER // 2:
                room.set()
            if time.perf_counter() > deadline:
                # Give the loop back; the flag stays set so producers do not reschedule.
                self.loop.call_soon(self._drain)
                return

    # --- helpers that run on the loop ------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], what: object) -> None:
        """Start ``coro`` as a task on the loop, keeping it alive and logging its failure."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                self.logger.error("%r raised on the main loop", what, exc_info=finished.exception())

        task.add_done_callback(done)

    def channel(self, key: object) -> _OrderedChannel:
        """The ordered channel for ``key`` (one per task), created on first use."""
        channel = self.channels.get(key)
        if channel is None:
            channel = self.channels.setdefault(key, _OrderedChannel(self))
        return channel


class Dispatcher:
    """Finds the main loop and delivers callbacks along the four documented paths."""

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        main_loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.logger = logger
        self._mailbox: Mailbox | None = Mailbox(main_loop, logger) if main_loop is not None else None
        self._explicit = main_loop is not None

    # --- main loop resolution --------------------------------------------
    def note_caller(self, *, bind: bool = False) -> None:
        """Adopt the caller's running loop as the main loop if none is known yet.

        With ``bind`` (from ``start()``) the caller's loop replaces one that was
        only adopted implicitly; a loop given as ``main_loop=`` is never replaced.
        """
        box = self._mailbox
        if box is None or box.loop.is_closed() or (bind and not self._explicit):
            loop = _running_loop()
            if loop is not None and (box is None or box.loop is not loop):
                self._mailbox = Mailbox(loop, self.logger)

    def mailbox(self) -> Mailbox | None:
        """The mailbox of a usable main loop, or None when there is none right now."""
        box = self._mailbox
        if box is None:
            self.note_caller()
            box = self._mailbox
            if box is None:
                return None
        loop = box.loop
        if loop.is_closed():
            self._mailbox = None
            self.note_caller()
            return self._mailbox
        if not loop.is_running():
            return None
        return box

    @property
    def main_loop(self) -> asyncio.AbstractEventLoop | None:
        box = self.mailbox()
        return box.loop if box is not None else None

    # --- delivery ---------------------------------------------------------
    def call_here(
        self, callback: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], what: str
    ) -> None:
        """Run a callback on this thread (a temporary loop for async ones), logging failures."""
        try:
            result = callback(*args, **kwargs)
            if result is not None and (asyncio.iscoroutine(result) or isinstance(result, Awaitable)):
                run_coroutine_blocking(result)
        except Exception:
            self.logger.exception("%s %r raised", what, callback)

    def progress(
        self,
        key: object,
        callback: Callable[..., Any],
        is_async: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Deliver one progress report; never raises."""
        box = self._mailbox
        if box is None or not box.loop.is_running():
            box = self.mailbox()
        if box is not None:
            if is_async:
                if box.post(box.channel(key).push, (callback, args, kwargs)):
                    return
            elif box.post(callback, args, kwargs):  # straight to the callback: no wrapper frame
                return
        self.call_here(callback, args, kwargs, "progress callback")

    def forget(self, key: object) -> None:
        """Drop the progress channel of a task that is gone."""
        box = self._mailbox
        if box is not None:
            box.channels.pop(key, None)

    def emit(self, listeners: tuple[Callable[..., Any], ...], args: tuple[Any, ...]) -> None:
        """Deliver an event to ``listeners`` in registration order; never raises."""
        box = self.mailbox()
        if box is not None and box.post(self._deliver_on_loop, (listeners, args)):
            return
        for listener in listeners:
            self.call_here(listener, args, {}, "listener")

    def _deliver_on_loop(self, listeners: tuple[Callable[..., Any], ...], args: tuple[Any, ...]) -> None:
        box = self._mailbox
        for listener in listeners:
            try:
                result = listener(*args)
            except Exception:
                self.logger.exception("listener %r raised", listener)
                continue
            if box is not None and asyncio.iscoroutine(result):
                box.spawn(result, listener)
