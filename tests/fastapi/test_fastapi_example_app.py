"""The example app, started the way its README says, exercised end to end over HTTP and WebSocket."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi_support import DEADLINE
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]


class App:
    """``uvicorn examples.fastapi_app.main:app`` in a child process, on a port it picks itself."""

    def __init__(self, token: str | None = None) -> None:
        env = dict(os.environ, EXAMPLE_STEP_SECONDS="0.05", PYTHONUNBUFFERED="1")
        env.pop("EXAMPLE_API_TOKEN", None)
        if token is not None:
            env["EXAMPLE_API_TOKEN"] = token
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.fastapi_app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._fresh: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base = ""

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            self._fresh.put(line)

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        while True:
            try:
                line = self._fresh.get(timeout=DEADLINE)
            except queue.Empty:
                raise AssertionError(f"no log line matching {pattern!r}:\n{''.join(self.lines)}") from None
            found = re.search(pattern, line)
            if found:
                return found

    def call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base + path, method=method)
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            body = response.read()
            return (
                json.loads(body) if body and response.headers["content-type"] == "application/json" else body
            )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(DEADLINE)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(DEADLINE)


@contextlib.contextmanager
def serving(token: str | None = None) -> Iterator[App]:
    """The example app under uvicorn until the block ends (``token``: EXAMPLE_API_TOKEN)."""
    running = App(token=token)
    try:
        port = running.wait_for_line(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        running.base = f"http://127.0.0.1:{port}"
        yield running
    finally:
        running.stop()
        if running.process.stderr is not None:
            running.process.stderr.close()


@pytest.fixture
def app() -> Iterator[App]:
    with serving() as running:
        yield running


def test_the_example_app_runs_a_task_end_to_end(app: App) -> None:
    tasks = {task["task_name"]: task for task in app.call("GET", "/quiv/tasks")}
    assert set(tasks) == {"cleanup_stale_records", "generate_report", "heartbeat"}  # found by autodiscover
    report = tasks["generate_report"]["id"]

    with connect(app.base.replace("http", "ws") + "/quiv/ws", open_timeout=DEADLINE) as stream:
        assert json.loads(stream.recv(timeout=DEADLINE))["event"] == "hello"
        assert app.call("POST", f"/quiv/tasks/{report}/run") == {"task_id": report, "queued": 1}
        steps = []
        while True:
            message = json.loads(stream.recv(timeout=DEADLINE))
            if message["task_id"] != report:
                continue  # the heartbeat runs too
            if message["event"] == "progress":
                steps.append(message["payload"]["step"])
            if message["event"] == "job_completed":
                job_id = message["job_id"]
                break
        # Progress is coalesced (at most one message per job every 0.1 s): steps may be
        # skipped, never reordered, and the last one always arrives before the end.
        assert steps == sorted(set(steps))
        assert steps[-1] == 5

        # The application's own route adds a one-off task next to the declared ones.
        queued = app.call("POST", "/reports/monthly")
        while True:
            message = json.loads(stream.recv(timeout=DEADLINE))
            if message["task_id"] == queued["task_id"] and message["event"] == "job_completed":
                break

    job = app.call("GET", f"/quiv/jobs/{job_id}")
    assert job["status"] == "completed"
    assert job["task_name"] == "generate_report"
    assert b"<title>quiv example" in app.call("GET", "/quiv/dashboard")
    assert app.stop() == 0
    log = "".join(app.lines)
    # Log lines written inside the job carry its id and task name (quiv.logging.JobContextFilter).
    assert (
        f"[job {job_id[:8]} generate_report] examples.fastapi_app.tasks.report: report 'weekly-summary'"
        in log
    )
    assert "[job - -] examples.fastapi_app.main: application stopped" in log
    assert "Traceback" not in log


def test_under_uvicorn_a_stream_client_is_closed_with_1012_at_shutdown(app: App) -> None:
    """uvicorn closes WebSockets (1012) before the lifespan shutdown runs; docs/fastapi.md says so."""
    from websockets.exceptions import ConnectionClosed

    with connect(app.base.replace("http", "ws") + "/quiv/ws", open_timeout=DEADLINE) as stream:
        assert json.loads(stream.recv(timeout=DEADLINE))["event"] == "hello"
        app.process.send_signal(signal.SIGINT)
        closed: ConnectionClosed | None = None
        for _ in range(100):  # a heartbeat event or two may still arrive first
            try:
                stream.recv(timeout=DEADLINE)
            except ConnectionClosed as exc:
                closed = exc
                break
    assert closed is not None, "the connection stayed open after SIGINT"
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1012
    assert app.stop() == 0


@pytest.fixture
def guarded_app() -> Iterator[App]:
    with serving(token="s3cret") as running:
        yield running


@pytest.mark.parametrize("credentials", ["with-token", "without-token"])
def test_schemathesis_finds_nothing_in_the_example_app(guarded_app: App, credentials: str) -> None:
    """Every check of schemathesis, a bounded number of generated requests, with and without the token."""
    headers = ["-H", "Authorization: Bearer s3cret"] if credentials == "with-token" else []
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{guarded_app.base}/openapi.json"]
    options = ["--checks", "all", "--max-examples", "25", "--seed", "1", "--no-color", *headers]
    result = subprocess.run([*command, *options], capture_output=True, text=True, timeout=600, cwd=ROOT)
    summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert result.returncode == 0, result.stdout[-4000:]
    assert summary is not None, result.stdout[-2000:]
    assert int(summary.group(1)) == int(summary.group(2)) > 100
