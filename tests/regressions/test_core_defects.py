"""Regression tests for known defects of the core scheduler.

Each test names the defect it covers (numbers from the defect list) and fails
on the code that has the defect. Only the public API is used, so the tests
survive a rewrite of the internals. Nothing waits on a fixed sleep for an
outcome: positive waits have deadlines, and the few checks that something
does *not* happen (or stays blocked) use short bounded waits. Calls that block
forever on the defective code run on daemon threads joined with a timeout.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pytest
from scheduling.support import eventually

from quiv import (
    Event,
    HandlerRegistrationError,
    Job,
    JobStatus,
    Quiv,
    QuivError,
    Task,
)

T = TypeVar("T")
QuivFactory = Callable[..., Quiv]

#: How long any wait for something that must happen may take before the test fails.
DEADLINE = 5.0
#: How long a job that is due, with a free slot in the pool, may take to start.
#: A healthy scheduler starts it in milliseconds; the defective one never does.
START_WAIT = 1.5
#: Bounded wait for a call that must not be held up by someone else's code (it
#: takes microseconds when nothing blocks it), or for a blocked call to return.
PROMPT = 1.0
#: The timeout of a shutdown in a test: no job is left running, so it is never reached.
SHUTDOWN_TIMEOUT = 2.0
#: A shutdown timeout far beyond DEADLINE: waiting any of it shows as a failure, not as a time.
OWN_JOB_TIMEOUT = 600.0


# ----------------------------------------------------------------- helpers
class Background(Generic[T]):
    """Run ``func`` on a daemon thread; keep its result or exception (never let it escape)."""

    def __init__(self, func: Callable[[], T], name: str = "regression-background") -> None:
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(func,), name=name, daemon=True)
        self.thread.start()

    def _run(self, func: Callable[[], T]) -> None:
        try:
            self.result = func()
        except BaseException as exc:  # handed to the test, which asserts on it
            self.error = exc
        finally:
            self.done.set()

    def outcome(self) -> str:
        if not self.done.is_set():
            return "still blocked"
        return f"raised {self.error!r}" if self.error is not None else f"returned {self.result!r}"


def wait_any(*events: threading.Event, timeout: float = DEADLINE) -> bool:
    """True as soon as one of ``events`` is set; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not any(event.is_set() for event in events):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def _stack(thread: threading.Thread) -> list[tuple[str, str, int]]:
    """(function, file, line) of each frame of ``thread``, innermost first."""
    ident = thread.ident
    frame = sys._current_frames().get(ident) if ident is not None else None
    frames: list[tuple[str, str, int]] = []
    while frame is not None:
        frames.append((frame.f_code.co_name, frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    return frames


def wait_blocked_in(call: Background[Any], function: str, timeout: float = DEADLINE) -> None:
    """Return once ``call``'s thread is parked inside ``function`` (e.g. ``wait_for_job``).

    Blocking calls register what they wait for before they park; seeing the
    thread parked proves the registration happened, without looking at quiv's
    internals. Parked means: waiting in a ``threading`` primitive, or the same
    innermost frame for 100 ms (a bare ``lock.acquire()``).
    """
    deadline = time.monotonic() + timeout
    previous: tuple[str, str, int] | None = None
    same = 0
    while time.monotonic() < deadline:
        if call.done.is_set():
            raise AssertionError(f"{function}() did not block: it {call.outcome()}")
        frames = _stack(call.thread)
        if frames and any(name == function for name, _, _ in frames):
            top = frames[0]
            if top[0] == "wait" and top[1] == threading.__file__:
                return
            same = same + 1 if top == previous else 0
            if same >= 50:
                return
            previous = top
        time.sleep(0.002)
    raise AssertionError(f"{function}() was not seen waiting within {timeout} s: {_stack(call.thread)}")


def noop() -> None:
    """A handler that does nothing."""


def noop_arg(value: object) -> None:
    """A handler taking one argument."""


def noop_kw(value: object = None) -> None:
    """A handler taking one keyword argument."""


# ============================================================ defect 1
@dataclass
class BusyPool:
    """A started scheduler one of whose workers runs a job that blocks until ``release``."""

    scheduler: Quiv
    release: threading.Event


@pytest.fixture
def busy_pool(make_quiv: QuivFactory) -> Iterator[Callable[[int], BusyPool]]:
    """``busy_pool(pool_size)``: the common set-up (a task added, then ``start()``) with its job blocking.

    The blocking job is released at teardown, before the scheduler is shut down.
    """
    releases: list[threading.Event] = []

    def build(pool_size: int) -> BusyPool:
        release = threading.Event()
        started = threading.Event()

        def long_job(_stop_event: threading.Event) -> None:
            started.set()
            while not release.wait(0.01):
                if _stop_event.is_set():
                    return

        scheduler = make_quiv(pool_size=pool_size)
        releases.append(release)
        scheduler.add_task("long-job", long_job, interval=3600)
        scheduler.start()
        assert started.wait(DEADLINE), "the long job did not start"
        return BusyPool(scheduler, release)

    try:
        yield build
    finally:
        for release in releases:
            release.set()


def _not_started(what: str, pool_size: int) -> str:
    return (
        f"{what} while 1 of {pool_size} workers ran a long job, "
        f"but the due job did not start within {START_WAIT} s"
    )


@pytest.mark.parametrize(
    ("pool_size", "run_once"),
    [(2, False), (2, True), (4, False)],
    ids=["pool2-recurring", "pool2-run-once", "pool4-recurring"],
)
def test_task_added_while_a_job_blocks_runs(
    busy_pool: Callable[[int], BusyPool], pool_size: int, run_once: bool
) -> None:
    """Defect 1 (liveness, add_task): a task added while another job blocks must start on a free worker."""
    busy = busy_pool(pool_size)
    ran = threading.Event()

    busy.scheduler.add_task("late", ran.set, interval=3600, run_once=run_once)
    assert ran.wait(START_WAIT), _not_started("a task was added", pool_size)


@pytest.mark.parametrize("change", [{"delay": 0}, {"interval": 1800.0}], ids=["delay-to-now", "new-interval"])
def test_task_made_due_by_update_task_runs(
    busy_pool: Callable[[int], BusyPool], change: dict[str, Any]
) -> None:
    """Defect 1 (liveness, update_task): an update that makes a task due now must start it."""
    busy = busy_pool(2)
    ran = threading.Event()

    task_id = busy.scheduler.add_task("late", ran.set, interval=3600, delay=3600)
    busy.scheduler.update_task(task_id, **change)
    assert ran.wait(START_WAIT), _not_started(f"update_task({change}) made a task due", 2)


def test_task_resumed_while_a_job_blocks_runs(busy_pool: Callable[[int], BusyPool]) -> None:
    """Defect 1 (liveness, resume_task): resume_task(delay=0) makes the task due now; it must start."""
    busy = busy_pool(2)
    ran = threading.Event()

    task_id = busy.scheduler.add_task("late", ran.set, interval=3600, delay=3600)
    busy.scheduler.pause_task(task_id)
    busy.scheduler.resume_task(task_id)
    assert ran.wait(START_WAIT), _not_started("resume_task() made a task due", 2)


def test_run_task_immediately_while_a_job_blocks_runs(busy_pool: Callable[[int], BusyPool]) -> None:
    """Defect 1 (liveness, run_task_immediately): the requested run must start on a free worker."""
    busy = busy_pool(2)
    ran = threading.Event()

    task_id = busy.scheduler.add_task("late", ran.set, interval=3600, delay=3600)
    busy.scheduler.run_task_immediately(task_id)
    assert ran.wait(START_WAIT), _not_started("run_task_immediately() was called", 2)


def test_task_declared_after_start_runs(busy_pool: Callable[[int], BusyPool]) -> None:
    """Defect 1 (liveness, declaration): a @scheduler.task made after start() must start on a free worker."""
    busy = busy_pool(2)
    ran = threading.Event()

    @busy.scheduler.task(interval=3600, name="late-declared")
    def late_declared() -> None:
        ran.set()

    assert ran.wait(START_WAIT), _not_started("a task was declared after start()", 2)


# ============================================================ defect 2
@pytest.mark.parametrize("where", ["args", "kwargs"])
def test_update_task_keeps_the_arguments_given_at_add_time(make_quiv: QuivFactory, where: str) -> None:
    """Defect 2: update_task must not re-read the caller's argument objects, mutated since add_task."""
    received: queue.Queue[dict[str, str]] = queue.Queue()

    def handler(data: dict[str, str]) -> None:
        received.put(dict(data))

    scheduler = make_quiv()
    scheduler.start()
    data = {"region": "eu"}
    if where == "args":
        task_id = scheduler.add_task("t", handler, interval=3600, delay=3600, args=(data,))
    else:
        task_id = scheduler.add_task("t", handler, interval=3600, delay=3600, kwargs={"data": data})
    data["region"] = "us"  # the caller reuses its object after add_task
    scheduler.update_task(task_id, max_retries=2)  # an unrelated change

    task = scheduler.get_task(task_id)
    stored = task.args[0] if where == "args" else task.kwargs["data"]
    scheduler.run_task_immediately(task_id)
    try:
        seen: dict[str, str] | str = received.get(timeout=DEADLINE)
    except queue.Empty:
        seen = "(the handler did not run)"
    assert (stored, seen) == ({"region": "eu"}, {"region": "eu"}), (
        f"after update_task(max_retries=2) the task's {where} hold {stored!r} "
        f"and the handler received {seen!r}; add_task was given {{'region': 'eu'}}"
    )


# ============================================================ defect 3
@dataclass
class _PickleGate:
    """Holds the first pickling of a :class:`GatedValue` done on thread ``thread_name``."""

    thread_name: str
    entered: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    used: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_PICKLE_GATES: dict[str, _PickleGate] = {}


class GatedValue:
    """An argument whose pickling, on one chosen thread, pauses until the test lets it go."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __reduce__(self) -> tuple[Any, ...]:
        gate = _PICKLE_GATES.get(self.token)
        if gate is not None and threading.current_thread().name == gate.thread_name:
            with gate.lock:
                first = not gate.used
                gate.used = True
            if first:
                gate.entered.set()
                gate.go.wait(DEADLINE)
        return (GatedValue, (self.token,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GatedValue) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)


def test_concurrent_update_task_calls_keep_both_changes(make_quiv: QuivFactory) -> None:
    """Defect 3: two concurrent update_task calls changing different options must both take effect.

    The first update is paused while it pickles the task's arguments (its
    validation step) and the second one runs meanwhile; then the first goes on.
    """
    token = f"gate-{uuid.uuid4()}"
    gate = _PICKLE_GATES[token] = _PickleGate(thread_name="updater-max-retries")
    try:
        scheduler = make_quiv()
        scheduler.start()
        task_id = scheduler.add_task(
            "t", noop_kw, interval=3600, delay=3600, kwargs={"value": GatedValue(token)}
        )
        first = Background(lambda: scheduler.update_task(task_id, max_retries=5), name="updater-max-retries")
        try:
            entered = wait_any(gate.entered, first.done)
            second = Background(lambda: scheduler.update_task(task_id, timeout=7.0), name="updater-timeout")
            # Today the second update completes at once; an update that serialises may hold it.
            second.done.wait(PROMPT)
        finally:
            gate.go.set()
        assert first.done.wait(DEADLINE), f"update_task(max_retries=5) {first.outcome()}"
        assert second.done.wait(DEADLINE), f"update_task(timeout=7.0) {second.outcome()}"
        assert first.error is None, f"update_task(max_retries=5) {first.outcome()}"
        assert second.error is None, f"update_task(timeout=7.0) {second.outcome()}"
        task = scheduler.get_task(task_id)
        assert (task.max_retries, task.timeout) == (5, 7.0), (
            f"after update_task(max_retries=5) and update_task(timeout=7.0) the task has "
            f"max_retries={task.max_retries}, timeout={task.timeout} (first update paused in "
            f"validation: {entered})"
        )
    finally:
        del _PICKLE_GATES[token]


def test_racing_update_task_calls_keep_both_changes(make_quiv: QuivFactory) -> None:
    """Defect 3: the same race without a hook: many rounds of two updates started together.

    This one does not rely on update_task pickling the arguments. Thread
    switches are made very frequent so the interleaving shows up within a
    few rounds (about one round in five loses an update on the defective code).
    """
    scheduler = make_quiv()
    scheduler.start()
    task_id = scheduler.add_task("t", noop, interval=3600, delay=3600)
    lost: list[tuple[int, int, float | None]] = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_no in range(1, 301):
            barrier = threading.Barrier(2, timeout=DEADLINE)

            def set_retries(n: int = round_no, barrier: threading.Barrier = barrier) -> Task:
                barrier.wait()
                return scheduler.update_task(task_id, max_retries=n)

            def set_timeout(n: int = round_no, barrier: threading.Barrier = barrier) -> Task:
                barrier.wait()
                return scheduler.update_task(task_id, timeout=float(n))

            calls = [Background(set_retries), Background(set_timeout)]
            for call in calls:
                assert call.done.wait(DEADLINE), f"update_task() {call.outcome()}"
                assert call.error is None, f"update_task() {call.outcome()}"
            task = scheduler.get_task(task_id)
            if (task.max_retries, task.timeout) != (round_no, float(round_no)):
                lost.append((round_no, task.max_retries, task.timeout))
            if len(lost) >= 3:
                break
    finally:
        sys.setswitchinterval(old_interval)
    assert not lost, (
        f"concurrent update_task(max_retries=n) and update_task(timeout=n) lost an update: "
        f"(round, max_retries, timeout) = {lost}"
    )


# ============================================================ defect 4
def _make_listener(calls: queue.Queue[str], tag: str) -> Callable[[Event, Task], None]:
    def listener(event: Event, task: Task) -> None:
        calls.put(tag)

    return listener


def test_declared_listeners_from_one_factory_are_all_called(make_quiv: QuivFactory) -> None:
    """Defect 4: two distinct listener closures defined at one source location must both be kept."""
    calls: queue.Queue[str] = queue.Queue()
    scheduler = make_quiv()
    scheduler.on(Event.TASK_ADDED)(_make_listener(calls, "first"))
    scheduler.on(Event.TASK_ADDED)(_make_listener(calls, "second"))
    scheduler.start()
    scheduler.add_task("t", noop, interval=3600, delay=3600)
    seen: set[str] = set()
    deadline = time.monotonic() + START_WAIT
    while seen != {"first", "second"} and (remaining := deadline - time.monotonic()) > 0:
        try:
            seen.add(calls.get(timeout=remaining))
        except queue.Empty:
            break
    assert seen == {"first", "second"}, (
        f"TASK_ADDED reached only {sorted(seen)} of the two declared listeners"
    )


# ============================================================ defect 5
def _takes_one(a: int) -> None:
    """A handler of one positional argument."""


def _wants_job_id(_job_id: str) -> None:
    """A handler that receives its job id from quiv."""


@pytest.mark.parametrize(
    ("handler", "options"),
    [
        pytest.param(_takes_one, {"args": (1, 2)}, id="args-do-not-bind"),
        pytest.param(_wants_job_id, {"kwargs": {"_job_id": "x"}}, id="kwargs-set-an-injected-name"),
    ],
)
def test_add_task_rejects_a_handler_it_could_never_call(
    make_quiv: QuivFactory, handler: Callable[..., None], options: dict[str, Any]
) -> None:
    """Defect 5: add_task must refuse, as @scheduler.task does, arguments the handler cannot take."""
    scheduler = make_quiv()
    added: list[Task] = []

    def on_added(event: Event, task: Task) -> None:
        added.append(task)

    scheduler.add_listener(Event.TASK_ADDED, on_added)
    scheduler.start()
    # The declarative path already refuses these (this part holds today).
    with pytest.raises(HandlerRegistrationError):
        scheduler.task(interval=60, name="declared", **options)(handler)
    before = [t.id for t in scheduler.get_all_tasks(include_run_once=True)]
    with pytest.raises(HandlerRegistrationError):
        scheduler.add_task("never-runs", handler, interval=60, **options)
    assert [t.id for t in scheduler.get_all_tasks(include_run_once=True)] == before
    assert added == []


# ============================================================ defect 6
def test_wait_for_job_returns_a_job_purged_as_it_ended(make_quiv: QuivFactory) -> None:
    """Defect 6a: with history_retention_seconds=0, wait_for_job must still return the ended job.

    A JOB_COMPLETED listener holds the end of the job until retention has
    purged its row (listeners run before waiters are woken), which makes the
    purge-before-read order certain.
    """
    scheduler = make_quiv(pool_size=2, history_retention_seconds=0)
    started: queue.Queue[str] = queue.Queue()
    finish = threading.Event()
    in_listener = threading.Event()
    leave_listener = threading.Event()

    def handler(_job_id: str) -> None:
        started.put(_job_id)
        finish.wait(DEADLINE)

    def on_completed(event: Event, task: Task, job: Job) -> None:
        in_listener.set()
        leave_listener.wait(DEADLINE)

    scheduler.add_listener(Event.JOB_COMPLETED, on_completed)
    scheduler.start()
    scheduler.add_task("short-lived", handler, interval=3600)
    job_id = started.get(timeout=DEADLINE)
    waiter = Background(lambda: scheduler.wait_for_job(job_id, timeout=DEADLINE))
    purged = False
    try:
        wait_blocked_in(waiter, "wait_for_job")
        finish.set()
        assert in_listener.wait(DEADLINE), "the job did not complete"
        purged = eventually(lambda: job_id not in {j.id for j in scheduler.get_all_jobs()}, START_WAIT)
    finally:
        finish.set()
        leave_listener.set()
    assert waiter.done.wait(DEADLINE), f"wait_for_job() {waiter.outcome()}"
    job = waiter.result
    assert waiter.error is None, (
        f"wait_for_job() of a job that completed {waiter.outcome()} (its row purged first: {purged})"
    )
    assert job is not None
    assert (job.id, job.status) == (job_id, JobStatus.COMPLETED)


@pytest.mark.parametrize("ending", ["remove_task", "shutdown"])
def test_wait_for_task_without_timeout_ends_when_the_task_cannot_run(
    make_quiv: QuivFactory, ending: str
) -> None:
    """Defect 6c: wait_for_task(timeout=None) must raise a QuivError once the task is removed / shut down."""
    scheduler = make_quiv()
    scheduler.start()
    task_id = scheduler.add_task("far-away", noop, interval=3600, delay=3600)
    waiter = Background(lambda: scheduler.wait_for_task(task_id), name="wait-for-task")
    wait_blocked_in(waiter, "wait_for_task")
    if ending == "remove_task":
        scheduler.remove_task(task_id)
    else:
        scheduler.shutdown(timeout=SHUTDOWN_TIMEOUT)
    returned = waiter.done.wait(PROMPT)
    assert returned, f"wait_for_task() is {waiter.outcome()} {PROMPT} s after {ending}()"
    assert isinstance(waiter.error, QuivError), f"wait_for_task() {waiter.outcome()} after {ending}()"


# ============================================================ defect 7
@dataclass
class _UnpickleGate:
    """Holds the first unpickling of a :class:`SlowToUnpickle` once armed."""

    armed: bool = False
    used: bool = False
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


_UNPICKLE_GATES: dict[str, _UnpickleGate] = {}


def _restore_slowly(token: str) -> SlowToUnpickle:
    gate = _UNPICKLE_GATES.get(token)
    if gate is not None:
        with gate.lock:
            first = gate.armed and not gate.used
            if first:
                gate.used = True
        if first:
            gate.entered.set()
            gate.release.wait(DEADLINE)
    return SlowToUnpickle(token)


class SlowToUnpickle:
    """An argument whose unpickling (user code) blocks until the test releases it."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_slowly, (self.token,))


@pytest.mark.parametrize("call", ["add_task", "get_task"])
def test_unpickling_arguments_for_an_event_does_not_stall_other_calls(
    make_quiv: QuivFactory, call: str
) -> None:
    """Defect 7: building an event's task snapshot unpickles arguments; that must not hold the scheduler."""
    token = f"slow-{uuid.uuid4()}"
    gate = _UNPICKLE_GATES[token] = _UnpickleGate()
    try:
        scheduler = make_quiv()
        scheduler.start()
        slow_id = scheduler.add_task(
            "slow-args", noop_arg, interval=3600, delay=3600, args=(SlowToUnpickle(token),)
        )
        other_id = scheduler.add_task("other", noop, interval=3600, delay=3600)
        paused: list[str] = []

        def on_paused(event: Event, task: Task) -> None:
            paused.append(task.id)

        scheduler.add_listener(Event.TASK_PAUSED, on_paused)
        gate.armed = True
        pauser = Background(lambda: scheduler.pause_task(slow_id), name="pauser")
        unrelated: Background[object] | None = None
        try:
            wait_any(gate.entered, pauser.done)
            if not gate.entered.is_set():
                return  # no user code ran for the snapshot at all: nothing can be held up
            if call == "add_task":
                unrelated = Background(
                    lambda: scheduler.add_task("unrelated", noop, interval=3600, delay=3600)
                )
            else:
                unrelated = Background(lambda: scheduler.get_task(other_id))
            unrelated.done.wait(PROMPT)
            blocked = not unrelated.done.is_set()
        finally:
            gate.release.set()
        assert pauser.done.wait(DEADLINE), f"pause_task() {pauser.outcome()}"
        assert not blocked, (
            f"{call}() of another task was blocked for {PROMPT} s while an argument of a paused "
            f"task was being unpickled for its TASK_PAUSED snapshot"
        )
        assert unrelated is not None
        assert unrelated.error is None, f"{call}() {unrelated.outcome()}"
    finally:
        del _UNPICKLE_GATES[token]


def test_stop_callback_does_not_stall_other_calls(make_quiv: QuivFactory) -> None:
    """Defect 7: a StopEvent.on_set callback run by cancel_job must not hold the scheduler."""
    scheduler = make_quiv(pool_size=2)
    scheduler.start()
    callback_entered = threading.Event()
    callback_release = threading.Event()
    subscribed: queue.Queue[str] = queue.Queue()

    def on_stop() -> None:
        callback_entered.set()
        callback_release.wait(DEADLINE)

    def handler(_job_id: str, _stop_event: threading.Event) -> None:
        stop: Any = _stop_event  # quiv's StopEvent, as run_subprocess uses it
        stop.on_set(on_stop)
        subscribed.put(_job_id)
        _stop_event.wait(DEADLINE)

    other_id = scheduler.add_task("other", noop, interval=3600, delay=3600)
    scheduler.add_task("subscriber", handler, interval=3600)
    job_id = subscribed.get(timeout=DEADLINE)
    canceller = Background(lambda: scheduler.cancel_job(job_id), name="canceller")
    reader: Background[Task] | None = None
    try:
        assert wait_any(callback_entered, canceller.done), (
            "cancel_job() neither returned nor ran the callback"
        )
        if not callback_entered.is_set():
            assert callback_entered.wait(DEADLINE), "the stop callback never ran"
        reader = Background(lambda: scheduler.get_task(other_id), name="reader")
        reader.done.wait(PROMPT)
        blocked = not reader.done.is_set()
    finally:
        callback_release.set()
    assert canceller.done.wait(DEADLINE), f"cancel_job() {canceller.outcome()}"
    assert not blocked, (
        f"get_task() of another task was blocked for {PROMPT} s while a stop-event callback "
        f"(set by cancel_job) was running"
    )
    assert reader is not None
    assert reader.error is None, f"get_task() {reader.outcome()}"


# ============================================================ defect 8
def test_shutdown_from_inside_a_job_returns_promptly(
    make_quiv: QuivFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 8: shutdown() called by a job must not wait its timeout for that very job, nor warn about it.

    The timeout is far longer than the test's deadline: a shutdown that waits
    for its own job cannot return in time, whatever the machine's speed.
    """
    caplog.set_level(logging.WARNING, logger="Quiv")
    scheduler = make_quiv()
    outcome: queue.Queue[BaseException | None] = queue.Queue()

    def stops_the_scheduler() -> None:
        try:
            scheduler.shutdown(timeout=OWN_JOB_TIMEOUT)
        except BaseException as exc:
            outcome.put(exc)
            raise
        outcome.put(None)

    scheduler.start()
    scheduler.add_task("stopper", stops_the_scheduler, interval=3600)
    try:
        error = outcome.get(timeout=DEADLINE)
    except queue.Empty:
        pytest.fail(f"shutdown(timeout={OWN_JOB_TIMEOUT}) called from a job waited for that job")
    assert error is None, f"shutdown() inside a job raised {error!r}"
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and ("stop event" in r.getMessage() or "still running" in r.getMessage())
    ]
    assert not warnings, f"it logged {warnings}"


# =========================================================== defect 10c
def test_task_event_message_names_every_task_event() -> None:
    """Defect 10c: quiv.fastapi's TaskEventMessage.event must allow every TASK_* event."""
    from quiv.fastapi import TaskEventMessage

    allowed = set(typing.get_args(typing.get_type_hints(TaskEventMessage)["event"]))
    expected = {event.value for event in Event if not event.is_job_event}
    assert expected <= allowed, f"TaskEventMessage.event lacks {sorted(expected - allowed)}"
