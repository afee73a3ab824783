"""Live events of other processes reach a process's stream (shared PostgreSQL mode, NOTIFY relay).

Two ``Quiv`` instances on one database stand for two processes: each has its
own worker id, claims and runs on its own, and only the relay (LISTEN/NOTIFY)
carries one's events to the other's stream.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from quiv import Event, Quiv, QuivConfig
from quiv._durable.coordinator import Coordinator
from quiv.types import ProgressHook

from .durable_support import wait_for_listeners

DEADLINE = 15.0


def drain_until(
    inbox: queue.Queue[dict[str, Any]], done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Every payload received until one satisfies ``done`` (included); fails after the deadline."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"the awaited payload never came; got {[p.get('e') for p in seen]}"
        try:
            payload = inbox.get(timeout=remaining)
        except queue.Empty:
            continue
        seen.append(payload)
        if done(payload):
            return seen


def test_the_other_process_sees_events_and_the_last_progress_but_not_its_own(pair: tuple[Quiv, Quiv]) -> None:
    watcher, runner = pair
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    watcher._subscribe_remote(inbox.put)
    go = threading.Event()

    def chatty(_progress_hook: ProgressHook) -> None:
        go.wait(DEADLINE)
        for step in range(200):
            _progress_hook(step=step)

    own = threading.Event()
    watcher.add_task("watcher-own", lambda: own.set(), interval=0.2)
    runner.add_task("chatty", chatty, interval=3600, delay=3600)
    watcher.start()
    runner.start()
    # The runner learns at its next heartbeat that someone wants events: wait for that.
    deadline = time.monotonic() + DEADLINE
    relay = runner._durable.coordinator.relay if runner._durable is not None else None
    assert relay is not None
    while not relay.sending:
        assert time.monotonic() < deadline, "the runner never started relaying"
        time.sleep(0.05)
    chatty_id = next(t.id for t in runner.get_all_tasks() if t.task_name == "chatty")
    runner.run_task_immediately(chatty_id)
    go.set()
    seen = drain_until(inbox, lambda p: p["e"] == "job_completed" and p["j"][2] == "chatty")
    assert own.wait(DEADLINE)
    kinds = [p["e"] for p in seen if p.get("t", [None, None])[1] == "chatty" or p["e"] == "progress"]
    assert "job_started" in kinds
    progress = [p for p in seen if p["e"] == "progress"]
    # Coalesced (far fewer than 200 reports), yet the last step is never lost: it precedes the end.
    assert 1 <= len(progress) < 200
    assert progress[-1]["p"][4] == {"step": 199}
    assert kinds.index("job_started") < len(kinds) - 1
    assert all(p["w"] == runner.worker_id for p in seen), "a process must not receive its own events"
    ended = seen[-1]
    assert ended["j"][11] == runner.worker_id  # the job row carries the worker that ran it


def test_large_progress_payloads_are_cut_to_fit_notify(pair: tuple[Quiv, Quiv]) -> None:
    watcher, runner = pair
    inbox: queue.Queue[dict[str, Any]] = queue.Queue()
    watcher._subscribe_remote(inbox.put)

    def bulky(_progress_hook: ProgressHook) -> None:
        _progress_hook(blob="x" * 20_000)

    runner.add_task("bulky", bulky, interval=3600, delay=3600)
    watcher.start()
    runner.start()
    relay = runner._durable.coordinator.relay if runner._durable is not None else None
    assert relay is not None
    deadline = time.monotonic() + DEADLINE
    while not relay.sending:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    runner.run_task_immediately(runner.get_all_tasks()[0].id)
    seen = drain_until(inbox, lambda p: p["e"] == "job_completed")
    progress = [p for p in seen if p["e"] == "progress"]
    assert progress
    assert progress[-1]["p"][4] == {"truncated": True}


def test_a_task_no_live_process_declares_is_shown_as_such(pg_url: str) -> None:
    config = QuivConfig(database_url=pg_url, heartbeat_seconds=0.2, dead_after_seconds=5)
    gone, stays = Quiv(config=config), Quiv(config=config)
    try:
        gone.add_task("only-in-gone", lambda: None, interval=3600)
        stays.add_task("in-stays", lambda: None, interval=3600)
        gone.start()
        stays.start()
        shown = {t.task_name: t.declared for t in stays.get_all_tasks()}
        assert shown == {"only-in-gone": True, "in-stays": True}
        gone.shutdown()
        shown = {t.task_name: t.declared for t in stays.get_all_tasks()}
        assert shown == {"only-in-gone": False, "in-stays": True}
        only = next(t for t in stays.get_all_tasks() if t.task_name == "only-in-gone")
        assert stays.get_task(only.id).declared is False
    finally:
        gone.shutdown()
        stays.shutdown()


def test_the_default_mode_shows_declared_as_unknown(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv()
    scheduler.add_task("t", lambda: None, interval=3600)
    assert scheduler.get_all_tasks()[0].declared is None


def test_job_events_fire_only_in_the_process_that_ran_the_job(pair: tuple[Quiv, Quiv]) -> None:
    first, second = pair
    heard: dict[str, list[str]] = {"first": [], "second": []}
    ended = threading.Event()

    def listener(name: str) -> Callable[..., None]:
        def hear(event: Event, task: Any, job: Any) -> None:
            heard[name].append(job.worker)
            ended.set()

        return hear

    first.add_listener(Event.JOB_COMPLETED, listener("first"))
    second.add_listener(Event.JOB_COMPLETED, listener("second"))
    task_id = first.add_task("once-somewhere", lambda: None, interval=3600, delay=3600)
    assert second.add_task("once-somewhere", lambda: None, interval=3600, delay=3600) == task_id
    first.start()
    second.start()
    first.run_task_immediately(task_id)
    assert ended.wait(DEADLINE)
    (job,) = first.get_all_jobs()
    assert job.worker in (first.worker_id, second.worker_id)
    ran_here = "first" if job.worker == first.worker_id else "second"
    other = "second" if ran_here == "first" else "first"
    assert heard[ran_here] == [job.worker]
    assert heard[other] == []


def test_a_dashboard_stream_shows_the_jobs_another_process_ran(pair: tuple[Quiv, Quiv]) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from quiv.fastapi import quiv_router

    watcher, runner = pair
    go = threading.Event()

    def reporting(_progress_hook: ProgressHook) -> None:
        go.wait(DEADLINE)
        _progress_hook(done=1)

    task_id = runner.add_task("reporting", reporting, interval=3600, delay=3600)
    watcher.start()
    runner.start()
    app = FastAPI()
    app.include_router(quiv_router(watcher))
    relay = runner._durable.coordinator.relay if runner._durable is not None else None
    assert relay is not None
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json()["event"] == "hello"
        deadline = time.monotonic() + DEADLINE
        while not relay.sending:
            assert time.monotonic() < deadline, "the runner never started relaying"
            time.sleep(0.05)
        runner.run_task_immediately(task_id)
        go.set()
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["event"] != "job_completed":
            messages.append(ws.receive_json())
    events = [m["event"] for m in messages]
    assert events == ["job_started", "progress", "job_completed"]
    assert messages[1]["payload"] == {"done": 1}
    assert messages[2]["worker"] == runner.worker_id
    assert messages[2]["task_id"] == task_id


@pytest.mark.parametrize("listener", ["listening", "late"])
def test_a_stream_that_starts_later_is_relayed_to_at_once_not_at_the_next_heartbeat(
    pg_url: str, pg_conninfo: str, listener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heartbeats every 30 s: the runner hears at once that the watcher now wants events.

    ``listening``: by the NOTIFY sent with the watcher's mark. ``late``: the
    runner's LISTEN connection comes up only after that NOTIFY was sent (and
    lost), as right after a start; it reads the mark when it connects.
    """
    listen_now = threading.Event()
    if listener == "late":
        original = Coordinator._listen_loop

        def late_listen(self: Coordinator) -> None:
            listen_now.wait(DEADLINE)
            original(self)

        monkeypatch.setattr(Coordinator, "_listen_loop", late_listen)
    config = QuivConfig(database_url=pg_url, heartbeat_seconds=30, dead_after_seconds=60, poll_seconds=0.5)
    watcher, runner = Quiv(config=config), Quiv(config=config)
    try:
        ran = threading.Event()
        runner.add_task("work", ran.set, interval=3600, delay=3600)
        watcher.start()
        runner.start()
        if listener == "listening":
            listen_now.set()
            wait_for_listeners(pg_conninfo, 2)
        relay = runner._durable.coordinator.relay if runner._durable is not None else None
        assert relay is not None

        def sending() -> bool:  # read afresh each time (mypy would narrow the attribute itself)
            assert relay is not None
            return relay.sending

        assert not sending()
        inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        watcher._subscribe_remote(inbox.put)  # a first client connects to the watcher's stream
        listen_now.set()
        deadline = time.monotonic() + DEADLINE
        while not sending():
            assert time.monotonic() < deadline, "the runner did not start relaying before its heartbeat"
            time.sleep(0.01)
        runner.run_task_immediately(next(t.id for t in runner.get_all_tasks()))
        drain_until(inbox, lambda p: p["e"] == "job_completed")
    finally:
        watcher.shutdown(timeout=5)
        runner.shutdown(timeout=5)


def test_the_listener_thread_never_holds_a_pooled_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown does not wait for the LISTEN thread, so it must not use the store's pool: a
    connection it held while the engine was disposed would be left open, and only garbage
    collection would close it (a ResourceWarning in whatever runs then)."""
    from quiv._durable.store import DurableStore

    threads: set[str] = set()
    original = DurableStore._tx

    def recording(self: DurableStore, *args: Any, **kwargs: Any) -> Any:
        threads.add(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DurableStore, "_tx", recording)
    config = QuivConfig(database_url=pg_url, heartbeat_seconds=0.2, dead_after_seconds=5, poll_seconds=0.5)
    watcher, runner = Quiv(config=config), Quiv(config=config)
    try:
        runner.add_task("work", lambda: None, interval=0.1)
        watcher.start()
        runner.start()
        inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        watcher._subscribe_remote(inbox.put)
        drain_until(inbox, lambda p: p["e"] == "job_completed")
    finally:
        watcher.shutdown(timeout=5)
        runner.shutdown(timeout=5)
    assert "quiv-listener" not in threads
    assert "quiv-heartbeat" in threads  # the reads the listener asks for happen there
