"""Helpers for the FastAPI tests: a real uvicorn server in a thread, deadlines, step gates.

This folder has no ``__init__.py`` on purpose: as a package it would be named
``fastapi`` and shadow the real one. Its modules have unique names instead.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from quiv import Event, Job, Quiv, Task
from quiv.types import ProgressHook

with warnings.catch_warnings():
    # Recent Starlette warns when its TestClient runs on httpx rather than httpx2; either works here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

__all__ = ["DEADLINE", "JobEvents", "ServerThread", "Steps", "TestClient", "idle", "wait_until"]

T = TypeVar("T")

#: Upper bound for anything a test waits for; generous for a loaded CI machine.
DEADLINE = 20.0


def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class ServerThread:
    """A real uvicorn server for ``app`` on 127.0.0.1 (a free port), run in a thread.

    The listening socket is bound before the thread starts, so there is no
    race for the port. Leaving the block stops the server and runs the app's
    lifespan shutdown.
    """

    def __init__(self, app: FastAPI, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "ws": "websockets-sansio"}
        options.update(config)
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.thread = threading.Thread(target=self._run, name="uvicorn-test-server", daemon=True)
        self.error: BaseException | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # reported by __enter__/__exit__
            self.error = exc

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), what="uvicorn to start")
        if not self.server.started:
            raise RuntimeError(f"uvicorn did not start: {self.error!r}")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(DEADLINE)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"
        if self.error is not None:
            raise self.error


class Steps:
    """A handler that reports progress ``total`` times, each step released by the test.

    ``handler`` waits for :meth:`release` before each report (or returns
    early when its stop event is set), so a test decides exactly how far
    the job has gone, with no sleeping.
    """

    def __init__(self, total: int = 4) -> None:
        self.total = total
        self._gates = [threading.Event() for _ in range(total)]
        self.started = threading.Event()

    def release(self, step: int | None = None) -> None:
        """Let step ``step`` (1-based) happen, or every remaining step."""
        gates = self._gates if step is None else [self._gates[step - 1]]
        for gate in gates:
            gate.set()

    def handler(
        self,
        _stop_event: threading.Event | None = None,
        _progress_hook: ProgressHook | None = None,
    ) -> None:
        self.started.set()
        for step, gate in enumerate(self._gates, start=1):
            while not gate.wait(0.01):
                if _stop_event is not None and _stop_event.is_set():
                    return
            if _progress_hook is not None:
                _progress_hook(step=step, total=self.total, message=f"step {step} of {self.total}")


class JobEvents:
    """Collects ``(event, job)`` of every job event of a scheduler, for tests to wait on."""

    def __init__(self, scheduler: Quiv) -> None:
        self.items: queue.Queue[tuple[Event, Job]] = queue.Queue()
        for event in (Event.JOB_STARTED, Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED):
            scheduler.add_listener(event, self._record)

    def _record(self, event: Event, task: Task, job: Job) -> None:
        self.items.put((event, job))

    def next(self, event: Event, timeout: float = DEADLINE) -> Job:
        """The job of the next ``event`` (earlier events of other kinds are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event.value} within {timeout} s")
            try:
                seen, job = self.items.get(timeout=remaining)
            except queue.Empty:
                continue
            if seen is event:
                return job


def idle() -> None:
    """A handler that does nothing."""
