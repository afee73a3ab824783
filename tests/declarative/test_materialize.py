"""``start()`` turns declarations into tasks and listeners of the engine, without consuming them."""

from __future__ import annotations

import queue
import threading
from datetime import datetime, timezone
from typing import Any

import pytest

from quiv import (
    ConfigurationError,
    Event,
    HandlerRegistrationError,
    InvalidArgumentError,
    JobStatus,
    Quiv,
    TaskNotFoundError,
)
from quiv._declare.decorators import AmbiguousTaskError, TaskNotMaterializedError
from quiv._declare.registry import TaskRegistry
from quiv.models import Job, Task
from quiv.testing import JobRecorder, ManualClock, fresh_scheduler, run_now
from quiv.types import ProgressHook

TIMEOUT = 10.0


def test_decorating_returns_the_function_and_schedules_nothing(scheduler: Quiv) -> None:
    def handler(days: int) -> int:
        return days * 2

    assert scheduler.task(60, args=(3,))(handler) is handler
    assert handler(4) == 8
    assert scheduler.get_all_tasks(include_run_once=True) == []
    with pytest.raises(TaskNotMaterializedError, match="call start"):
        scheduler.task_id(handler)


def test_start_creates_the_tasks_in_declaration_order(scheduler: Quiv) -> None:
    @scheduler.task(30)
    def zeta() -> None: ...

    @scheduler.task(10, name="alpha-task", delay=5, fixed_interval=False, kwargs={"n": 1})
    def alpha(n: int) -> None: ...

    @scheduler.task(20, run_once=True, args=("x",), delay=100)
    def middle(value: str) -> None: ...

    scheduler.start()
    tasks = scheduler.get_all_tasks(include_run_once=True)
    assert [t.task_name for t in tasks] == ["zeta", "alpha-task", "middle"]
    assert [t.id for t in tasks] == [scheduler.task_id(f) for f in (zeta, alpha, middle)]
    by_name = {t.task_name: t for t in tasks}
    assert by_name["alpha-task"].interval_seconds == 10
    assert by_name["alpha-task"].fixed_interval is False
    assert by_name["alpha-task"].kwargs == {"n": 1}
    assert by_name["middle"].run_once is True
    assert by_name["middle"].args == ("x",)


def test_every_add_task_option_reaches_the_task(scheduler: Quiv) -> None:
    run_at = datetime(2040, 1, 1, tzinfo=timezone.utc)

    @scheduler.task(cron="0 3 * * *", cron_timezone="Europe/Paris", max_retries=2, timeout=30)
    def nightly() -> None: ...

    @scheduler.task(run_at=run_at, misfire="run_once", misfire_grace=60, jitter=1.5)
    def once() -> None: ...

    scheduler.start()
    declared = {t.task_name: t for t in scheduler.get_all_tasks(include_run_once=True)}
    nightly_id = scheduler.add_task(
        "nightly", nightly, cron="0 3 * * *", cron_timezone="Europe/Paris", max_retries=2, timeout=30
    )
    once_id = scheduler.add_task(
        "once", once, run_at=run_at, misfire="run_once", misfire_grace=60, jitter=1.5
    )
    added = {t.task_name: t for t in map(scheduler.get_task, (nightly_id, once_id))}
    assert set(declared) == set(added) == {"nightly", "once"}
    for name in declared:
        mine = declared[name].model_dump(exclude={"id", "next_run_at"})
        theirs = added[name].model_dump(exclude={"id", "next_run_at"})
        assert mine == theirs


def test_a_declared_task_is_the_same_as_an_added_one(clock: ManualClock) -> None:
    def handler(n: int, _job_id: str | None = None) -> None: ...

    registry = TaskRegistry()
    registry.task(15, delay=3, args=(1,), fixed_interval=False)(handler)
    with fresh_scheduler(registry, clock=clock) as declared, fresh_scheduler(clock=clock) as added:
        added.add_task("handler", handler, 15, delay=3, args=(1,), fixed_interval=False)
        (mine,) = declared.get_all_tasks()
        (theirs,) = added.get_all_tasks()
        assert mine.model_dump(exclude={"id"}) == theirs.model_dump(exclude={"id"})


def test_arguments_are_frozen_when_declared(scheduler: Quiv) -> None:
    options: dict[str, list[int]] = {"days": [1]}
    arguments = ([1],)

    @scheduler.task(60, args=arguments, kwargs=options)
    def handler(first: list[int], days: list[int]) -> None: ...

    options["days"].append(2)
    options["weeks"] = [3]
    arguments[0].append(2)
    scheduler.start()
    task = scheduler.get_task(scheduler.task_id(handler))
    assert (task.args, task.kwargs) == (([1],), {"days": [1]})


