"""Injection of ``_job_id``, ``_stop_event`` and ``_progress_hook`` by signature, and async handlers."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from quiv import Event, JobStatus, Quiv, get_current_job_id

from .support import DEADLINE, Calls, LoopThread, QuivFactory, running_loop

HOOKS = ("_job_id", "_stop_event", "_progress_hook")


def _run_once_and_wait(scheduler: Quiv, handler: Callable[..., Any], **options: Any) -> str:
    """Add ``handler`` as a run-once task, start, wait for the job to end, return its id."""
    ends = Calls()
    for event in (Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED):
        scheduler.add_listener(event, ends.sync())
    scheduler.add_task("injection", handler, interval=60, run_once=True, **options)
    scheduler.start()
    (call,) = ends.wait_for(1)
    job = call.args[2]
    assert job.status == JobStatus.COMPLETED, job.error_message
    job_id: str = job.id
    return job_id


def _handler_with(names: tuple[str, ...], seen: dict[str, Any]) -> Callable[..., Any]:
    """A handler declaring exactly ``names`` (as keyword parameters with defaults)."""
    params = ", ".join(f"{name}=None" for name in names)
    namespace: dict[str, Any] = {"seen": seen}
    exec(f"def handler({params}):\n    seen.update(locals())\n", namespace)
    handler: Callable[..., Any] = namespace["handler"]
    return handler


@pytest.mark.parametrize(
    "declared",
    [(), ("_job_id",), ("_stop_event",), ("_progress_hook",), ("_job_id", "_stop_event"), HOOKS],
    ids=lambda names: "+".join(names) or "none",
)
def test_only_the_declared_hooks_are_injected(make_quiv: QuivFactory, declared: tuple[str, ...]) -> None:
    seen: dict[str, Any] = {}
    scheduler = make_quiv()
    job_id = _run_once_and_wait(scheduler, _handler_with(declared, seen))
    assert set(seen) == set(declared)
    if "_job_id" in declared:
        assert seen["_job_id"] == job_id
    if "_stop_event" in declared:
        assert isinstance(seen["_stop_event"], threading.Event)
        assert not seen["_stop_event"].is_set()
    if "_progress_hook" in declared:
        assert callable(seen["_progress_hook"])


def test_a_handler_with_var_kwargs_receives_all_three(make_quiv: QuivFactory) -> None:
    seen: dict[str, Any] = {}

    def handler(a: int, **kwargs: Any) -> None:
        seen.update(kwargs, a=a)

    scheduler = make_quiv()
    job_id = _run_once_and_wait(scheduler, handler, args=(1,), kwargs={"b": 2})
    assert set(seen) == {"a", "b", *HOOKS}
    assert (seen["a"], seen["b"]) == (1, 2)
    assert seen["_job_id"] == job_id
    assert isinstance(seen["_stop_event"], threading.Event)
    assert callable(seen["_progress_hook"])


def test_hooks_may_be_keyword_only_and_come_with_the_users_arguments(make_quiv: QuivFactory) -> None:
    seen: dict[str, Any] = {}

    def handler(a: int, b: str, *, c: float, _job_id: str, _stop_event: threading.Event) -> None:
        seen.update(a=a, b=b, c=c, job_id=_job_id, stop=_stop_event)

    scheduler = make_quiv()
    job_id = _run_once_and_wait(scheduler, handler, args=(1, "two"), kwargs={"c": 3.0})
    assert seen["a"] == 1
    assert seen["b"] == "two"
    assert seen["c"] == 3.0
    assert seen["job_id"] == job_id
    assert isinstance(seen["stop"], threading.Event)


def test_each_job_gets_its_own_job_id_and_stop_event(make_quiv: QuivFactory) -> None:
    ids: list[str] = []
    events: list[threading.Event] = []
    two = threading.Semaphore(0)

    def handler(_job_id: str, _stop_event: threading.Event) -> None:
        ids.append(_job_id)
        events.append(_stop_event)
        two.release()

    scheduler = make_quiv()
    task_id = scheduler.add_task("t", handler, interval=3600)
    scheduler.start()
    assert two.acquire(timeout=DEADLINE)
    scheduler.wait_for_job(ids[0], timeout=DEADLINE)
    scheduler.run_task_immediately(task_id)
    assert two.acquire(timeout=DEADLINE)
    assert len(set(ids)) == 2
    assert all(str(uuid.UUID(job_id)) == job_id for job_id in ids)
    assert events[0] is not events[1]


def test_get_current_job_id_inside_and_outside_a_job(make_quiv: QuivFactory) -> None:
    seen: dict[str, Any] = {}

    def handler(_job_id: str) -> None:
        seen["injected"] = _job_id
        seen["current"] = get_current_job_id()

    scheduler = make_quiv()
    _run_once_and_wait(scheduler, handler)
    assert seen["current"] == seen["injected"]
    assert get_current_job_id() is None


# ----------------------------------------------------------------- async handlers
def test_an_async_handler_runs_in_a_loop_of_its_own_on_a_worker_thread(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    seen: dict[str, Any] = {}

    async def handler(_job_id: str, _stop_event: threading.Event, _progress_hook: Any) -> None:
        await asyncio.sleep(0)
        seen["loop"] = running_loop()
        seen["thread"] = threading.get_ident()
        seen["job_id"] = _job_id
        seen["stop"] = _stop_event
        seen["hook"] = _progress_hook

    scheduler = make_quiv(main_loop=loop_thread.loop)
    job_id = _run_once_and_wait(scheduler, handler)
    assert seen["loop"] is not None
    assert seen["loop"] is not loop_thread.loop, "async handlers never run on the main loop"
    assert seen["thread"] not in (loop_thread.ident, threading.get_ident())
    assert seen["job_id"] == job_id
    assert isinstance(seen["stop"], threading.Event)
    assert callable(seen["hook"])


def test_each_async_job_gets_a_fresh_loop(make_quiv: QuivFactory) -> None:
    loops: list[asyncio.AbstractEventLoop | None] = []
    done = threading.Semaphore(0)

    async def handler() -> None:
        loops.append(running_loop())
        done.release()

    scheduler = make_quiv()
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    task_id = scheduler.add_task("t", handler, interval=3600)
    scheduler.start()
    ends.wait_for(1)
    scheduler.run_task_immediately(task_id)
    ends.wait_for(2)
    assert loops[0] is not None
    assert loops[1] is not None
    assert loops[0] is not loops[1]
    assert loops[0].is_closed(), "the job's loop is closed when the job ends"


def test_an_async_handler_is_cancelled_through_its_stop_event(make_quiv: QuivFactory) -> None:
    started = threading.Event()
    job_ids: list[str] = []

    async def handler(_job_id: str, _stop_event: threading.Event) -> None:
        job_ids.append(_job_id)
        started.set()
        for _ in range(1000):
            if _stop_event.is_set():
                return
            await asyncio.sleep(0.005)

    scheduler = make_quiv()
    scheduler.add_task("t", handler, interval=3600)
    scheduler.start()
    assert started.wait(DEADLINE)
    assert scheduler.cancel_job(job_ids[0]) is True
    assert scheduler.wait_for_job(job_ids[0], timeout=DEADLINE).status == JobStatus.CANCELLED


def test_an_async_handler_that_raises_fails_its_job(make_quiv: QuivFactory) -> None:
    async def handler() -> None:
        await asyncio.sleep(0)
        raise ValueError("async bad input")

    scheduler = make_quiv()
    ends = Calls()
    scheduler.add_listener(Event.JOB_FAILED, ends.sync())
    scheduler.add_task("t", handler, interval=3600)
    scheduler.start()
    (call,) = ends.wait_for(1)
    assert call.args[2].error_message == "ValueError: async bad input"


def test_sync_and_async_handlers_run_side_by_side(make_quiv: QuivFactory) -> None:
    barrier = threading.Barrier(2)

    def sync_handler() -> None:
        barrier.wait(DEADLINE)

    async def async_handler() -> None:
        await asyncio.to_thread(barrier.wait, DEADLINE)

    scheduler = make_quiv(pool_size=2)
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    scheduler.add_task("sync", sync_handler, interval=3600)
    scheduler.add_task("async", async_handler, interval=3600)
    scheduler.start()
    assert {call.args[1].task_name for call in ends.wait_for(2)} == {"sync", "async"}
