"""How quiv calls a handler: which hooks it injects, and whether it is async."""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quiv._exceptions import HandlerRegistrationError

__all__ = ["INJECTED_NAMES", "InjectionPlan", "describe", "injection_plan", "is_async_callable"]

INJECTED_NAMES = ("_job_id", "_stop_event", "_progress_hook")
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True, slots=True)
class InjectionPlan:
    """Which of the three hooks a handler receives, read once from its signature."""

    job_id: bool = False
    stop_event: bool = False
    progress_hook: bool = False
    is_async: bool = False


def describe(func: object) -> str:
    """A readable name for a callable, with its definition site when known."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def is_async_callable(func: object) -> bool:
    """True for coroutine functions, partials of them, and objects with an async ``__call__``."""
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - we want the attribute, not callable()
    return call is not None and not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


_plans: weakref.WeakKeyDictionary[Callable[..., Any], InjectionPlan] = weakref.WeakKeyDictionary()


def injection_plan(func: Callable[..., Any]) -> InjectionPlan:
    """Read which hooks ``func`` accepts; raise ``HandlerRegistrationError`` if one cannot be passed.

    Plans are cached per function (weakly, so handlers can still be collected):
    adding many tasks of one handler inspects its signature once.
    """
    try:
        return _plans[func]
    except (KeyError, TypeError):
        pass
    plan = _read_plan(func)
    with contextlib.suppress(TypeError):  # not weak-referenceable (some builtins): no cache
        _plans[func] = plan
    return plan


def _read_plan(func: Callable[..., Any]) -> InjectionPlan:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        # Builtins and some C callables have no signature: inject nothing.
        return InjectionPlan(is_async=is_async_callable(func))
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        wanted = dict.fromkeys(INJECTED_NAMES, True)
    else:
        wanted = {}
        for name in INJECTED_NAMES:
            param = params.get(name)
            if param is None:
                continue
            if param.kind not in _KEYWORD_KINDS:
                raise HandlerRegistrationError(
                    f"handler {describe(func)} declares {name} as {param.kind.description}; "
                    f"quiv passes {name} by keyword, so it must be a normal or keyword-only parameter"
                )
            wanted[name] = True
    return InjectionPlan(
        job_id=wanted.get("_job_id", False),
        stop_event=wanted.get("_stop_event", False),
        progress_hook=wanted.get("_progress_hook", False),
        is_async=is_async_callable(func),
    )