def test_declarations_are_not_consumed(clock: ManualClock) -> None:
    registry = TaskRegistry()

    @registry.task(60)
    def handler() -> None: ...

    ids = []
    for _ in range(2):
        with fresh_scheduler(registry, clock=clock) as scheduler:
            (task,) = scheduler.get_all_tasks()
            ids.append(scheduler.task_id(handler))
            assert task.id == ids[-1]
    assert ids[0] != ids[1]
    assert len(registry.tasks) == 1


def test_a_task_declared_after_start_is_created_at_once(scheduler: Quiv) -> None:
    scheduler.start()

    @scheduler.task(60)
    def late() -> None: ...

    assert scheduler.get_task(scheduler.task_id(late)).task_name == "late"


def test_a_declaration_into_an_included_registry_after_start_is_created_at_once(
    scheduler: Quiv, registry: TaskRegistry
) -> None:
    inner = TaskRegistry()
    registry.include_registry(inner)
    scheduler.include_registry(registry)
    scheduler.start()

    @inner.task(60)
    def late() -> None: ...

    assert scheduler.get_task(scheduler.task_id(late)).task_name == "late"


def test_including_a_registry_after_start_creates_its_tasks(scheduler: Quiv, registry: TaskRegistry) -> None:
    @registry.task(60)
    def handler() -> None: ...

    scheduler.start()
    with pytest.raises(TaskNotFoundError):
        scheduler.task_id(handler)
    scheduler.include_registry(registry)
    assert scheduler.get_task(scheduler.task_id(handler)).task_name == "handler"


def test_declaring_after_shutdown_creates_nothing(scheduler: Quiv) -> None:
    scheduler.start()
    scheduler.shutdown()

    @scheduler.task(60)
    def late() -> None: ...

    with pytest.raises(TaskNotMaterializedError):
        scheduler.task_id(late)


def test_task_id_errors(scheduler: Quiv) -> None:
    def undeclared() -> None: ...

    @scheduler.task(60, name="one")
    @scheduler.task(60, name="two")
    def twice() -> None: ...

    scheduler.start()
    with pytest.raises(TaskNotFoundError, match="not declared"):
        scheduler.task_id(undeclared)
    with pytest.raises(AmbiguousTaskError, match="'two', 'one'"):
        scheduler.task_id(twice)
    assert scheduler.get_task(scheduler.task_id(twice, name="one")).task_name == "one"
    with pytest.raises(TaskNotFoundError, match="named 'three'"):
        scheduler.task_id(twice, name="three")
    assert issubclass(TaskNotMaterializedError, TaskNotFoundError)
    assert issubclass(AmbiguousTaskError, LookupError)


def test_one_decorator_object_declares_several_tasks(scheduler: Quiv) -> None:
    every_minute = scheduler.task(60)

    @every_minute
    def first() -> None: ...

    @every_minute
    def second() -> None: ...

    scheduler.start()
    assert [t.task_name for t in scheduler.get_all_tasks()] == ["first", "second"]


def test_the_same_declaration_twice_is_one_task(scheduler: Quiv) -> None:
    def handler() -> None: ...

    for _ in range(2):
        scheduler.task(60, kwargs=None)(handler)
    scheduler.task(60, args=())(handler)  # same options once pickled
    scheduler.start()
    assert len(scheduler.get_all_tasks()) == 1


def test_a_registry_reached_twice_counts_once(scheduler: Quiv) -> None:
    shared, left, right = TaskRegistry(), TaskRegistry(), TaskRegistry()
    left.include_registry(shared)
    right.include_registry(shared)

    @shared.task(60)
    def handler() -> None: ...

    scheduler.include_registry(left)
    scheduler.include_registry(right)
    scheduler.include_registry(left)
    scheduler.start()
    assert len(scheduler.get_all_tasks()) == 1


def test_include_registry_rejects_cycles_and_non_registries(scheduler: Quiv) -> None:
    outer, inner = TaskRegistry(), TaskRegistry()
    outer.include_registry(inner)
    with pytest.raises(ConfigurationError, match="include itself"):
        inner.include_registry(outer)
    with pytest.raises(ConfigurationError, match="include itself"):
        inner.include_registry(inner)
    with pytest.raises(InvalidArgumentError, match="takes a TaskRegistry"):
        scheduler.include_registry(scheduler)  # type: ignore[arg-type]


