"""A stateful property test: random API calls against a model of what the scheduler must do.

Every rule leaves the scheduler quiescent (every job that can run has run,
gated jobs are inside their handler), so the model predicts exactly how many
jobs each task started and how each ended, every task's status and next run,
and every event each listener received. Time only moves through the
ManualClock, in whole seconds from a whole-second epoch, so schedule
arithmetic is exact.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from quiv import (
    Event,
    HandlerNotRegisteredError,
    Job,
    Quiv,
    Task,
    TaskNotFoundError,
    TaskNotScheduledError,
    TaskStatus,
)
from quiv.testing import ManualClock

from .invariants import TERMINAL_EVENTS, Recorder, check_invariants, shutdown_and_check

START = datetime(2030, 1, 1, tzinfo=timezone.utc)
T0 = int(START.timestamp())
#: Never more live tasks than this, so the pool (one more) is never full and every due job starts.
MAX_TASKS = 6
POOL_SIZE = MAX_TASKS + 2
SETTLE_SECONDS = 10.0

#: Counts for the closing report of the run.
STATS: dict[str, int] = {"examples": 0, "steps": 0, "jobs": 0}


@contextmanager
def shown_on_failure(machine: SchedulerMachine) -> Iterator[None]:
    """Print a failure as it happens: a race that does not replay would otherwise only show up as
    hypothesis' "Flaky" error, without the assertion that failed."""
    try:
        yield
    except BaseException:
        sys.stderr.write(f"first failure:\n{traceback.format_exc()}\nmodel: {machine.tasks!r}\n")
        raise


def cadence(due: int, ended: int, interval: int, fixed: bool) -> int:
    """The model's next run: ``interval`` after the end, or the first cadence point not in the past."""
    if not fixed:
        return ended + interval
    nxt = due + interval
    while nxt < ended:
        nxt += interval
    return nxt


@dataclass
class MTask:
    id: str
    key: str
    mode: str
    interval: int
    fixed: bool
    run_once: bool
    next_run: int
    sched: tuple[int, bool] | None
    paused: bool = False
    removed: bool = False
    running: str | None = None
    run_due: int = 0
    requested: tuple[int, bool] | None = None
    manual: int | None = None
    stop_set: bool = False
    started_once: bool = False
    outcomes: dict[Event, int] = field(default_factory=lambda: dict.fromkeys(TERMINAL_EVENTS, 0))

    @property
    def started(self) -> int:
        return sum(self.outcomes.values()) + (self.running is not None)


