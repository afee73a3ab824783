"""The example app under ``uvicorn --workers 3``, the three processes sharing one PostgreSQL database.

The app is started exactly as its README says, with ``QUIV_DATABASE_URL`` set
to a fresh database. Each declared task must run once per slot of its
schedule, not once per process, and the job history any process answers with
must hold the runs of several processes.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi_support import DEADLINE
from shared import conftest as shared_fixtures

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

#: A fresh PostgreSQL database per test (tests/shared/conftest.py); it skips, with the same message as
#: the shared-mode tests, without QUIV_TEST_DATABASE_URL.
pg_url = shared_fixtures.pg_url

WORKERS = 3
#: The heartbeat task's interval under test (EXAMPLE_HEARTBEAT_SECONDS); the other tasks keep theirs.
HEARTBEAT_SECONDS = 1.0
#: How long the schedule is watched after the app answers, at least.
WINDOW_SECONDS = 8.0
#: The tasks the example declares, and their intervals under test.
DECLARED = {
    "heartbeat": HEARTBEAT_SECONDS,
    "generate_report": 7 * 24 * 3600.0,
    "cleanup_stale_records": 3600.0,
}


def utc(text: str) -> datetime:
    """A time of the API (``...Z``; Python 3.10's ``fromisoformat`` does not read the ``Z``)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def within(deadline: float, predicate: Callable[[], T | None], what: str, log: Callable[[], str]) -> T:
    """Poll ``predicate`` until it returns something truthy, or fail once ``deadline`` (monotonic) passes."""
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; server log:\n{log()[-6000:]}")
        time.sleep(0.1)


class Server:
    """``uvicorn examples.fastapi_app.main:app --workers 3`` in its own process group."""

    def __init__(self, database_url: str) -> None:
        env = dict(
            os.environ,
            QUIV_DATABASE_URL=database_url,
            EXAMPLE_STEP_SECONDS="0.05",
            EXAMPLE_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
            PYTHONUNBUFFERED="1",
        )
        env.pop("EXAMPLE_API_TOKEN", None)
        #: Before the processes exist, so before any job can run.
        self.started = time.monotonic()
        command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app.main:app"]
        options = ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port", "0"]
        self.process = subprocess.Popen(
            [*command, *options],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the workers are in the group too: one killpg ends them all
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

    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_port(self) -> None:
        deadline = time.monotonic() + DEADLINE
        pattern = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._fresh.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(f"uvicorn never said where it listens:\n{self.log()}") from None
            found = pattern.search(line)
            if found:
                self.base = f"http://127.0.0.1:{found.group(1)}"
                return

    def get(self, path: str) -> Any:
        """A GET on a new connection, so any of the worker processes may answer it."""
        with urllib.request.urlopen(self.base + path, timeout=DEADLINE) as response:
            return json.loads(response.read())

    def answers(self) -> bool:
        try:
            self.get("/quiv/stats")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                # The parent stops its workers; each runs its lifespan shutdown.
                self.process.send_signal(signal.SIGINT)
                self.process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # anything left of the group
            self.process.wait()
            self._reader.join(DEADLINE)
            if self.process.stderr is not None:
                self.process.stderr.close()


@pytest.fixture
def server(pg_url: str) -> Iterator[Server]:
    running = Server(pg_url)
    try:
        running.wait_for_port()
        yield running
    finally:
        running.stop()


def test_three_workers_run_each_slot_once_and_any_of_them_shows_every_run(server: Server) -> None:
    started = server.started
    deadline = time.monotonic() + 2 * DEADLINE
    within(deadline, server.answers, "the app to answer", server.log)
    watch_until = time.monotonic() + WINDOW_SECONDS

    def every_run() -> list[dict[str, Any]] | None:
        """The job history once the window has passed and it shows runs of two processes or more."""
        page = server.get("/quiv/jobs?limit=500")
        assert len(page["items"]) < 500, "the history outgrew one page"
        workers = {job["worker"] for job in page["items"] if job["status"] != "missed"}
        if time.monotonic() < watch_until or len(workers) < 2:
            return None
        return list(page["items"])

    jobs = within(deadline, every_run, "runs by two worker processes or more", server.log)
    window = time.monotonic() - started

    runs = [job for job in jobs if job["status"] != "missed"]
    per_task = collections.Counter(job["task_name"] for job in runs)
    assert set(per_task) <= set(DECLARED), per_task  # nothing but the declared tasks ran
    for name, interval in DECLARED.items():
        allowed = window / interval + 2
        assert per_task[name] <= allowed, (
            f"{name} ran {per_task[name]} times in {window:.1f} s with an interval of {interval:g} s "
            f"(at most {allowed:.1f} expected): each process ran it"
        )
    assert per_task["heartbeat"] >= 2, per_task  # the schedule did run
    # Run by one process at a time, the heartbeat's runs are an interval apart (start to start, database
    # clock); three processes each running it would start runs within milliseconds of each other.
    starts = sorted(utc(job["started_at"]) for job in runs if job["task_name"] == "heartbeat")
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= HEARTBEAT_SECONDS / 2, gaps
    slots = collections.Counter((job["task_id"], job["scheduled_for"]) for job in jobs)
    assert max(slots.values()) == 1, "a slot of the schedule has two jobs"
    workers = {job["worker"] for job in runs}
    assert None not in workers
    assert 2 <= len(workers) <= WORKERS

    # Any process answers with the same history: ask on fresh connections a few times.
    ids = {job["id"] for job in runs}
    for _ in range(WORKERS * 2):
        shown = {job["id"] for job in server.get("/quiv/jobs?limit=500")["items"]}
        assert ids <= shown
    assert "Traceback" not in server.log()