# -------------------------------------------------------------- running
def test_a_declared_task_runs_with_its_hooks(scheduler: Quiv) -> None:
    seen: queue.Queue[tuple[str, Any]] = queue.Queue()

    def on_progress(**payload: Any) -> None:
        seen.put(("progress", payload))

    @scheduler.task(3600, delay=3600, kwargs={"days": 7}, progress_callback=on_progress)
    def cleanup(
        days: int,
        _job_id: str | None = None,
        _stop_event: threading.Event | None = None,
        _progress_hook: ProgressHook | None = None,
    ) -> None:
        seen.put(("job_id", _job_id))
        seen.put(("stop_event", _stop_event))
        assert _progress_hook is not None
        _progress_hook(step=1, days=days)

    scheduler.start()
    job = run_now(scheduler, cleanup, timeout=TIMEOUT)
    assert job.status is JobStatus.COMPLETED
    results = dict(seen.get(timeout=TIMEOUT) for _ in range(3))
    assert results["job_id"] == job.id
    assert isinstance(results["stop_event"], threading.Event)
    assert results["progress"] == {"step": 1, "days": 7}


def test_time_drives_a_declared_task(scheduler: Quiv, clock: ManualClock) -> None:
    runs: list[str] = []

    @scheduler.task(60, delay=30, fixed_interval=False)
    def tick(_job_id: str) -> None:
        runs.append(_job_id)

    scheduler.start()
    with JobRecorder(scheduler) as recorder:
        clock.advance(30)
        first = recorder.next(tick, timeout=TIMEOUT)
        clock.advance(60)
        second = recorder.next(tick, timeout=TIMEOUT)
    assert [first.id, second.id] == runs
    assert {first.status, second.status} == {JobStatus.COMPLETED}


# ------------------------------------------------------------- listeners
def test_declared_listeners_see_every_declared_task_and_job(scheduler: Quiv) -> None:
    events: queue.Queue[tuple[Event, str]] = queue.Queue()

    @scheduler.task(60, delay=60)
    def declared_first() -> None: ...

    @scheduler.on(Event.TASK_ADDED)
    def on_task(event: Event, task: Task) -> None:
        events.put((event, task.task_name))

    @scheduler.on(Event.JOB_STARTED, Event.JOB_COMPLETED, Event.JOB_COMPLETED)
    async def on_job(event: Event, task: Task, job: Job) -> None:
        events.put((event, task.task_name))

    scheduler.start()
    assert events.get(timeout=TIMEOUT) == (Event.TASK_ADDED, "declared_first")
    run_now(scheduler, declared_first, timeout=TIMEOUT)
    got = [events.get(timeout=TIMEOUT) for _ in range(2)]
    assert got == [(Event.JOB_STARTED, "declared_first"), (Event.JOB_COMPLETED, "declared_first")]
    assert events.empty()


def test_a_listener_declared_twice_is_registered_once(scheduler: Quiv) -> None:
    calls: queue.Queue[str] = queue.Queue()

    def listener(event: Event, task: Task) -> None:
        calls.put(task.task_name)

    scheduler.on(Event.TASK_ADDED)(listener)
    scheduler.on(Event.TASK_ADDED)(listener)
    scheduler.start()
    scheduler.add_task("manual", print, 60)
    assert calls.get(timeout=TIMEOUT) == "manual"
    assert calls.empty()


def test_listener_events_are_checked(scheduler: Quiv) -> None:
    on: Any = scheduler.on
    with pytest.raises(ConfigurationError, match="mixes TASK_\\* and JOB_\\*"):
        on(Event.TASK_ADDED, Event.JOB_FAILED)
    with pytest.raises(InvalidArgumentError, match=r"takes quiv\.Event members"):
        on("job_failed")
    with pytest.raises(TypeError):
        on()


def test_listener_signatures_are_checked_against_the_group(scheduler: Quiv) -> None:
    def needs_job(event: Event, task: Task, job: Job) -> None: ...

    def lacks_job(event: Event, task: Task) -> None: ...

    def takes_anything(*args: Any) -> None: ...

    with pytest.raises(HandlerRegistrationError, match=r"\(event, task\)") as info:
        scheduler.on(Event.TASK_PAUSED)(needs_job)  # type: ignore[type-var]
    assert str(info.value).endswith("def needs_job(event: Event, task: Task, job: Job) -> None: ...")
    with pytest.raises(HandlerRegistrationError, match=r"\(event, task, job\)"):
        scheduler.on(Event.JOB_FAILED)(lacks_job)  # type: ignore[type-var]
    with pytest.raises(HandlerRegistrationError, match="must be callable"):
        scheduler.on(Event.JOB_FAILED)(42)  # type: ignore[type-var]
    assert scheduler.on(Event.TASK_PAUSED)(takes_anything) is takes_anything
    assert scheduler.on(Event.JOB_FAILED)(takes_anything) is takes_anything
    assert [s.func for s in scheduler.registry.listeners] == [takes_anything, takes_anything]
