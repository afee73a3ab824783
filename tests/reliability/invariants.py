"""The invariants every reliability test holds the engine to, and the recorder that observes them.

A :class:`Recorder` watches one scheduler from the outside: a listener on
every event, handlers that note when they enter and return (and count how many
jobs of one task are inside at once), and wrappers around the calls whose
effect is checked later (pause, resume, run now, remove). Two functions then
judge what it saw:

* :func:`check_invariants` while the scheduler runs: every job that started
  ends in exactly one terminal status with ``ended_at`` and
  ``duration_seconds`` set and exactly one terminal event; no job stays
  ``running`` once its handler returned; never two jobs of one task at once;
  no job of a paused task starts after ``pause_task`` returned (unless
  ``run_task_immediately`` was called after it); a removed task never runs
  again.
* :func:`shutdown_and_check` around ``shutdown()``: it returns within its
  bound, no ``quiv-`` thread is left (except workers stuck in handlers the test
  knows about), the private directory is gone, every public call works or
  raises the documented error without hanging, and nothing runs or fires
  afterwards.

Nothing here sleeps to wait for an outcome: waits are on a condition the
recorder notifies, always with a deadline.
"""

from __future__ import annotations

import concurrent.futures
import faulthandler
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from quiv import (
    Event,
    Job,
    JobStatus,
    Quiv,
    QuivError,
    SchedulerStoppedError,
    Task,
    run_on_main,
)

__all__ = [
    "BASE_EXCEPTIONS",
    "TERMINAL_EVENTS",
    "Recorder",
    "call_with_deadline",
    "check_invariants",
    "quiv_threads",
    "shutdown_and_check",
    "stopped_calls",
    "wait_until",
]

TERMINAL_EVENTS = {
    Event.JOB_COMPLETED: JobStatus.COMPLETED,
    Event.JOB_FAILED: JobStatus.FAILED,
    Event.JOB_CANCELLED: JobStatus.CANCELLED,
}

#: The ``BaseException`` subclasses a ``raise-<name>`` handler raises.
BASE_EXCEPTIONS: dict[str, type[BaseException]] = {
    "SystemExit": SystemExit,
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
}

#: How long any single wait in these helpers may take before the test fails.
DEFAULT_DEADLINE = 10.0


def quiv_threads() -> list[threading.Thread]:
    """Every live thread the engine started (they are all named ``quiv-...``)."""
    return [t for t in threading.enumerate() if t.name.startswith("quiv-") and t.is_alive()]


