"""Injected parameters whose annotation cannot take what quiv passes (needs the quiv.mypy plugin)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from quiv import Quiv
from quiv._declare.registry import TaskRegistry

scheduler = Quiv()
registry = TaskRegistry()


@scheduler.task(60)  # type: ignore[quiv-injection]
def stop_as_bool(_stop_event: bool = False) -> None:
    pass


@scheduler.task(60)  # type: ignore[quiv-injection]
def job_id_as_int(_job_id: int | None = None) -> None:
    pass


@registry.task(60)  # type: ignore[quiv-injection]
def hook_returning_int(_progress_hook: Callable[..., int] | None = None) -> None:
    pass


@scheduler.task(60)  # type: ignore[quiv-injection]
def stop_as_str(*, _stop_event: str) -> None:
    pass


@scheduler.task(60)  # type: ignore[quiv-injection]
def job_id_as_event(_job_id: threading.Event) -> None:
    pass
