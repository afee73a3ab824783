"""Event listeners: the four dispatch paths, registration order, registration rules, errors."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from quiv import ConfigurationError, Event, JobStatus, QuivError
from quiv.models import Task

from .support import Blocker, Calls, LoopThread, QuivFactory, wait_until


def noop() -> None:
    pass


# ------------------------------------------------------------- the four paths
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_with_a_main_loop_listeners_run_on_it(
    loop_thread: LoopThread, make_quiv: QuivFactory, kind: str
) -> None:
    calls = Calls()
    listener = calls.sync() if kind == "sync" else calls.async_()
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.add_listener(Event.JOB_STARTED, listener)
    scheduler.add_listener(Event.JOB_COMPLETED, listener)
    scheduler.add_task("t", noop, interval=3600)
    scheduler.start()
    items = calls.wait_for(3)
    assert [c.args[0] for c in items] == [Event.TASK_ADDED, Event.JOB_STARTED, Event.JOB_COMPLETED]
    for call in items:
        assert call.thread == loop_thread.ident
        assert call.loop is loop_thread.loop


def test_without_a_loop_a_sync_listener_runs_directly_on_the_calling_thread(make_quiv: QuivFactory) -> None:
    calls = Calls()
    blocker = Blocker()
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_ADDED, calls.sync())
    scheduler.add_listener(Event.JOB_STARTED, calls.sync())
    scheduler.add_task("t", blocker, interval=3600)
    # TASK_ADDED ran on this thread, before add_task returned.
    (added,) = calls.items
    assert added.thread == threading.get_ident()
    assert added.loop is None
    scheduler.start()
    job_id = blocker.next_start()
    # JOB_STARTED ran on the worker, before the handler was called.
    started = calls.items[1]
    assert started.thread == blocker.threads[job_id]
    blocker.release.set()


def test_without_a_loop_an_async_listener_runs_in_a_temporary_loop_on_the_calling_thread(
    make_quiv: QuivFactory,
) -> None:
    calls = Calls()
    blocker = Blocker()
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_ADDED, calls.async_())
    scheduler.add_listener(Event.JOB_STARTED, calls.async_())
    scheduler.add_task("t", blocker, interval=3600)
    (added,) = calls.items
    assert added.thread == threading.get_ident()
    assert added.loop is not None, "the coroutine was awaited in an event loop"
    assert added.loop.is_closed(), "the temporary loop is closed once the listener is done"
    scheduler.start()
    job_id = blocker.next_start()
    started = calls.items[1]
    assert started.thread == blocker.threads[job_id]
    assert started.loop is not None
    blocker.release.set()


def test_start_inside_the_loop_makes_listeners_run_on_it(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    scheduler = make_quiv()
    scheduler.add_listener(Event.JOB_COMPLETED, calls.async_())
    scheduler.add_task("t", noop, interval=3600)
    loop_thread.call(scheduler.start)
    (call,) = calls.wait_for(1)
    assert call.loop is loop_thread.loop


# ------------------------------------------------------------------- order
@pytest.mark.parametrize("with_loop", [True, False], ids=["main-loop", "no-loop"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_listeners_run_in_registration_order(
    request: pytest.FixtureRequest, kind: str, with_loop: bool
) -> None:
    main_loop = request.getfixturevalue("loop_thread").loop if with_loop else None
    make_quiv: QuivFactory = request.getfixturevalue("make_quiv")
    calls = Calls()
    scheduler = make_quiv(main_loop=main_loop)
    names = ["first", "second", "third", "fourth", "fifth"]
    for name in names:
        scheduler.add_listener(Event.TASK_ADDED, calls.sync(name) if kind == "sync" else calls.async_(name))
    for _ in range(3):
        scheduler.add_task("t", noop, interval=3600, delay=3600)
    assert [c.tag for c in calls.wait_for(15)] == names * 3


def test_mixed_sync_and_async_listeners_without_loop_run_in_registration_order(
    make_quiv: QuivFactory,
) -> None:
    calls = Calls()
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_PAUSED, calls.async_("a"))
    scheduler.add_listener(Event.TASK_PAUSED, calls.sync("b"))
    scheduler.add_listener(Event.TASK_PAUSED, calls.async_("c"))
    scheduler.add_listener(Event.TASK_PAUSED, calls.sync("d"))
    scheduler.pause_task(scheduler.add_task("t", noop, interval=3600))
    assert [c.tag for c in calls.items] == ["a", "b", "c", "d"]


def test_removed_then_added_again_goes_to_the_end(make_quiv: QuivFactory) -> None:
    calls = Calls()
    scheduler = make_quiv()
    a, b, c = calls.sync("a"), calls.sync("b"), calls.sync("c")
    for listener in (a, b, c):
        scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.remove_listener(Event.TASK_ADDED, b)
    scheduler.add_listener(Event.TASK_ADDED, b)
    scheduler.add_task("t", noop, interval=3600)
    assert [call.tag for call in calls.items] == ["a", "c", "b"]


# ------------------------------------------------------------ registration
def test_the_same_listener_added_twice_is_called_once(make_quiv: QuivFactory) -> None:
    calls = Calls()
    listener = calls.sync()
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.add_task("t", noop, interval=3600)
    assert len(calls) == 1


def test_one_listener_for_several_events(make_quiv: QuivFactory) -> None:
    calls = Calls()
    listener = calls.sync()
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.add_listener(Event.TASK_PAUSED, listener)
    scheduler.add_listener(Event.TASK_RESUMED, listener)
    task_id = scheduler.add_task("t", noop, interval=3600, delay=3600)
    scheduler.pause_task(task_id)
    scheduler.resume_task(task_id, delay=3600)
    assert [c.args[0] for c in calls.items] == [Event.TASK_ADDED, Event.TASK_PAUSED, Event.TASK_RESUMED]


def test_remove_listener_stops_the_calls_and_ignores_unknown_callbacks(make_quiv: QuivFactory) -> None:
    calls = Calls()
    listener = calls.sync()
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.add_task("t", noop, interval=3600)
    scheduler.remove_listener(Event.TASK_ADDED, listener)
    scheduler.add_task("t", noop, interval=3600)
    assert len(calls) == 1
    scheduler.remove_listener(Event.TASK_ADDED, listener)
    scheduler.remove_listener(Event.JOB_FAILED, noop)


def test_remove_listener_only_for_the_given_event(make_quiv: QuivFactory) -> None:
    calls = Calls()
    listener = calls.sync()
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.add_listener(Event.TASK_PAUSED, listener)
    scheduler.remove_listener(Event.TASK_ADDED, listener)
    scheduler.pause_task(scheduler.add_task("t", noop, interval=3600))
    assert [c.args[0] for c in calls.items] == [Event.TASK_PAUSED]


@pytest.mark.parametrize("event", ["task_added", "TASK_ADDED", None, 3])
def test_add_listener_needs_an_event_member(make_quiv: QuivFactory, event: Any) -> None:
    scheduler = make_quiv()
    with pytest.raises(ConfigurationError) as caught:
        scheduler.add_listener(event, noop)
    assert repr(event) in str(caught.value)


@pytest.mark.parametrize("callback", [None, "print", 42])
def test_add_listener_needs_a_callable(make_quiv: QuivFactory, callback: Any) -> None:
    scheduler = make_quiv()
    with pytest.raises(ConfigurationError) as caught:
        scheduler.add_listener(Event.TASK_ADDED, callback)
    assert isinstance(caught.value, QuivError)
    assert repr(callback) in str(caught.value)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("with_loop", [True, False], ids=["main-loop", "no-loop"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_raising_listener_is_logged_and_harms_neither_the_job_nor_the_other_listeners(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, kind: str, with_loop: bool
) -> None:
    main_loop = request.getfixturevalue("loop_thread").loop if with_loop else None
    make_quiv: QuivFactory = request.getfixturevalue("make_quiv")
    calls = Calls()

    def sync_broken(*args: Any) -> None:
        raise RuntimeError("listener broke")

    async def async_broken(*args: Any) -> None:
        raise RuntimeError("listener broke")

    caplog.set_level(logging.ERROR, logger="Quiv")
    scheduler = make_quiv(main_loop=main_loop)
    for event in (Event.TASK_ADDED, Event.JOB_STARTED, Event.JOB_COMPLETED):
        scheduler.add_listener(event, sync_broken if kind == "sync" else async_broken)
        scheduler.add_listener(event, calls.sync())
    scheduler.add_task("t", noop, interval=3600)
    scheduler.start()
    items = calls.wait_for(3)
    assert [c.args[0] for c in items] == [Event.TASK_ADDED, Event.JOB_STARTED, Event.JOB_COMPLETED]
    assert items[2].args[2].status == JobStatus.COMPLETED

    def broken_logged() -> int:
        return len([r for r in caplog.records if r.exc_info and "listener broke" in str(r.exc_info[1])])

    # An async listener's failure is logged when its task ends, possibly after the next listener ran.
    assert wait_until(lambda: broken_logged() >= 3)
    assert broken_logged() == 3
    assert all(r.levelno == logging.ERROR for r in caplog.records if r.exc_info)


def test_a_listener_may_call_back_into_the_scheduler(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    names: list[str] = []

    def on_added(event: Event, task: Task) -> None:
        names.append(scheduler.get_task(task.id).task_name)
        if task.task_name == "first":
            scheduler.add_task("second", noop, interval=3600, delay=3600)

    scheduler.add_listener(Event.TASK_ADDED, on_added)
    scheduler.add_task("first", noop, interval=3600, delay=3600)
    assert names == ["first", "second"]


def test_custom_logger_receives_quivs_error_logs(
    make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("myapp.scheduler")

    def broken(*args: Any) -> None:
        raise RuntimeError("listener broke")

    caplog.set_level(logging.ERROR)
    scheduler = make_quiv(logger=logger)
    scheduler.add_listener(Event.TASK_ADDED, broken)
    scheduler.add_task("t", noop, interval=3600)
    names = {r.name for r in caplog.records if r.exc_info}
    assert names == {"myapp.scheduler"}


def test_default_logger_is_named_quiv(make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("listener broke")

    caplog.set_level(logging.ERROR)
    scheduler = make_quiv()
    scheduler.add_listener(Event.TASK_ADDED, broken)
    scheduler.add_task("t", noop, interval=3600)
    assert {r.name for r in caplog.records if r.exc_info} == {"Quiv"}
