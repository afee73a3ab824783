"""``run_subprocess``: the child is stopped when the job is (terminate, then kill) and always reaped."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from quiv import ConfigurationError, JobStatus, run_subprocess
from quiv._core.stop import StopEvent
from quiv.testing import ManualClock

from .support import DEADLINE, QuivFactory

#: A child stopped by SIGTERM must be gone well before this (it would otherwise sleep 30 s).
PROMPT = 2.0


class Children:
    """Records every ``subprocess.Popen`` created while installed."""

    def __init__(self) -> None:
        self.created: queue.Queue[subprocess.Popen[Any]] = queue.Queue()
        self.all: list[subprocess.Popen[Any]] = []

    def next(self) -> subprocess.Popen[Any]:
        try:
            return self.created.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError("no child process was started") from None


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[Children]:
    record = Children()
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            record.all.append(self)
            record.created.put(self)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    yield record
    for child in record.all:  # never leave a child behind, even when a test failed
        if child.poll() is None:
            child.kill()
            child.wait()


def assert_reaped(child: subprocess.Popen[Any]) -> None:
    assert child.returncode is not None
    assert child.poll() is not None
    with pytest.raises(ChildProcessError):  # no zombie left: the pid was already waited for
        os.waitpid(child.pid, os.WNOHANG)


def test_a_cancelled_job_terminates_its_child_promptly(
    make_quiv: QuivFactory, clock: ManualClock, children: Children
) -> None:
    outcome: queue.Queue[object] = queue.Queue()
    job_ids: queue.Queue[str] = queue.Queue()

    def handler(_job_id: str) -> None:
        job_ids.put(_job_id)
        outcome.put(run_subprocess(["sleep", "30"]).returncode)

    scheduler = make_quiv(clock=clock)
    scheduler.add_task("sleeper", handler, interval=3600)
    scheduler.start()
    job_id = job_ids.get(timeout=DEADLINE)
    child = children.next()
    started = time.monotonic()
    assert scheduler.cancel_job(job_id)
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert time.monotonic() - started < PROMPT
    assert job.status is JobStatus.CANCELLED
    assert outcome.get(timeout=DEADLINE) == -signal.SIGTERM
    assert_reaped(child)


def test_a_child_ignoring_sigterm_is_killed_after_terminate_grace(
    make_quiv: QuivFactory, clock: ManualClock, children: Children
) -> None:
    ready_r, ready_w = os.pipe()
    outcome: queue.Queue[object] = queue.Queue()
    job_ids: queue.Queue[str] = queue.Queue()

    def handler(_job_id: str) -> None:
        job_ids.put(_job_id)
        result = run_subprocess(
            ["sh", "-c", "trap '' TERM; echo ready >&2; sleep 30"],
            terminate_grace=0.5,
            stderr=ready_w,
            start_new_session=True,
        )
        outcome.put(result.returncode)

    try:
        scheduler = make_quiv(clock=clock)
        scheduler.add_task("stubborn", handler, interval=3600)
        scheduler.start()
        job_id = job_ids.get(timeout=DEADLINE)
        child = children.next()
        readable, _, _ = select.select([ready_r], [], [], DEADLINE)
        assert readable, "the child never said it ignores SIGTERM"
        assert os.read(ready_r, 16) == b"ready\n"
        started = time.monotonic()
        assert scheduler.cancel_job(job_id)
        job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
        elapsed = time.monotonic() - started
    finally:
        os.close(ready_r)
        os.close(ready_w)
        for child in children.all:  # the shell's own child (sleep) is in its process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
    assert 0.5 <= elapsed < 0.5 + PROMPT
    assert job.status is JobStatus.CANCELLED
    assert outcome.get(timeout=DEADLINE) == -signal.SIGKILL
    assert_reaped(child)


def test_a_task_timeout_stops_the_child(
    make_quiv: QuivFactory, clock: ManualClock, children: Children
) -> None:
    job_ids: queue.Queue[str] = queue.Queue()

    def handler(_job_id: str) -> None:
        job_ids.put(_job_id)
        run_subprocess(["sleep", "30"])

    scheduler = make_quiv(clock=clock)
    scheduler.add_task("sleeper", handler, interval=3600, timeout=10)
    scheduler.start()
    job_id = job_ids.get(timeout=DEADLINE)
    child = children.next()
    started = time.monotonic()
    clock.advance(10)
    job = scheduler.wait_for_job(job_id, timeout=DEADLINE)
    assert time.monotonic() - started < PROMPT
    assert job.status is JobStatus.CANCELLED
    assert "timed out" in (job.error_message or "")
    assert_reaped(child)


def test_timeout_raises_timeout_expired_and_reaps_the_child(children: Children) -> None:
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        run_subprocess(["sleep", "30"], timeout=0.2, terminate_grace=0.5)
    assert 0.2 <= time.monotonic() - started < PROMPT
    assert caught.value.timeout == 0.2
    assert_reaped(children.next())


def test_timeout_inside_a_job_fails_it(
    make_quiv: QuivFactory, clock: ManualClock, children: Children
) -> None:
    job_ids: queue.Queue[str] = queue.Queue()

    def handler(_job_id: str) -> None:
        job_ids.put(_job_id)
        run_subprocess(["sleep", "30"], timeout=0.2)

    scheduler = make_quiv(clock=clock)
    scheduler.add_task("sleeper", handler, interval=3600)
    scheduler.start()
    job = scheduler.wait_for_job(job_ids.get(timeout=DEADLINE), timeout=DEADLINE)
    assert job.status is JobStatus.FAILED
    assert (job.error_message or "").startswith("TimeoutExpired")
    assert_reaped(children.next())


@pytest.mark.parametrize("event_type", [threading.Event, StopEvent], ids=["threading.Event", "StopEvent"])
def test_an_explicit_stop_event(children: Children, event_type: type[threading.Event]) -> None:
    stop = event_type()
    outcome: queue.Queue[object] = queue.Queue()

    def call() -> None:
        outcome.put(run_subprocess(["sleep", "30"], stop_event=stop).returncode)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    child = children.next()
    started = time.monotonic()
    stop.set()
    assert outcome.get(timeout=DEADLINE) == -signal.SIGTERM
    assert time.monotonic() - started < PROMPT
    thread.join(DEADLINE)
    assert_reaped(child)


def test_an_already_set_stop_event_stops_the_child_at_once(children: Children) -> None:
    stop = StopEvent()
    stop.set()
    started = time.monotonic()
    result = run_subprocess(["sleep", "30"], stop_event=stop)
    assert time.monotonic() - started < PROMPT
    assert result.returncode == -signal.SIGTERM
    assert_reaped(children.next())


def test_check_raises_for_a_stopped_child(children: Children) -> None:
    stop = StopEvent()
    stop.set()
    with pytest.raises(subprocess.CalledProcessError) as caught:
        run_subprocess(["sleep", "30"], stop_event=stop, check=True)
    assert caught.value.returncode == -signal.SIGTERM
    assert_reaped(children.next())


def test_works_like_subprocess_run(children: Children) -> None:
    result = run_subprocess(
        ["sh", "-c", "cat; echo err >&2; exit 3"], input="in\n", capture_output=True, text=True
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, "in\n", "err\n")
    assert result.args == ["sh", "-c", "cat; echo err >&2; exit 3"]
    with pytest.raises(subprocess.CalledProcessError) as caught:
        run_subprocess(["sh", "-c", "exit 4"], check=True)
    assert caught.value.returncode == 4
    assert run_subprocess("echo shell", shell=True, capture_output=True).stdout == b"shell\n"
    for child in children.all:
        assert_reaped(child)


@pytest.mark.parametrize("grace", [-1, "5", None])
def test_a_bad_terminate_grace_is_refused(grace: object) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(repr(grace))):
        run_subprocess(["true"], terminate_grace=grace)  # type: ignore[arg-type]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("whole_group", [True, False])
def test_kill_process_group_also_stops_the_childs_own_children(tmp_path: Any, whole_group: bool) -> None:
    pid_file = tmp_path / "grandchild.pid"
    stop = StopEvent()
    done: queue.Queue[int] = queue.Queue()
    script = f"sleep 30 & echo $! > {pid_file}; wait"

    def run() -> None:
        result = run_subprocess(
            ["sh", "-c", script], stop_event=stop, kill_process_group=whole_group, terminate_grace=0.5
        )
        done.put(result.returncode)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + DEADLINE
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the file the shell writes, with a deadline
    grandchild = int(pid_file.read_text())
    stop.set()
    assert done.get(timeout=DEADLINE) < 0
    runner.join(DEADLINE)
    try:
        if whole_group:
            gone_by = time.monotonic() + DEADLINE
            while _alive(grandchild) and time.monotonic() < gone_by:
                time.sleep(0.01)
            assert not _alive(grandchild), "the shell's own child must be stopped with the group"
        else:
            assert _alive(grandchild), "without kill_process_group only the direct child is signalled"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)
