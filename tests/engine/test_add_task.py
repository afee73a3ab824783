"""``add_task``: what it accepts, what it refuses, and that a refusal changes nothing."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from quiv import (
    ConfigurationError,
    Event,
    HandlerRegistrationError,
    InvalidArgumentError,
    QuivError,
    TaskStatus,
)
from quiv.testing import ManualClock

from .support import Calls, QuivFactory


def noop() -> None:
    pass


def takes_args(a: int, b: int, *, c: int = 0) -> None:
    pass


def progress(**payload: Any) -> None:
    pass


def _inner_function_factory() -> Callable[[], None]:
    def inner() -> None:
        pass

    return inner


VALID: dict[str, Any] = {"task_name": "job", "func": noop, "interval": 60}

# (overrides of VALID, expected error class, text the message must contain)
REJECTED: list[tuple[dict[str, Any], type[QuivError], str]] = [
    ({"task_name": ""}, ConfigurationError, "task_name"),
    ({"task_name": "   "}, ConfigurationError, "task_name"),
    ({"task_name": None}, InvalidArgumentError, "task_name"),
    ({"task_name": 42}, InvalidArgumentError, "42"),
    ({"func": 42}, HandlerRegistrationError, "42"),
    ({"func": "noop"}, HandlerRegistrationError, "'noop'"),
    ({"interval": 0}, ConfigurationError, "0"),
    ({"interval": -5}, ConfigurationError, "-5"),
    ({"interval": -0.25}, ConfigurationError, "-0.25"),
    ({"interval": math.nan}, ConfigurationError, "nan"),
    ({"interval": math.inf}, ConfigurationError, "inf"),
    ({"interval": "60"}, InvalidArgumentError, "'60'"),
    ({"interval": None}, InvalidArgumentError, "interval"),
    ({"interval": True}, InvalidArgumentError, "interval"),
    ({"delay": -1}, ConfigurationError, "-1"),
    ({"delay": -0.001}, ConfigurationError, "-0.001"),
    ({"delay": "soon"}, InvalidArgumentError, "'soon'"),
    ({"delay": math.nan}, ConfigurationError, "delay"),
    ({"run_once": "yes"}, InvalidArgumentError, "'yes'"),
    ({"run_once": 1}, InvalidArgumentError, "run_once"),
    ({"fixed_interval": 0}, InvalidArgumentError, "fixed_interval"),
    ({"args": [1, 2]}, InvalidArgumentError, "[1, 2]"),
    ({"args": 1}, InvalidArgumentError, "args"),
    ({"args": "ab"}, InvalidArgumentError, "'ab'"),
    ({"kwargs": [("a", 1)]}, InvalidArgumentError, "[('a', 1)]"),
    ({"kwargs": {1: "one"}}, InvalidArgumentError, "kwargs"),
    ({"progress_callback": "print"}, HandlerRegistrationError, "'print'"),
    ({"progress_callback": 3}, HandlerRegistrationError, "progress_callback"),
    # Arguments are pickled for persistence: what cannot be pickled is refused up front.
    ({"args": (lambda: None,)}, ConfigurationError, "lambda"),
    ({"args": (threading.Lock(),)}, ConfigurationError, "args"),
    ({"args": (_inner_function_factory(),)}, ConfigurationError, "inner"),
    ({"kwargs": {"callback": lambda: None}}, ConfigurationError, "kwargs"),
    ({"kwargs": {"event": threading.Event()}}, ConfigurationError, "kwargs"),
]


@pytest.mark.parametrize(
    ("overrides", "error", "text"),
    REJECTED,
    ids=[f"{next(iter(o))}={next(iter(o.values()))!r}"[:40] for o, _, _ in REJECTED],
)
def test_rejected_input_raises_and_changes_nothing(
    make_quiv: QuivFactory,
    manual_clock: ManualClock,
    overrides: dict[str, Any],
    error: type[QuivError],
    text: str,
) -> None:
    scheduler = make_quiv(clock=manual_clock)
    added = Calls()
    scheduler.add_listener(Event.TASK_ADDED, added.sync())
    existing = scheduler.add_task("existing", noop, interval=60, delay=60)
    before = scheduler.get_all_tasks(include_run_once=True)
    assert len(added.wait_for(1)) == 1

    with pytest.raises(error) as caught:
        scheduler.add_task(**{**VALID, **overrides})

    assert text in str(caught.value), f"message {str(caught.value)!r} does not name {text!r}"
    assert scheduler.get_all_tasks(include_run_once=True) == before
    assert [t.id for t in before] == [existing]
    assert len(added) == 1, "no TASK_ADDED may fire for a refused task"
    scheduler.start()
    assert scheduler.get_all_jobs() == []


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ConfigurationError, ValueError),
        (InvalidArgumentError, TypeError),
        (HandlerRegistrationError, TypeError),
    ],
)
def test_refusals_are_also_the_builtin_errors(error: type[QuivError], builtin: type[Exception]) -> None:
    assert issubclass(error, builtin)
    assert issubclass(error, QuivError)


def test_positional_only_job_id_is_refused_at_add_task(make_quiv: QuivFactory) -> None:
    def handler(_job_id: str, /) -> None:
        pass

    scheduler = make_quiv()
    with pytest.raises(HandlerRegistrationError) as caught:
        scheduler.add_task("positional", handler, interval=60)
    assert "_job_id" in str(caught.value)
    assert scheduler.get_all_tasks(include_run_once=True) == []


@pytest.mark.parametrize("name", ["_job_id", "_stop_event", "_progress_hook"])
def test_varargs_named_like_a_hook_is_refused(make_quiv: QuivFactory, name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def handler(*{name}): pass", namespace)
    scheduler = make_quiv()
    with pytest.raises(HandlerRegistrationError, match=name):
        scheduler.add_task("varargs", namespace["handler"], interval=60)
    assert scheduler.get_all_tasks(include_run_once=True) == []


def test_add_task_returns_a_fresh_uuid_per_call_even_for_the_same_name(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    first = scheduler.add_task("same", noop, interval=60)
    second = scheduler.add_task("same", noop, interval=60)
    assert first != second
    assert str(uuid.UUID(first)) == first
    assert str(uuid.UUID(second)) == second
    assert {t.task_name for t in scheduler.get_all_tasks()} == {"same"}
    assert len(scheduler.get_all_tasks()) == 2


def test_accepted_task_is_stored_with_every_option(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    task_id = scheduler.add_task(
        task_name="full",
        func=takes_args,
        interval=2.5,
        delay=7,
        run_once=False,
        fixed_interval=False,
        args=(1, 2),
        kwargs={"c": 3},
        progress_callback=progress,
    )
    task = scheduler.get_task(task_id)
    assert task.id == task_id
    assert task.task_name == "full"
    assert task.args == (1, 2)
    assert task.kwargs == {"c": 3}
    assert task.interval_seconds == 2.5
    assert task.fixed_interval is False
    assert task.run_once is False
    assert task.status == TaskStatus.ACTIVE
    assert task.next_run_at.timestamp() == manual_clock.now().timestamp() + 7


def test_defaults_of_add_task(make_quiv: QuivFactory, manual_clock: ManualClock) -> None:
    scheduler = make_quiv(clock=manual_clock)
    task = scheduler.get_task(scheduler.add_task("defaults", noop, interval=60))
    assert task.args == ()
    assert task.kwargs == {}
    assert task.fixed_interval is True
    assert task.run_once is False
    assert task.next_run_at == manual_clock.now()


def test_async_callables_and_callable_objects_are_accepted(make_quiv: QuivFactory) -> None:
    async def handler() -> None:
        pass

    class Handler:
        def __call__(self) -> None:
            pass

    scheduler = make_quiv()
    scheduler.add_task("async", handler, interval=60, progress_callback=handler)
    scheduler.add_task("object", Handler(), interval=60, progress_callback=Handler())
    assert len(scheduler.get_all_tasks()) == 2


def test_interval_is_required(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    with pytest.raises(InvalidArgumentError, match="interval"):
        scheduler.add_task("no-interval", noop)  # type: ignore[call-arg,unused-ignore]
    assert scheduler.get_all_tasks(include_run_once=True) == []