class CountingListener:
    """An extra listener, added and removed by the rules; counts what it receives per event."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[Event, int] = dict.fromkeys(Event, 0)
        self.cond: threading.Condition | None = None

    def __call__(self, event: Event, task: Task, job: Job | None = None) -> None:
        assert self.cond is not None
        with self.cond:
            self.counts[event] += 1
            self.cond.notify_all()

    def __repr__(self) -> str:
        return f"<listener {self.name}>"


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        STATS["examples"] += 1
        self.clock = ManualClock(start=START)
        self.scheduler = Quiv(clock=self.clock, pool_size=POOL_SIZE)
        self.rec = Recorder(self.scheduler)
        self.handler = self.rec.handler()
        self.now = T0
        self.tasks: dict[str, MTask] = {}
        self.order: list[str] = []
        self.events: dict[Event, int] = dict.fromkeys(Event, 0)
        self.listeners = [CountingListener("L0"), CountingListener("L1")]
        for listener in self.listeners:
            listener.cond = self.rec.cond
        self.registered: set[tuple[int, Event]] = set()
        self.expected_extra: list[dict[Event, int]] = [dict.fromkeys(Event, 0) for _ in self.listeners]
        self.scheduler.start()

    # ------------------------------------------------------------ the model
    def emit(self, event: Event) -> None:
        self.events[event] += 1
        for index, registered_event in self.registered:
            if registered_event is event:
                self.expected_extra[index][event] += 1

    def live(self) -> list[MTask]:
        return [t for t in (self.tasks[i] for i in self.order) if not t.removed]

    def start_job(self, task: MTask, due: int) -> None:
        task.sched = None
        task.manual = None
        task.started_once = True
        task.run_due = due
        task.next_run = due + task.interval
        task.running = "?"  # filled in from the recorder when the handler is entered
        self.emit(Event.JOB_STARTED)
        STATS["jobs"] += 1
        if task.mode != "gate":
            self.finish_job(task, Event.JOB_FAILED if task.mode == "fail" else Event.JOB_COMPLETED)

    def finish_job(self, task: MTask, outcome: Event) -> None:
        task.running = None
        task.stop_set = False
        task.outcomes[outcome] += 1
        self.emit(outcome)
        if task.removed:
            return
        if task.run_once:
            task.removed = True  # deleted, without TASK_REMOVED
            return
        forced = False
        if task.requested is not None:
            nxt, forced = task.requested
            task.requested = None
        else:
            nxt = cadence(task.run_due, self.now, task.interval, task.fixed)
        task.next_run = nxt
        if not task.paused or forced:
            task.sched = (nxt, forced)

    def run_due(self) -> None:
        """Start (and, for quick handlers, finish) every job that is due, until nothing is."""
        progress = True
        while progress:
            progress = False
            for task in self.live():
                if task.running is None and task.sched is not None:
                    due, forced = task.sched
                    if due <= self.now and (forced or not task.paused):
                        self.start_job(task, due)
                        progress = True

    def settle(self) -> None:
        """Let the model run what is due, then wait for the scheduler to have done exactly that."""
        with shown_on_failure(self):
            self._settle()

    def _settle(self) -> None:
        self.run_due()
        rec = self.rec
        want = {t.id: (t.started, sum(t.outcomes.values())) for t in self.tasks.values()}
        by_key = {t.key: t for t in self.tasks.values()}

        def counts() -> dict[str, tuple[int, int]]:
            started = dict.fromkeys(want, 0)
            ended = dict.fromkeys(want, 0)
            for starts in rec.starts.values():
                for s in starts:
                    started[s.task_id] = started.get(s.task_id, 0) + 1
            for terms in rec.terminals.values():
                for term in terms:
                    ended[term.job.task_id] = ended.get(term.job.task_id, 0) + 1
            return {t: (started[t], ended[t]) for t in started}

        def gated_inside() -> int:
            return sum(1 for e in rec.entries.values() if e.returned is None)

        def extra_ok() -> bool:
            return all(
                listener.counts == expected
                for listener, expected in zip(self.listeners, self.expected_extra, strict=True)
            )

        gates = sum(1 for t in self.live() if t.running is not None) + sum(
            1 for t in self.tasks.values() if t.removed and t.running is not None
        )
        with rec.cond:
            ok = rec.cond.wait_for(
                lambda: counts() == want and gated_inside() == gates and extra_ok(), SETTLE_SECONDS
            )
            assert ok, (
                f"scheduler did not reach the model: (started, ended) per task {counts()} != {want}; "
                f"gated inside {gated_inside()} != {gates}; listeners "
                f"{[listener.counts for listener in self.listeners]} != {self.expected_extra}"
            )
            for job_id, entry in rec.entries.items():
                if entry.returned is None:
                    by_key[entry.key].running = job_id

    # ------------------------------------------------------------- helpers
    def pick(self, index: int, live_only: bool = False) -> MTask:
        pool = self.live() if live_only else [self.tasks[i] for i in self.order]
        return pool[index % len(pool)]

    def has_tasks(self) -> bool:
        return bool(self.order)

    def has_gated_job(self) -> bool:
        return any(t.running is not None for t in self.tasks.values())

    # --------------------------------------------------------------- rules
    @precondition(lambda self: len(self.live()) < MAX_TASKS)
    @rule(
        mode=st.sampled_from(["ok", "ok", "fail", "gate"]),
        interval=st.integers(1, 10),
        delay=st.integers(0, 5),
        run_once=st.booleans(),
        fixed=st.booleans(),
    )
    def add_task(self, mode: str, interval: int, delay: int, run_once: bool, fixed: bool) -> None:
        key = f"k{len(self.order)}"
        task_id = self.scheduler.add_task(
            key,
            self.handler,
            interval=interval,
            delay=delay,
            run_once=run_once,
            fixed_interval=fixed,
            kwargs={"key": key, "mode": mode},
        )
        due = self.now + delay
        self.tasks[task_id] = MTask(task_id, key, mode, interval, fixed, run_once, due, (due, False))
        self.order.append(task_id)
        self.emit(Event.TASK_ADDED)
        self.settle()

    @precondition(has_tasks)
    @rule(index=st.integers(0, 99))
    def pause(self, index: int) -> None:
        task = self.pick(index)
        if task.removed:
            with pytest.raises(TaskNotFoundError, match=task.id):
                self.rec.pause(task.id)
            return
        self.rec.pause(task.id)
        task.paused = True
        task.sched = None
        # Pausing stops the schedule, not an explicit run_task_immediately() that has not started.
        if task.manual is None:
            task.requested = None
        elif task.running is not None:
            task.requested = (task.manual, True)
        else:
            task.sched = (task.manual, True)
        self.emit(Event.TASK_PAUSED)
        self.settle()

    @precondition(has_tasks)
    @rule(index=st.integers(0, 99), delay=st.integers(0, 10))
    def resume(self, index: int, delay: int) -> None:
        task = self.pick(index)
        if task.removed:
            with pytest.raises(TaskNotFoundError, match=task.id):
                self.rec.resume(task.id, delay)
            return
        self.rec.resume(task.id, delay)
        task.paused = False
        due = self.now + delay
        task.next_run = due
        if task.running is not None:
            task.requested = (due, False)
        else:
            task.sched = (due, False)
        self.emit(Event.TASK_RESUMED)
        self.settle()

    @precondition(has_tasks)
    @rule(index=st.integers(0, 99))
    def run_now(self, index: int) -> None:
        task = self.pick(index)
        if task.removed:
            with pytest.raises(HandlerNotRegisteredError, match=task.id):
                self.rec.run_now(task.id)
            return
        if task.run_once and task.started_once:
            with pytest.raises(TaskNotScheduledError, match=task.id):
                self.rec.run_now(task.id)
            return
        assert self.rec.run_now(task.id) == 1
        forced = task.paused
        task.manual = self.now
        if task.running is not None:
            task.requested = (self.now, forced)
        else:
            task.sched = (self.now, forced)
            task.next_run = self.now
        self.settle()

    @precondition(has_tasks)
    @rule(index=st.integers(0, 99))
    def remove(self, index: int) -> None:
        task = self.pick(index)
        if task.removed:
            with pytest.raises(TaskNotFoundError, match=task.id):
                self.rec.remove(task.id)
            return
        self.rec.remove(task.id)
        task.removed = True
        task.sched = None
        self.emit(Event.TASK_REMOVED)
        if task.running is not None:
            task.stop_set = True
            self.finish_job(task, Event.JOB_CANCELLED)  # the gate handler sees its stop event
        self.settle()

    @rule(index=st.integers(0, 99), unknown=st.booleans())
    def cancel(self, index: int, unknown: bool) -> None:
        # Job ids are random: order them by task, then by start, so the same draws pick
        # the same job in every run (hypothesis replays runs and needs that).
        with self.rec.cond:
            by_task: dict[str, list[str]] = {}
            for started_id, starts in self.rec.starts.items():
                by_task.setdefault(starts[0].task_id, []).append(started_id)
        job_ids = [j for key in self.order for j in by_task.get(self.tasks[key].id, [])]
        if unknown or not job_ids:
            assert self.scheduler.cancel_job("no-such-job") is False
            return
        job_id = job_ids[index % len(job_ids)]
        owner = next((t for t in self.tasks.values() if t.running == job_id), None)
        expected = owner is not None and not owner.stop_set
        assert self.scheduler.cancel_job(job_id) is expected, f"cancel_job({job_id}) on {owner}"
        if owner is not None and expected:
            owner.stop_set = True
            self.finish_job(owner, Event.JOB_CANCELLED)
        self.settle()

    @precondition(has_gated_job)
    @rule(index=st.integers(0, 99))
    def release(self, index: int) -> None:
        running = [t for t in self.tasks.values() if t.running is not None]
        task = running[index % len(running)]
        assert task.running is not None
        self.rec.release(task.running)
        self.finish_job(task, Event.JOB_COMPLETED)
        self.settle()

    @rule(seconds=st.integers(0, 25))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.now += seconds
        self.settle()

    @precondition(has_tasks)
    @rule(seconds=st.integers(1, 5))
    def tick(self, seconds: int) -> None:
        """Small steps, so tasks run often (a second rule doubles how often time moves)."""
        self.advance(seconds)

    @rule(which=st.integers(0, 1), event=st.sampled_from(list(Event)), add=st.booleans())
    def listener(self, which: int, event: Event, add: bool) -> None:
        listener = self.listeners[which]
        if add:
            self.scheduler.add_listener(event, listener)  # twice is the same as once
            self.registered.add((which, event))
        else:
            self.scheduler.remove_listener(event, listener)  # unknown ones are ignored
            self.registered.discard((which, event))

    # ---------------------------------------------------------- invariants
    @invariant()
    def matches_model(self) -> None:
        with shown_on_failure(self):
            self._matches_model()

    def _matches_model(self) -> None:
        STATS["steps"] += 1
        scheduler = self.scheduler
        live = [t for t in self.live() if not (t.run_once and t.removed)]
        assert [t.id for t in scheduler.get_all_tasks(include_run_once=True)] == [t.id for t in live]
        assert [t.id for t in scheduler.get_all_tasks()] == [t.id for t in live if not t.run_once]
        for task in live:
            got = scheduler.get_task(task.id)
            expected = (
                TaskStatus.PAUSED
                if task.paused
                else TaskStatus.RUNNING
                if task.running is not None
                else TaskStatus.ACTIVE
            )
            assert got.status is expected, f"{task.key}: {got.status} != {expected} ({task})"
            if task.running is None:
                assert int(got.next_run_at.timestamp()) == task.next_run, f"{task.key}: {got} vs {task}"
        for event, count in self.events.items():
            assert self.rec.event_count(event) == count, f"{event}: {self.rec.event_count(event)} != {count}"
        for task in self.tasks.values():
            for event, count in task.outcomes.items():
                assert self.rec.event_count(event, task.id) == count, f"{task.key} {event}"
        check_invariants(self.rec)

    def teardown(self) -> None:
        with shown_on_failure(self):
            shutdown_and_check(self.rec, timeout=5)


SchedulerMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestScheduler = SchedulerMachine.TestCase


def test_report_examples() -> None:
    """Runs after the machine (file order): shows how much the property test exercised."""
    print(f"\nstateful: {STATS['examples']} examples, {STATS['steps']} steps, {STATS['jobs']} jobs")
    if STATS["examples"]:
        assert STATS["steps"] >= STATS["examples"]
