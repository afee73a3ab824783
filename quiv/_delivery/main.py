"""``run_on_main``: hand a call to the application's event loop from anywhere."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from quiv._core.scheduler import active_scheduler
from quiv._delivery.dispatch import in_job_thread, run_coroutine_blocking
from quiv._exceptions import InvalidArgumentError

__all__ = ["run_on_main"]

T = TypeVar("T")
_logger = logging.getLogger("Quiv")


def _settle(
    future: concurrent.futures.Future[Any], target: Callable[..., Any], args: Any, kwargs: Any
) -> None:
    """Run ``target`` here and put its outcome into ``future`` (awaiting it if async)."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = target(*args, **kwargs)
        if asyncio.iscoroutine(result):
            result = run_coroutine_blocking(result)
    except Exception as exc:
        _logger.exception("run_on_main target %r raised", target)
        future.set_exception(exc)
    else:
        future.set_result(result)


def _start_on_loop(
    loop: asyncio.AbstractEventLoop,
    future: concurrent.futures.Future[Any],
    target: Callable[..., Any],
    args: Any,
    kwargs: Any,
) -> None:
    """On the loop: call ``target``; a coroutine result becomes a task chained to ``future``."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = target(*args, **kwargs)
    except Exception as exc:
        _logger.exception("run_on_main target %r raised", target)
        future.set_exception(exc)
        return
    if not asyncio.iscoroutine(result):
        future.set_result(result)
        return
    task = loop.create_task(result)

    def copy(done: asyncio.Task[Any]) -> None:
        if done.cancelled():
            future.cancel()
        elif (exc := done.exception()) is not None:
            _logger.error("run_on_main target %r raised", target, exc_info=exc)
            future.set_exception(exc)
        else:
            future.set_result(done.result())

    task.add_done_callback(copy)


def run_on_main(target: Callable[..., Any], *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
    """Run ``target(*args, **kwargs)`` on the main event loop and return a future of its result.

    From a worker thread (a job, or any other thread) the call is queued to
    the main loop of the running scheduler, in order with progress reports
    and events. On the main loop itself a sync target runs inline and an
    async one is started with ``create_task``. With no main loop known, the
    target runs on the calling thread (an async one in a temporary loop).
    The returned ``concurrent.futures.Future`` may be ignored; failures are
    logged either way.
    """
    if not callable(target):  # type: ignore[redundant-expr,unused-ignore]
        raise InvalidArgumentError(f"run_on_main needs a callable, got {target!r}")
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    here = None if in_job_thread() else asyncio._get_running_loop()
    scheduler = active_scheduler()
    box = scheduler._dispatcher.mailbox() if scheduler is not None else None
    loop = box.loop if box is not None else here
    if loop is None:
        _settle(future, target, args, kwargs)
    elif loop is here:
        _start_on_loop(loop, future, target, args, kwargs)
    elif box is not None and box.post(_start_on_loop, (loop, future, target, args, kwargs)):
        pass
    else:
        _settle(future, target, args, kwargs)
    return future
