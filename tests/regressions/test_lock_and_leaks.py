"""More regression tests for the core redesign (defects 6b, 7 and 10b of the issue).

6b and 10b are leaks inside the scheduler, so their tests look at its parts
(the waiter registry, the main loop's progress channels); 7 is seen from
outside: user code (``__eq__``, ``__repr__``) must never run under the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from quiv import Event, Quiv

DEADLINE = 5.0


def _noop() -> None: ...


def _in_thread(call: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


class _Gate:
    """User code that announces it started, then waits to be let go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        assert self.release.wait(DEADLINE), "the test never let the user code go"

    @contextlib.contextmanager
    def holding(self, call: Callable[[], Any]) -> Iterator[None]:
        """Run ``call`` in a thread until its user code is held here; let it go when the block ends."""
        thread = _in_thread(call)
        assert self.entered.wait(DEADLINE), "the user code was never reached"
        try:
            yield
        finally:
            self.release.set()
            thread.join(DEADLINE)


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv(pool_size=2)


def _returns_promptly(call: Callable[[], Any]) -> bool:
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    _in_thread(run)
    return done.wait(DEADLINE)


def test_a_listener_whose_eq_blocks_does_not_stall_other_calls(scheduler: Quiv) -> None:
    """Defect 7: add_listener compared callbacks with ``==`` under the scheduler lock."""
    gate = _Gate()

    class Sticky:
        def __call__(self, *args: object) -> None: ...

        def __eq__(self, other: object) -> bool:
            gate.hold()
            return other is self

        __hash__ = object.__hash__

    task_id = scheduler.add_task("t", _noop, interval=60, delay=60)
    scheduler.add_listener(Event.TASK_PAUSED, Sticky())
    with gate.holding(lambda: scheduler.add_listener(Event.TASK_PAUSED, _noop)):
        assert _returns_promptly(lambda: scheduler.get_task(task_id)), "get_task() waited for a user __eq__"


def test_a_bad_task_id_whose_repr_blocks_does_not_stall_other_calls(scheduler: Quiv) -> None:
    """Defect 7: the id check built its error message (``repr``) with the lock held."""
    gate = _Gate()

    class BadId:
        def __repr__(self) -> str:
            gate.hold()
            return "BadId()"

    task_id = scheduler.add_task("t", _noop, interval=60, delay=60)
    errors: list[BaseException] = []

    def bad_call() -> None:
        try:
            scheduler.pause_task(BadId())  # type: ignore[arg-type]
        except Exception as exc:
            errors.append(exc)

    with gate.holding(bad_call):
        assert _returns_promptly(lambda: scheduler.get_task(task_id)), "get_task() waited for a user __repr__"
    assert errors, "pause_task accepted a non-str id"


def test_wait_for_task_leaves_no_waiter_behind_when_it_times_out(scheduler: Quiv) -> None:
    """Defect 6b: a wait_for_task() that timed out stayed registered until the task's next job."""
    task_id = scheduler.add_task("t", _noop, interval=3600, delay=3600)
    for _ in range(50):
        with pytest.raises(TimeoutError):
            scheduler.wait_for_task(task_id, timeout=0)
    assert len(scheduler._engine.waiters) == 0


def test_an_async_progress_callback_replaced_by_a_sync_one_frees_its_channel(
    make_quiv: Callable[..., Quiv],
) -> None:
    """Defect 10b: update_task() turning an async progress callback into a sync one kept its channel."""
    loop = asyncio.new_event_loop()
    runner = _in_thread(loop.run_forever)
    try:
        scheduler = make_quiv(main_loop=loop)
        seen = threading.Event()

        async def on_progress(*args: object) -> None:
            seen.set()

        def report(_progress_hook: Callable[..., None]) -> None:
            _progress_hook(1)

        task_id = scheduler.add_task("t", report, interval=3600, progress_callback=on_progress)
        scheduler.start()
        assert seen.wait(DEADLINE)
        mailbox = scheduler._dispatcher._mailbox
        assert mailbox is not None
        assert task_id in mailbox.channels
        scheduler.update_task(task_id, progress_callback=lambda *args: None)
        assert task_id not in mailbox.channels
        scheduler.shutdown()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(DEADLINE)
        loop.close()
