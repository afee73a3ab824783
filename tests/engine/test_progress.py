"""Progress callbacks: the four dispatch paths, order, errors, and finding the main loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from quiv import Event, JobStatus, Quiv

from .support import DEADLINE, Calls, LoopThread, QuivFactory, running_loop


class Reporter:
    """A sync handler that reports ``count`` times and records where it ran."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.thread: int | None = None
        self.delivered_before_return: list[int] = []
        self.calls: Calls | None = None

    def __call__(self, _progress_hook: Callable[..., None]) -> None:
        self.thread = threading.get_ident()
        for i in range(self.count):
            _progress_hook(i, step=i, total=self.count)
            if self.calls is not None:
                self.delivered_before_return.append(len(self.calls))


def _ends(scheduler: Quiv) -> Calls:
    ends = Calls()
    for event in (Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED):
        scheduler.add_listener(event, ends.sync())
    return ends


# ------------------------------------------------------------- the four paths
def test_main_loop_and_async_callback_runs_on_the_main_loop(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.add_task("t", Reporter(3), interval=3600, progress_callback=calls.async_())
    scheduler.start()
    for call in calls.wait_for(3):
        assert call.thread == loop_thread.ident
        assert call.loop is loop_thread.loop


def test_main_loop_and_sync_callback_runs_on_the_main_loop(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.add_task("t", Reporter(3), interval=3600, progress_callback=calls.sync())
    scheduler.start()
    for call in calls.wait_for(3):
        assert call.thread == loop_thread.ident
        assert call.loop is loop_thread.loop, "a sync callback is called from inside the main loop"


def test_no_loop_and_sync_callback_runs_directly_on_the_worker_thread(make_quiv: QuivFactory) -> None:
    calls = Calls()
    reporter = Reporter(3)
    reporter.calls = calls
    scheduler = make_quiv()
    ends = _ends(scheduler)
    scheduler.add_task("t", reporter, interval=3600, progress_callback=calls.sync())
    scheduler.start()
    ends.wait_for(1)
    assert [c.thread for c in calls.items] == [reporter.thread] * 3
    assert [c.loop for c in calls.items] == [None] * 3
    assert reporter.delivered_before_return == [1, 2, 3], "each report is delivered before the hook returns"


def test_no_loop_and_async_callback_runs_in_a_temporary_loop_on_the_worker_thread(
    make_quiv: QuivFactory,
) -> None:
    calls = Calls()
    reporter = Reporter(3)
    reporter.calls = calls
    scheduler = make_quiv()
    ends = _ends(scheduler)
    scheduler.add_task("t", reporter, interval=3600, progress_callback=calls.async_())
    scheduler.start()
    ends.wait_for(1)
    items = calls.items
    assert [c.thread for c in items] == [reporter.thread] * 3
    assert all(c.loop is not None for c in items), "an async callback is awaited in an event loop"
    assert reporter.delivered_before_return == [1, 2, 3], "the callback is awaited before the hook returns"


def test_callback_start_inside_the_loop_makes_it_the_main_loop(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    scheduler = make_quiv()
    scheduler.add_task("t", Reporter(1), interval=3600, progress_callback=calls.async_())
    loop_thread.call(scheduler.start)
    (call,) = calls.wait_for(1)
    assert call.loop is loop_thread.loop


# --------------------------------------------------------------- async handlers
def test_async_handler_with_main_loop_reports_to_the_main_loop_not_its_own(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    handler_loop: list[asyncio.AbstractEventLoop | None] = []

    async def handler(_progress_hook: Callable[..., None]) -> None:
        handler_loop.append(running_loop())
        _progress_hook(stage="async")
        await asyncio.sleep(0)

    for factory in (calls.sync, calls.async_):
        scheduler = make_quiv(main_loop=loop_thread.loop)
        scheduler.add_task("t", handler, interval=3600, progress_callback=factory())
        scheduler.start()
    for call in calls.wait_for(2):
        assert call.kwargs == {"stage": "async"}
        assert call.loop is loop_thread.loop
        assert call.loop not in handler_loop


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_async_handler_without_main_loop_gets_its_callback_run_before_the_hook_returns(
    make_quiv: QuivFactory, kind: str
) -> None:
    calls = Calls()
    delivered: list[int] = []

    async def handler(_progress_hook: Callable[..., None]) -> None:
        _progress_hook(1)
        delivered.append(len(calls))
        _progress_hook(2)
        delivered.append(len(calls))

    scheduler = make_quiv()
    ends = _ends(scheduler)
    callback = calls.sync() if kind == "sync" else calls.async_()
    scheduler.add_task("t", handler, interval=3600, progress_callback=callback)
    scheduler.start()
    assert ends.wait_for(1)[0].args[2].status == JobStatus.COMPLETED
    assert [c.args for c in calls.items] == [(1,), (2,)]
    assert delivered == [1, 2]


# --------------------------------------------------------------- payload, order
def test_callback_receives_exactly_what_the_handler_passed(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()

    def handler(_progress_hook: Callable[..., None]) -> None:
        _progress_hook()
        _progress_hook("a", 2, step=3, stage="load", pct=30)

    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.add_task("t", handler, interval=3600, progress_callback=calls.sync())
    scheduler.start()
    first, second = calls.wait_for(2)
    assert (first.args, first.kwargs) == ((), {})
    assert (second.args, second.kwargs) == (("a", 2), {"step": 3, "stage": "load", "pct": 30})


@pytest.mark.parametrize("with_loop", [True, False], ids=["main-loop", "no-loop"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_reports_arrive_in_order(request: pytest.FixtureRequest, kind: str, with_loop: bool) -> None:
    main_loop = request.getfixturevalue("loop_thread").loop if with_loop else None
    make_quiv: QuivFactory = request.getfixturevalue("make_quiv")
    calls = Calls()
    scheduler = make_quiv(main_loop=main_loop)
    callback = calls.sync() if kind == "sync" else calls.async_()
    scheduler.add_task("t", Reporter(200), interval=3600, progress_callback=callback)
    scheduler.start()
    assert [c.args[0] for c in calls.wait_for(200)] == list(range(200))


def test_a_task_without_callback_can_still_call_its_hook(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    ends = _ends(scheduler)
    scheduler.add_task("t", Reporter(3), interval=3600)
    scheduler.start()
    assert ends.wait_for(1)[0].args[2].status == JobStatus.COMPLETED


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("with_loop", [True, False], ids=["main-loop", "no-loop"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_raising_callback_is_logged_and_harms_neither_the_job_nor_later_reports(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture, kind: str, with_loop: bool
) -> None:
    main_loop = request.getfixturevalue("loop_thread").loop if with_loop else None
    make_quiv: QuivFactory = request.getfixturevalue("make_quiv")
    calls = Calls()

    def sync_callback(i: int, **payload: Any) -> None:
        calls.record((i,), payload)
        if i == 0:
            raise RuntimeError("callback broke")

    async def async_callback(i: int, **payload: Any) -> None:
        sync_callback(i, **payload)

    caplog.set_level(logging.ERROR, logger="Quiv")
    scheduler = make_quiv(main_loop=main_loop)
    ends = _ends(scheduler)
    callback = sync_callback if kind == "sync" else async_callback
    scheduler.add_task("t", Reporter(3), interval=3600, progress_callback=callback)
    scheduler.start()
    assert [c.args[0] for c in calls.wait_for(3)] == [0, 1, 2]
    assert ends.wait_for(1)[0].args[2].status == JobStatus.COMPLETED
    logged = [r for r in caplog.records if r.exc_info and "callback broke" in str(r.exc_info[1])]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR


# ------------------------------------------------------- finding the main loop
def test_lazy_resolution_a_scheduler_started_without_loop_adopts_the_loop_that_calls_it(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    scheduler = make_quiv()
    scheduler.start()
    assert running_loop() is None
    # Later, the application's loop calls quiv (a request handler adding a task).
    loop_thread.call(
        scheduler.add_task, "from-the-loop", Reporter(1), interval=3600, progress_callback=calls.sync()
    )
    (call,) = calls.wait_for(1)
    assert call.thread == loop_thread.ident


@pytest.mark.parametrize(
    "method",
    ["get_task", "get_all_tasks", "get_all_jobs", "pause_task", "resume_task", "run_task_immediately"],
)
def test_lazy_resolution_any_public_method_called_on_the_loop_adopts_it(
    loop_thread: LoopThread, make_quiv: QuivFactory, method: str
) -> None:
    calls = Calls()
    scheduler = make_quiv()
    task_id = scheduler.add_task("t", Reporter(1), interval=3600, delay=3600, progress_callback=calls.sync())
    scheduler.start()
    takes_id = method not in ("get_all_tasks", "get_all_jobs")
    loop_thread.call(getattr(scheduler, method), *((task_id,) if takes_id else ()))
    scheduler.resume_task(task_id)  # some methods above already ran it: one or two runs
    call = calls.wait_for(1)[0]
    assert call.thread == loop_thread.ident, f"{method}() on the loop did not make it the main loop"


def test_a_closed_main_loop_is_forgotten(make_quiv: QuivFactory) -> None:
    gone = LoopThread()
    gone.close()
    calls = Calls()
    reporter = Reporter(1)
    scheduler = make_quiv(main_loop=gone.loop)
    ends = _ends(scheduler)
    scheduler.add_task("t", reporter, interval=3600, progress_callback=calls.sync())
    scheduler.start()
    ends.wait_for(1)
    (call,) = calls.items
    assert call.thread == reporter.thread, "with its loop closed, a sync callback runs on the worker"


def test_a_closed_main_loop_is_replaced_by_the_next_loop_that_calls_quiv(make_quiv: QuivFactory) -> None:
    first = LoopThread()
    second = LoopThread()
    try:
        calls = Calls()
        scheduler = make_quiv()
        first.call(scheduler.start)
        task_id = scheduler.add_task("t", Reporter(1), interval=3600, progress_callback=calls.sync())
        assert calls.wait_for(1)[0].thread == first.ident
        first.close()
        second.call(scheduler.run_task_immediately, task_id)
        assert calls.wait_for(2)[1].thread == second.ident
        scheduler.shutdown()
    finally:
        first.close()
        second.close()


def test_a_handlers_private_loop_is_never_taken_for_the_main_loop(make_quiv: QuivFactory) -> None:
    calls = Calls()
    reported = threading.Event()
    reporter = Reporter(1)

    def callback(*args: Any, **kwargs: Any) -> None:
        calls.record(args, kwargs)
        reported.set()

    scheduler = make_quiv(pool_size=2)
    other = scheduler.add_task("reporter", reporter, interval=3600, delay=3600, progress_callback=callback)

    async def handler() -> None:
        # Calls quiv from inside its own loop, then keeps that loop running meanwhile.
        scheduler.run_task_immediately(other)
        scheduler.get_all_tasks()
        for _ in range(1000):
            if reported.is_set():
                return
            await asyncio.sleep(0.005)

    ends = _ends(scheduler)
    scheduler.add_task("async", handler, interval=3600)
    scheduler.start()
    assert reported.wait(DEADLINE)
    ends.wait_for(2)
    (call,) = calls.items
    assert call.thread == reporter.thread
    assert call.loop is None


def test_removing_a_task_during_its_job_drops_its_progress_callback(make_quiv: QuivFactory) -> None:
    calls = Calls()
    removed = threading.Event()
    finished = threading.Event()

    def handler(_progress_hook: Callable[..., None], _stop_event: threading.Event) -> None:
        _progress_hook("before")
        removed.wait(DEADLINE)
        _progress_hook("after")
        finished.set()

    scheduler = make_quiv()
    task_id = scheduler.add_task("t", handler, interval=3600, progress_callback=calls.sync())
    scheduler.start()
    calls.wait_for(1)
    scheduler.remove_task(task_id)
    removed.set()
    assert finished.wait(DEADLINE)
    assert [c.args for c in calls.items] == [("before",)]


def test_progress_listeners_see_every_report_as_a_progress_report(make_quiv: QuivFactory) -> None:
    from quiv import ProgressReport

    reports = Calls()
    scheduler = make_quiv()
    scheduler.add_progress_listener(reports.sync())
    ends = _ends(scheduler)
    task_id = scheduler.add_task("reporting", Reporter(2), interval=3600)
    scheduler.start()
    job_id = ends.wait_for(1)[0].args[2].id
    items = reports.wait_for(2)
    for i, call in enumerate(items):
        (report,) = call.args
        assert isinstance(report, ProgressReport)
        assert (report.task_id, report.task_name, report.job_id) == (task_id, "reporting", job_id)
        assert report.args == (i,)
        assert report.kwargs == {"step": i, "total": 2}
        assert report.at.utcoffset() is not None


def test_with_a_main_loop_sync_callbacks_and_listeners_run_in_the_order_they_were_issued(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    calls = Calls()
    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.add_listener(Event.JOB_STARTED, calls.sync("started"))
    scheduler.add_listener(Event.JOB_COMPLETED, calls.sync("completed"))
    scheduler.add_task("t", Reporter(5), interval=3600, progress_callback=calls.sync("progress"))
    scheduler.start()
    items = calls.wait_for(7)
    assert [c.tag for c in items] == ["started"] + ["progress"] * 5 + ["completed"]
    assert {c.thread for c in items} == {loop_thread.ident}


def test_async_callbacks_of_one_task_never_overlap(loop_thread: LoopThread, make_quiv: QuivFactory) -> None:
    active = 0
    overlaps: list[int] = []
    calls = Calls()

    async def callback(i: int, **payload: Any) -> None:
        nonlocal active
        active += 1
        overlaps.append(active)
        for _ in range(3):
            await asyncio.sleep(0)
        active -= 1
        calls.record((i,), payload)

    scheduler = make_quiv(main_loop=loop_thread.loop)
    scheduler.add_task("t", Reporter(20), interval=3600, progress_callback=callback)
    scheduler.start()
    assert [c.args[0] for c in calls.wait_for(20)] == list(range(20))
    assert max(overlaps) == 1, "a report is delivered only once the previous callback finished"


def test_a_stuck_async_callback_holds_up_only_its_own_task(
    loop_thread: LoopThread, make_quiv: QuivFactory
) -> None:
    stuck_calls = Calls()
    other_calls = Calls()

    async def stuck(*args: Any, **kwargs: Any) -> None:
        stuck_calls.record(args, kwargs)
        await asyncio.Event().wait()  # never set; cancelled when the test loop closes

    scheduler = make_quiv(main_loop=loop_thread.loop, pool_size=2)
    ends = _ends(scheduler)
    scheduler.add_task("stuck", Reporter(3), interval=3600, progress_callback=stuck)
    scheduler.add_task("other", Reporter(3), interval=3600, progress_callback=other_calls.async_())
    scheduler.start()
    assert [c.args[0] for c in other_calls.wait_for(3)] == [0, 1, 2]
    assert [c.args[2].status for c in ends.wait_for(2)] == [JobStatus.COMPLETED] * 2, "jobs do not wait"
    assert len(stuck_calls) == 1


def test_a_chatty_handler_offers_the_gil_every_256_reports(
    make_quiv: QuivFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without callback or listener nothing is posted to the loop, yet a tight loop of reports lets it run."""
    from quiv._core import runner

    offers: list[tuple[int, float]] = []

    class Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            offers.append((threading.get_ident(), seconds))

    monkeypatch.setattr(runner, "time", Clock)
    reporter = Reporter(1024)
    scheduler = make_quiv()
    ends = _ends(scheduler)
    scheduler.add_task("t", reporter, interval=3600)
    scheduler.start()
    ends.wait_for(1)
    assert offers == [(reporter.thread, 0)] * 4


def test_with_live_stream_clients_the_offer_is_a_real_handover(
    make_quiv: QuivFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tap (a live stream with clients) makes the hook sleep briefly, so the loop's thread gets the GIL."""
    from quiv._core import runner

    offers: list[float] = []
    tapped: list[object] = []

    class Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            offers.append(seconds)

    monkeypatch.setattr(runner, "time", Clock)
    scheduler = make_quiv()
    scheduler._listeners.add_tap(lambda *report: tapped.append(report))
    ends = _ends(scheduler)
    scheduler.add_task("t", Reporter(512), interval=3600)
    scheduler.start()
    ends.wait_for(1)
    assert len(tapped) == 512
    assert offers == [runner.GIL_HANDOVER_SECONDS] * 2
    assert 0 < runner.GIL_HANDOVER_SECONDS <= 0.001
