"""``@scheduler.task(...)`` and ``add_task(...)`` take the same options and reject the same values."""

from __future__ import annotations

import inspect
import threading
from typing import Any

import pytest

from quiv import Quiv
from quiv._declare.registry import TaskRegistry
from quiv._exceptions import QuivError
from quiv._schedule.options import DEFAULTS, DeclaredOptions, ScheduleOptions


def _options(func: Any, *, skip: tuple[str, ...]) -> dict[str, tuple[object, str]]:
    """Parameter name -> (default, annotation) of ``func``, without ``self`` and the ``skip`` names."""
    params = inspect.signature(func).parameters.values()
    return {p.name: (p.default, str(p.annotation)) for p in params if p.name not in ("self", *skip)}


def test_task_takes_the_options_of_add_task() -> None:
    engine = _options(Quiv.add_task, skip=("func", "options"))
    engine_names = {*engine, *ScheduleOptions.__annotations__}
    declarative = {*_options(Quiv.task, skip=("options",)), *DeclaredOptions.__annotations__}
    engine_names.discard("task_name")
    assert declarative == {*engine_names, "name"}
    # Both take their keyword options from the one schema, with the same types.
    for name, annotation in ScheduleOptions.__annotations__.items():
        assert DeclaredOptions.__annotations__[name] == annotation
    for name, (default, _) in engine.items():
        if name in DEFAULTS and name not in ("args", "kwargs"):
            assert DEFAULTS[name] == default, name


def test_task_options_after_interval_are_keyword_only() -> None:
    params = list(inspect.signature(Quiv.task).parameters.values())[1:]
    assert params[0].name == "interval"
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert [(p.name, p.kind) for p in params[1:]] == [("options", inspect.Parameter.VAR_KEYWORD)]


def test_registry_task_has_the_same_signature_as_scheduler_task() -> None:
    assert inspect.signature(TaskRegistry.task) == inspect.signature(Quiv.task)


def test_registry_on_has_the_same_signature_as_scheduler_on() -> None:
    assert inspect.signature(TaskRegistry.on) == inspect.signature(Quiv.on)


def _handler() -> None:
    pass


BAD_OPTIONS: list[dict[str, Any]] = [
    {"name": ""},
    {"name": "   "},
    {"name": 3},
    {"interval": 0},
    {"interval": -1},
    {"interval": float("nan")},
    {"interval": float("inf")},
    {"interval": "10"},
    {"interval": True},
    {"delay": -0.5},
    {"delay": None},
    {"run_once": 1},
    {"fixed_interval": "yes"},
    {"args": [1, 2]},
    {"args": (threading.Lock(),)},
    {"kwargs": [("a", 1)]},
    {"kwargs": {1: "a"}},
    {"kwargs": {"lock": threading.Lock()}},
    {"progress_callback": "not callable"},
    {"interval": None},
    {"interval": None, "cron": "every monday"},
    {"cron": "*/5 * * * *"},
    {"interval": None, "cron": "*/5 * * * *", "delay": 5},
    {"cron_timezone": "Europe/Paris"},
    {"interval": None, "run_at": "tomorrow"},
    {"max_retries": -1},
    {"retry_backoff": -1},
    {"timeout": 0},
    {"jitter": float("nan")},
    {"misfire": "later"},
    {"misfire_grace": -2},
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=lambda bad: repr(bad)[:40])
def test_bad_options_fail_the_same_way_in_both_spellings(scheduler: Quiv, bad: dict[str, Any]) -> None:
    options: dict[str, Any] = {"interval": 10, **bad}
    name = options.pop("name", "t")
    with pytest.raises(QuivError) as by_engine:
        scheduler.add_task(name, _handler, **options)
    with pytest.raises(QuivError) as by_decorator:
        scheduler.task(name=name, **options)
    assert type(by_decorator.value) is type(by_engine.value)
    assert str(by_decorator.value) == str(by_engine.value)
    assert scheduler.get_all_tasks(include_run_once=True) == []
    assert scheduler.registry.tasks == ()
