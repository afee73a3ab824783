"""``run_on_main``: from a worker it hops to the main loop; on the main loop it stays there."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

import pytest

from quiv import Event, JobStatus, run_on_main

from .support import DEADLINE, Calls, LoopThread, QuivFactory, running_loop


def _where() -> tuple[int, asyncio.AbstractEventLoop | None]:
    return threading.get_ident(), running_loop()


async def _where_async() -> tuple[int, asyncio.AbstractEventLoop | None]:
    await asyncio.sleep(0)
    return threading.get_ident(), running_loop()


@pytest.mark.parametrize("handler_kind", ["sync", "async"])
@pytest.mark.parametrize("target_kind", ["sync", "async"])
def test_from_a_job_it_runs_the_target_on_the_main_loop(
    loop_thread: LoopThread, make_quiv: QuivFactory, handler_kind: str, target_kind: str
) -> None:
    results: dict[str, Any] = {}
    target = _where if target_kind == "sync" else _where_async

    def sync_handler() -> None:
        future = run_on_main(target)
        results["future"] = future
        results["value"] = future.result(DEADLINE)
        results["handler_thread"] = threading.get_ident()

    async def async_handler() -> None:
        future = run_on_main(target)
        results["future"] = future
        results["value"] = await asyncio.wrap_future(future)
        results["handler_thread"] = threading.get_ident()

    scheduler = make_quiv(main_loop=loop_thread.loop)
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    scheduler.add_listener(Event.JOB_FAILED, ends.sync())
    scheduler.add_task("t", sync_handler if handler_kind == "sync" else async_handler, interval=3600)
    scheduler.start()
    (end,) = ends.wait_for(1)
    assert end.args[2].status == JobStatus.COMPLETED, end.args[2].error_message
    assert isinstance(results["future"], concurrent.futures.Future)
    thread, loop = results["value"]
    assert thread == loop_thread.ident
    assert loop is loop_thread.loop
    assert results["handler_thread"] != loop_thread.ident


def test_arguments_are_passed_and_the_result_returned(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    out: list[Any] = []

    def add(a: int, b: int, *, scale: int) -> tuple[int, int]:
        return (a + b) * scale, threading.get_ident()

    def handler() -> None:
        out.append(run_on_main(add, 1, 2, scale=10).result(DEADLINE))

    scheduler = make_quiv(main_loop=loop_thread.loop)
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    scheduler.add_task("t", handler, interval=3600)
    scheduler.start()
    ends.wait_for(1)
    assert out == [(30, loop_thread.ident)]


def test_from_a_plain_thread_it_hops_to_the_running_schedulers_loop(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.start()
    thread, loop = run_on_main(_where).result(DEADLINE)
    assert thread == loop_thread.ident
    assert loop is loop_thread.loop


def test_on_the_main_loop_a_sync_target_runs_inline(loop_thread: LoopThread, make_quiv: QuivFactory) -> None:
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.start()
    ran: list[int] = []

    def target(x: int) -> int:
        ran.append(threading.get_ident())
        return x * 2

    async def endpoint() -> tuple[bool, list[int], int]:
        future = run_on_main(target, 21)
        # Already done when run_on_main returns: it ran right here, synchronously.
        return future.done(), list(ran), future.result(0)

    done, ran_before_return, value = loop_thread.run(endpoint())
    assert done is True
    assert ran_before_return == [loop_thread.ident]
    assert value == 42


def test_on_the_main_loop_an_async_target_is_scheduled_with_create_task(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.start()
    started = asyncio.Event  # the class; instances are made on the loop below

    async def endpoint() -> tuple[bool, bool, int, Any]:
        began = started()

        async def target(x: int) -> int:
            began.set()
            await asyncio.sleep(0)
            return x + 1

        tasks_before = len(asyncio.all_tasks())
        future = run_on_main(target, 1)
        new_tasks = len(asyncio.all_tasks()) - tasks_before
        not_started_yet = not began.is_set() and not future.done()
        value = await asyncio.wait_for(asyncio.wrap_future(future), DEADLINE)
        return not_started_yet, isinstance(future, concurrent.futures.Future), new_tasks, value

    not_started_yet, is_future, new_tasks, value = loop_thread.run(endpoint())
    assert not_started_yet, "create_task only starts the coroutine on the next loop iteration"
    assert is_future
    assert new_tasks == 1
    assert value == 2


def test_without_a_main_loop_it_runs_on_the_calling_thread(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    scheduler.start()
    thread, loop = run_on_main(_where).result(DEADLINE)
    assert thread == threading.get_ident()
    assert loop is None
    thread, loop = run_on_main(_where_async).result(DEADLINE)
    assert loop is not None


def test_a_raising_target_puts_its_error_in_the_future_and_is_logged(
    loop_thread: LoopThread, make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise LookupError("no such thing")

    caplog.set_level(logging.ERROR)
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.start()
    future = run_on_main(broken)
    with pytest.raises(LookupError, match="no such thing"):
        future.result(DEADLINE)
    assert any(r.exc_info and isinstance(r.exc_info[1], LookupError) for r in caplog.records)


def test_run_on_main_needs_a_callable() -> None:
    with pytest.raises(TypeError):
        run_on_main(42)  # type: ignore[arg-type]


def test_the_scheduler_running_the_job_is_the_one_used(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    """With two schedulers, a job hops to the main loop of its own scheduler."""
    other = LoopThread()
    try:
        mine = make_quiv(main_loop=loop_thread.loop)
        theirs = make_quiv(main_loop=other.loop)
        out: list[int] = []
        ends = Calls()

        def handler() -> None:
            out.append(run_on_main(_where).result(DEADLINE)[0])

        mine.add_listener(Event.JOB_COMPLETED, ends.sync())
        mine.add_task("t", handler, interval=3600)
        mine.start()
        theirs.start()  # started last: the "most recent" scheduler
        ends.wait_for(1)
        assert out == [loop_thread.ident]
        theirs.shutdown()
    finally:
        other.close()


def test_from_a_job_it_keeps_its_place_among_progress_reports(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()

    def handler(_progress_hook: Any) -> None:
        _progress_hook("before")
        run_on_main(calls.sync("run_on_main"), "middle")
        _progress_hook("after")

    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.add_task("t", handler, interval=3600, progress_callback=calls.sync("progress"))
    scheduler.start()
    assert [c.args for c in calls.wait_for(3)] == [("before",), ("middle",), ("after",)]
    assert {c.thread for c in calls.items} == {loop_thread.ident}
