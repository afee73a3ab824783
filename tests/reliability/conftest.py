"""Fixtures for the reliability tests: recorded schedulers that are always shut down and joined."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from quiv import Quiv
from quiv.testing import ManualClock

from .invariants import Recorder, quiv_threads

#: A whole number of epoch seconds, so schedule arithmetic in the tests is exact.
START = datetime(2030, 1, 1, tzinfo=timezone.utc)

RecordedFactory = Callable[..., tuple[Quiv, ManualClock, Recorder]]


@pytest.fixture
def recorded() -> Iterator[RecordedFactory]:
    """``recorded(**quiv_kwargs)`` -> (scheduler, clock, recorder), started, on a ManualClock.

    At teardown every gate is released, every scheduler shut down, and the test
    fails if any ``quiv-`` thread is still alive a few seconds later.
    """
    made: list[tuple[Quiv, Recorder]] = []

    def factory(*, start: bool = True, **kwargs: Any) -> tuple[Quiv, ManualClock, Recorder]:
        clock = kwargs.pop("clock", None) or ManualClock(start=START)
        scheduler = Quiv(clock=clock, **kwargs)
        rec = Recorder(scheduler)
        made.append((scheduler, rec))
        if start:
            scheduler.start()
        return scheduler, clock, rec

    yield factory
    for scheduler, rec in made:
        rec.release_all()
        scheduler.shutdown(timeout=5)
    join_quiv_threads()


def join_quiv_threads(timeout: float = 5.0) -> None:
    """Fail if a ``quiv-`` thread does not end within ``timeout`` (released handlers finish first)."""
    deadline = time.monotonic() + timeout
    for thread in quiv_threads():
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = quiv_threads()
    assert not alive, f"quiv threads still alive after teardown: {alive}"


@pytest.fixture
def main_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An asyncio loop running in a background thread, stopped and closed at teardown."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=run, name="test-main-loop", daemon=True)
    thread.start()
    assert ready.wait(5)
    yield loop
    if not loop.is_closed():
        stop_loop(loop, thread)


def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread | None = None) -> None:
    """Cancel the loop's tasks, stop it and close it (from outside its thread)."""

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()

    if loop.is_running():
        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
    if thread is None:
        thread = next((t for t in threading.enumerate() if t.name == "test-main-loop"), None)
    if thread is not None:
        thread.join(5)
    loop.close()