def wait_until(cond: threading.Condition, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait on ``cond`` (held by the caller) until ``predicate()``; fail with ``what`` after ``timeout``."""
    if not cond.wait_for(predicate, timeout):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def call_with_deadline(func: Callable[[], Any], timeout: float = 5.0, name: str = "") -> tuple[str, Any]:
    """Run ``func`` on a helper thread; return ("ok", result) or ("raised", exc); fail if it hangs.

    On a hang every thread's stack is printed, so the culprit is visible.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadline")
    try:
        future = pool.submit(func)
        done, _ = concurrent.futures.wait([future], timeout)
        if not done:
            faulthandler.dump_traceback(all_threads=True)
            raise AssertionError(f"{name or func!r} did not return within {timeout} s (hang)")
        exc = future.exception()
        return ("ok", future.result()) if exc is None else ("raised", exc)
    finally:
        pool.shutdown(wait=False)


@dataclass
class _Start:
    seq: int
    task_id: str


@dataclass
class _Terminal:
    seq: int
    event: Event
    job: Job


@dataclass
class _Entry:
    seq: int
    key: str
    thread: threading.Thread
    returned: int | None = None


@dataclass
class _Window:
    """After ``pause_task``/``remove_task`` returned: jobs known then, and when that was."""

    kind: str
    task_id: str
    begin: int
    ready: int
    snapshot: frozenset[str]


@dataclass
class _Call:
    kind: str
    task_id: str
    begin: int
    end: int | None = None


@dataclass
class Recorder:
    """Watches one scheduler through listeners, instrumented handlers and wrapped calls."""

    scheduler: Quiv
    cond: threading.Condition = field(default_factory=threading.Condition)
    seq: int = 0
    starts: dict[str, list[_Start]] = field(default_factory=dict)
    terminals: dict[str, list[_Terminal]] = field(default_factory=dict)
    task_events: list[tuple[int, Event, str]] = field(default_factory=list)
    entries: dict[str, _Entry] = field(default_factory=dict)
    inside: Counter[str] = field(default_factory=Counter)
    gates: dict[str, threading.Event] = field(default_factory=dict)
    job_key: dict[str, str] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    windows: list[_Window] = field(default_factory=list)
    calls: list[_Call] = field(default_factory=list)
    shutdown_seq: int | None = None
    directory: str | None = None
    handler_calls: int = 0

    def __post_init__(self) -> None:
        for event in Event:
            self.scheduler.add_listener(event, self.on_event)

    # ------------------------------------------------------------ recording
    def _bump_locked(self) -> int:
        self.seq += 1
        return self.seq

    def mark(self) -> int:
        """A point in the recorded order (for "after this call returned")."""
        with self.cond:
            return self._bump_locked()

    def on_event(self, event: Event, task: Task, job: Job | None = None) -> None:
        """The listener registered for every event; never raises (violations are collected)."""
        with self.cond:
            seq = self._bump_locked()
            if self.shutdown_seq is not None:
                self.violations.append(f"{event.value} fired after shutdown() returned (task {task.id})")
            if job is None:
                self.task_events.append((seq, event, task.id))
            elif event is Event.JOB_STARTED:
                self.starts.setdefault(job.id, []).append(_Start(seq, task.id))
                if job.task_id != task.id:
                    self.violations.append(f"JOB_STARTED for job {job.id} carries task {task.id}")
            else:
                self.terminals.setdefault(job.id, []).append(_Terminal(seq, event, job))
            self.cond.notify_all()

    # ------------------------------------------------------------- handlers
    def handler(self) -> Callable[..., None]:
        """A handler taking ``key`` and ``mode`` that records itself; see :meth:`_run` for modes."""

        def handler(
            key: str,
            mode: str = "ok",
            _job_id: str | None = None,
            _stop_event: threading.Event | None = None,
        ) -> None:
            assert _job_id is not None
            assert _stop_event is not None
            self._run(key, mode, _job_id, _stop_event)

        return handler

    def async_handler(self) -> Callable[..., Coroutine[Any, Any, None]]:
        """The same as :meth:`handler`, as a coroutine function (run in the job's own loop)."""

        async def handler(
            key: str,
            mode: str = "ok",
            _job_id: str | None = None,
            _stop_event: threading.Event | None = None,
        ) -> None:
            assert _job_id is not None
            assert _stop_event is not None
            self._run(key, mode, _job_id, _stop_event)

        return handler

    def _run(self, key: str, mode: str, job_id: str, stop: threading.Event) -> None:
        """Modes: ok, fail (ValueError), gate (until released or stopped), gate-deaf (until released),
        slow (a millisecond, or until stopped), raise-<BaseException name>."""
        gate = threading.Event()
        with self.cond:
            seq = self._bump_locked()
            self.handler_calls += 1
            if self.shutdown_seq is not None:
                self.violations.append(f"handler of {key} entered after shutdown() returned")
            if job_id in self.entries:
                self.violations.append(f"job {job_id} entered its handler twice")
            self.entries[job_id] = _Entry(seq, key, threading.current_thread())
            self.job_key[job_id] = key
            self.inside[key] += 1
            if self.inside[key] > 1:
                self.violations.append(f"{self.inside[key]} jobs of task {key} ran at once (job {job_id})")
            if mode.startswith("gate"):
                self.gates[job_id] = gate
            self.cond.notify_all()
        try:
            if mode == "fail":
                raise ValueError(f"boom from {key}")
            if mode.startswith("raise-"):
                raise BASE_EXCEPTIONS[mode[6:]](f"{mode[6:]} from {key}")
            if mode == "slow":
                stop.wait(0.001)
            elif mode == "gate":
                while not gate.wait(0.005) and not stop.is_set():
                    pass
            elif mode == "gate-deaf":
                gate.wait()
        finally:
            with self.cond:
                self.inside[key] -= 1
                self.entries[job_id].returned = self._bump_locked()
                self.cond.notify_all()

    def running_in_handler(self) -> set[str]:
        """Jobs inside a handler right now."""
        with self.cond:
            return {job_id for job_id, e in self.entries.items() if e.returned is None}

    def wait_entered(
        self, count: int, key: str | None = None, timeout: float = DEFAULT_DEADLINE
    ) -> list[str]:
        """Wait until ``count`` jobs (of ``key``, if given) are inside their handler; return their ids."""

        def inside() -> list[str]:
            return [
                j for j, e in self.entries.items() if e.returned is None and (key is None or e.key == key)
            ]

        with self.cond:
            wait_until(self.cond, lambda: len(inside()) >= count, timeout, f"{count} job(s) of {key} inside")
            return inside()

    def wait_terminal(self, count: int, timeout: float = DEFAULT_DEADLINE) -> None:
        """Wait until ``count`` terminal events have been recorded in all."""
        with self.cond:
            wait_until(
                self.cond, lambda: sum(map(len, self.terminals.values())) >= count, timeout, "terminal events"
            )

    def release(self, job_id: str) -> None:
        """Let a gated job's handler return normally."""
        with self.cond:
            gate = self.gates[job_id]
        gate.set()

    def release_all(self) -> None:
        with self.cond:
            gates = list(self.gates.values())
        for gate in gates:
            gate.set()

    # ---------------------------------------------------------- wrapped calls
    def _snapshot(self, task_id: str) -> frozenset[str]:
        # Scheduled before running: a job moving from one to the other between the two reads is
        # still in the second, and one that ended before the first started before this snapshot.
        jobs = self.scheduler.get_all_jobs(status=JobStatus.SCHEDULED)
        jobs += self.scheduler.get_all_jobs(status=JobStatus.RUNNING)
        return frozenset(j.id for j in jobs if j.task_id == task_id)

    def _window(self, kind: str, task_id: str, call: Callable[[], None]) -> None:
        begin = self.mark()
        call()
        snapshot = self._snapshot(task_id)
        with self.cond:
            self.windows.append(_Window(kind, task_id, begin, self._bump_locked(), snapshot))

    def pause(self, task_id: str) -> None:
        self._window("pause", task_id, lambda: self.scheduler.pause_task(task_id))

    def remove(self, task_id: str) -> None:
        self._window("remove", task_id, lambda: self.scheduler.remove_task(task_id))

    def _tracked(self, kind: str, task_id: str, call: Callable[[], Any]) -> Any:
        with self.cond:
            record = _Call(kind, task_id, self._bump_locked())
            self.calls.append(record)
        try:
            return call()
        finally:
            with self.cond:
                record.end = self._bump_locked()

    def resume(self, task_id: str, delay: float = 0) -> None:
        self._tracked("resume", task_id, lambda: self.scheduler.resume_task(task_id, delay))

    def run_now(self, task_id: str) -> int:
        result: int = self._tracked("run_now", task_id, lambda: self.scheduler.run_task_immediately(task_id))
        return result

    # --------------------------------------------------------------- counts
    def event_count(self, event: Event, task_id: str | None = None) -> int:
        with self.cond:
            if event is Event.JOB_STARTED:
                return sum(
                    1 for starts in self.starts.values() for s in starts if task_id in (None, s.task_id)
                )
            if event in TERMINAL_EVENTS:
                return sum(
                    1
                    for terms in self.terminals.values()
                    for t in terms
                    if t.event is event and task_id in (None, t.job.task_id)
                )
            return sum(1 for _, e, t in self.task_events if e is event and task_id in (None, t))


# ------------------------------------------------------------------ checks
def _pause_and_remove_violations(rec: Recorder) -> list[str]:
    """Starts that came after pause_task/remove_task returned and nothing explains.

    A start of a paused task is explained by a job already known when the call
    returned (the snapshot), by a ``resume_task`` that overlapped or followed
    the pause, or by a ``run_task_immediately`` request still pending: one
    called before the start with no other start of the task between its return
    and this start (decisions.md: pausing stops the schedule, not explicit
    requests; several pending requests collapse into one run).
    """
    problems: list[str] = []
    starts = sorted((s.seq, job_id, s.task_id) for job_id, ss in rec.starts.items() for s in ss)
    by_task: dict[str, list[int]] = {}
    for seq, _, task_id in starts:
        by_task.setdefault(task_id, []).append(seq)

    def requested(task_id: str, seq: int) -> bool:
        for call in rec.calls:
            if call.kind != "run_now" or call.task_id != task_id or call.begin >= seq:
                continue
            served = call.end is not None and any(call.end < other < seq for other in by_task[task_id])
            if not served:
                return True
        return False

    for seq, job_id, task_id in starts:
        for window in rec.windows:
            if window.task_id != task_id or seq <= window.ready or job_id in window.snapshot:
                continue
            if window.kind == "remove":
                problems.append(f"job {job_id} of task {task_id} started after remove_task returned")
                break
            resumed = any(
                c.kind == "resume"
                and c.task_id == task_id
                and c.begin < seq
                and (c.end is None or c.end > window.begin)
                for c in rec.calls
            )
            if resumed or requested(task_id, seq):
                continue
            history = [f"{c.kind}@{c.begin}-{c.end}" for c in rec.calls if c.task_id == task_id]
            history += [f"{w.kind}@{w.begin}-{w.ready}" for w in rec.windows if w.task_id == task_id]
            problems.append(
                f"job {job_id} of task {task_id} started (@{seq}) after pause_task returned; calls on "
                f"the task: {sorted(history, key=lambda h: int(h.split('@')[1].split('-')[0]))}"
            )
            break
    return problems


def check_invariants(
    rec: Recorder,
    *,
    stuck: Collection[str] = (),
    timeout: float = DEFAULT_DEADLINE,
    allow_purged: bool = False,
) -> dict[str, Job]:
    """Assert every invariant on what ``rec`` saw so far; return the stored jobs by id.

    ``stuck`` are jobs the test knows are blocked in their handler. Jobs whose
    handler has returned (and jobs that started but never reached a handler)
    are given ``timeout`` seconds to reach their terminal event.
    """
    scheduler = rec.scheduler

    def unsettled() -> list[str]:
        waiting = []
        for job_id in rec.starts:
            entry = rec.entries.get(job_id)
            in_handler = entry is not None and entry.returned is None
            if job_id not in rec.terminals and not in_handler and job_id not in stuck:
                waiting.append(job_id)
        return waiting

    with rec.cond:
        if not rec.cond.wait_for(lambda: not unsettled(), timeout):
            raise AssertionError(f"jobs whose handler returned never ended: {unsettled()}")
        assert not rec.violations, rec.violations
        for job_id, starts in rec.starts.items():
            assert len(starts) == 1, f"job {job_id} fired JOB_STARTED {len(starts)} times"
        for job_id, terms in rec.terminals.items():
            assert len(terms) == 1, f"job {job_id} fired {[t.event.value for t in terms]}"
            (term,) = terms
            job = term.job
            assert job.status is TERMINAL_EVENTS[term.event], f"{term.event} carried {job!r}"
            assert job.ended_at is not None, job
            assert job.duration_seconds is not None, job
            assert job.duration_seconds >= 0, job
            if job_id not in rec.starts:
                assert job.status is JobStatus.CANCELLED, f"job {job_id} ended without starting: {job!r}"
            entry = rec.entries.get(job_id)
            assert entry is None or entry.returned is not None, f"job {job_id} ended inside its handler"
        problems = _pause_and_remove_violations(rec)
        assert not problems, problems

    # The stored record must agree with the events, and nothing may stay running after its handler.
    # A job is stored as ended just before its terminal event is delivered: allow for that gap, both ways.
    deadline = time.monotonic() + timeout
    while True:
        with rec.cond:
            ended_before = {job_id: terms[0].job for job_id, terms in rec.terminals.items()}
        stored = {job.id: job for job in scheduler.get_all_jobs()}
        with rec.cond:
            inside = {j for j, e in rec.entries.items() if e.returned is None}
            ended = {job_id: terms[0].job for job_id, terms in rec.terminals.items()}
        running = {j for j, job in stored.items() if not job.status.is_terminal}
        lingering = running - inside - set(stuck)
        silent = {j for j, job in stored.items() if job.status.is_terminal and j not in ended}
        missing = set() if allow_purged else set(ended_before) - set(stored)
        if not (lingering or silent or missing) or time.monotonic() > deadline:
            break
        with rec.cond:
            rec.cond.wait(0.01)
    assert not lingering, f"jobs still {[stored[j] for j in lingering]} after their handler returned"
    assert not silent, f"stored jobs ended without a terminal event: {[stored[j] for j in silent]}"
    assert not missing, f"jobs ended (per their event) but are not stored: {sorted(missing)}"
    ended = ended_before
    for job_id, event_job in ended.items():
        kept = stored.get(job_id)
        if kept is None:
            assert allow_purged, f"job {job_id} ended ({event_job.status.value}) but is not stored"
            continue
        job = kept
        assert job.status is event_job.status, f"stored {job!r} but the event said {event_job!r}"
        assert job.ended_at is not None, job
        assert job.duration_seconds is not None, job
        assert job.ended_at >= job.started_at, job
    return stored


def stopped_calls(
    scheduler: Quiv, task_id: str | None, job_id: str | None
) -> Iterable[tuple[str, Callable[[], Any], Any]]:
    """(name, call, expectation) for every public call after shutdown; expectation is a value or an error.

    Calls naming a task or a job are included when an id is given.
    """

    def listener(event: Event, task: Task) -> None:
        raise AssertionError("no event may fire after shutdown")

    def noop() -> None:
        return None

    stopped = SchedulerStoppedError
    yield "add_task", lambda: scheduler.add_task("late", noop, interval=1), stopped
    if task_id is not None:
        yield "run_task_immediately", lambda: scheduler.run_task_immediately(task_id), stopped
        yield "pause_task", lambda: scheduler.pause_task(task_id), stopped
        yield "resume_task", lambda: scheduler.resume_task(task_id), stopped
        yield "remove_task", lambda: scheduler.remove_task(task_id), stopped
        yield "get_task", lambda: scheduler.get_task(task_id), stopped
    if job_id is not None:
        yield "get_job", lambda: scheduler.get_job(job_id), stopped
        yield "wait_for_job", lambda: scheduler.wait_for_job(job_id, timeout=1), stopped
        yield "cancel_job", lambda: scheduler.cancel_job(job_id), False
    yield "get_all_tasks", lambda: scheduler.get_all_tasks(), stopped
    yield "get_all_jobs", lambda: scheduler.get_all_jobs(), stopped
    yield "start", scheduler.start, stopped
    yield "startup", scheduler.startup, stopped
    yield "shutdown", lambda: scheduler.shutdown(timeout=1), None
    yield "stop", lambda: scheduler.stop(), None
    yield "add_listener", lambda: scheduler.add_listener(Event.TASK_ADDED, listener), None
    yield "remove_listener", lambda: scheduler.remove_listener(Event.TASK_ADDED, listener), None
    yield "run_on_main", lambda: run_on_main(lambda: 7).result(1), 7


def shutdown_and_check(
    rec: Recorder,
    *,
    timeout: float = 5.0,
    stuck: Collection[str] = (),
) -> None:
    """Shut the scheduler down and assert everything that must hold afterwards.

    ``stuck`` are jobs blocked in handlers that ignore their stop event: only
    their threads may outlive shutdown. The stopped scheduler is probed with
    the id of a task and a job it knew (unknown ids are covered on their own
    in test_bad_input).
    """
    scheduler = rec.scheduler
    try:
        tasks = scheduler.get_all_tasks(include_run_once=True)
    except SchedulerStoppedError:
        tasks = []
    with rec.cond:
        known_jobs = list(rec.starts) or list(rec.terminals)
    # A run-once task may be deleted by shutdown itself (its job is cancelled): probe a recurring one.
    task_id = next((t.id for t in tasks if not t.run_once), None)
    job_id = known_jobs[0] if known_jobs else None
    persister = scheduler._writer
    store: Any = persister.store if persister is not None else None
    directory: str | None = store.directory if store is not None else None
    rec.directory = directory
    started = time.monotonic()
    scheduler.shutdown(timeout=timeout)
    elapsed = time.monotonic() - started
    with rec.cond:
        rec.shutdown_seq = rec._bump_locked()
        stuck_threads = {rec.entries[j].thread for j in stuck if j in rec.entries}
    assert elapsed <= timeout + 3.0, f"shutdown(timeout={timeout}) took {elapsed:.2f} s"
    with rec.cond:
        unended = [j for j in rec.starts if j not in rec.terminals and j not in stuck]
        doubled = {j: [t.event.value for t in ts] for j, ts in rec.terminals.items() if len(ts) > 1}
    assert not unended, f"jobs that started never ended by shutdown(): {unended}"
    assert not doubled, f"jobs with more than one terminal event: {doubled}"
    leftover = [t for t in quiv_threads() if t not in stuck_threads]
    assert not leftover, f"threads alive after shutdown(): {leftover}"
    if directory is not None:
        assert not os.path.exists(directory), f"{directory} survived shutdown()"
    for name, call, expected in stopped_calls(scheduler, task_id, job_id):
        outcome, value = call_with_deadline(call, name=f"{name}() after shutdown")
        if isinstance(expected, type):
            assert outcome == "raised", f"{name} after shutdown returned {value!r}, not {expected.__name__}"
            assert isinstance(value, expected), (
                f"{name} after shutdown gave {outcome} {value!r}, expected {expected.__name__}"
            )
            assert str(value), f"{name}: {type(value).__name__} without a message"
        else:
            if outcome == "raised":
                assert isinstance(value, QuivError), f"{name} after shutdown raised a raw {value!r}"
                raise AssertionError(f"{name} after shutdown raised {value!r}, expected {expected!r}")
            assert value == expected, f"{name} after shutdown returned {value!r}, expected {expected!r}"
    with rec.cond:
        assert not rec.violations, rec.violations
