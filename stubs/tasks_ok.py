"""Declared tasks keep their exact signature: mypy checks direct calls as usual."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from typing_extensions import assert_type

from quiv import Quiv
from quiv._declare.decorators import TaskDecorator
from quiv._declare.registry import TaskRegistry
from quiv.types import ProgressHook

scheduler = Quiv()
registry = TaskRegistry()

assert_type(scheduler.task(60), TaskDecorator)
assert_type(registry.task(60, delay=5, run_once=True, name="x"), TaskDecorator)


@scheduler.task(60, kwargs={"days": 30})
def cleanup(
    days: int,
    _job_id: str | None = None,
    _stop_event: threading.Event | None = None,
    _progress_hook: ProgressHook | None = None,
) -> int:
    return days


assert_type(cleanup(3), int)
assert_type(cleanup(days=3, _job_id="job", _stop_event=threading.Event()), int)


@registry.task(3600, fixed_interval=False)
async def report(kind: str, *, _progress_hook: Callable[..., None] | None = None) -> None:
    if _progress_hook is not None:
        _progress_hook(step=1, kind=kind)


async def call_report() -> None:
    assert_type(await report("weekly"), None)


@scheduler.task(5)
def loose(
    _job_id: Any = None, _stop_event: object = None, _progress_hook: Callable[..., Any] = print
) -> None:
    pass


@scheduler.task(cron="0 3 * * *", cron_timezone="Europe/Paris", max_retries=3, timeout=600)
def nightly() -> None:
    pass


every_minute = scheduler.task(60)


@every_minute
def first() -> None:
    pass


@every_minute
def second(_job_id: str) -> str:
    return _job_id


assert_type(second("id"), str)

task_id: str = scheduler.task_id(cleanup)
scheduler.include_registry(registry)
modules: list[str] = scheduler.autodiscover("stubs_example.tasks", exclude=["stubs_example.tasks.legacy"])
