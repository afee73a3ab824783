"""Handler checks run when a task or listener is declared, so mistakes fail at import.

The options themselves are validated by ``quiv._schedule.options.TaskSettings``, the
code ``add_task`` uses. :func:`check_task_handler` and :func:`check_listener`
look at a handler's signature: the injected
parameters (kind and annotation) and whether the declared ``args``/``kwargs``
bind. Every handler error ends with the handler's ``def`` line, shown the way
a traceback shows it.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import linecache
import types
import typing
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from typing_extensions import get_protocol_members, is_protocol

from quiv._core.handlers import INJECTED_NAMES, describe, injection_plan
from quiv._core.stop import StopEvent
from quiv._exceptions import HandlerRegistrationError
from quiv.types import ProgressHook

__all__ = [
    "SourceLocation",
    "check_listener",
    "check_task_handler",
    "source_location",
]

_INJECTED_TYPES: dict[str, str] = {
    "_job_id": "a str (the job id)",
    "_stop_event": "a threading.Event",
    "_progress_hook": "a progress hook (quiv.types.ProgressHook, a callable returning None)",
}


# --------------------------------------------------------------- location
@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where a handler is defined: file, line of its ``def`` and that line's text."""

    filename: str
    lineno: int
    qualname: str
    line: str

    def __str__(self) -> str:
        text = f'  File "{self.filename}", line {self.lineno}, in {self.qualname}'
        return f"{text}\n    {self.line}" if self.line else text


def _code_owner(func: object) -> object:
    """The plain function behind wrappers, partials, bound methods and callable objects."""
    seen: set[int] = set()
    while id(func) not in seen:
        seen.add(id(func))
        if isinstance(func, functools.partial):
            func = func.func
        elif inspect.ismethod(func):
            func = func.__func__
        elif hasattr(func, "__wrapped__"):
            func = inspect.unwrap(func)  # type: ignore[arg-type]
        elif not inspect.isfunction(func) and not inspect.isclass(func) and callable(func):
            call = getattr(type(func), "__call__", None)  # noqa: B004 - the attribute, not callable()
            if call is None:
                break
            func = call
        else:
            break
    return func


def _def_line(code: types.CodeType) -> tuple[int, str]:
    """Line number and text of the ``def`` of ``code`` (its decorators are skipped)."""
    first = code.co_firstlineno
    for lineno in range(first, first + 200):
        text = linecache.getline(code.co_filename, lineno)
        if not text:
            break
        stripped = text.strip()
        if stripped.startswith(("def ", "async def ")):
            return lineno, stripped
    return first, linecache.getline(code.co_filename, first).strip()


def source_location(func: object) -> SourceLocation | None:
    """Where ``func`` is defined, or ``None`` for callables without Python source."""
    owner = _code_owner(func)
    code = getattr(owner, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    lineno, line = _def_line(code)
    qualname = getattr(owner, "__qualname__", code.co_name)
    return SourceLocation(code.co_filename, lineno, str(qualname), line)


def _where(func: object) -> str:
    location = source_location(func)
    return f"\n{location}" if location is not None else ""


# ------------------------------------------------------------- annotations
def _resolve(annotation: object, func: object) -> object:
    """Evaluate a string annotation in the handler's module; unresolvable ones stay strings."""
    if not isinstance(annotation, str):
        return annotation
    owner = _code_owner(func)
    namespace = getattr(owner, "__globals__", None)
    if not isinstance(namespace, dict):
        return annotation
    try:
        return eval(annotation, namespace)  # the handler's own annotation, evaluated as typing does
    except Exception:
        return annotation


def _is_none(annotation: object) -> bool:
    return annotation is None or annotation is type(None)


def _accepts_class(annotation: object, provided: type) -> bool:
    """Whether a value of class ``provided`` fits ``annotation`` (unknown forms are given the benefit)."""
    if isinstance(annotation, type):
        if is_protocol(annotation):
            return all(hasattr(provided, member) for member in get_protocol_members(annotation))
        return issubclass(provided, annotation)
    origin = typing.get_origin(annotation)
    if isinstance(origin, type):
        return issubclass(provided, origin)
    return True


def _hook_fits(annotation: object) -> bool:
    """Whether the injected progress hook (any arguments, returns None) fits ``annotation``."""
    if annotation is ProgressHook or annotation is collections.abc.Callable or annotation is Callable:
        return True
    origin = typing.get_origin(annotation)
    if origin is collections.abc.Callable:
        args = typing.get_args(annotation)
        result = args[-1] if args else Any
        return result is Any or result is object or _is_none(result) or isinstance(result, typing.TypeVar)
    if isinstance(annotation, type):
        if is_protocol(annotation):
            return set(get_protocol_members(annotation)) <= {"__call__"}
        return annotation is object
    return origin is None or not isinstance(origin, type)


def _fits(annotation: object, name: str) -> bool:
    """Whether what quiv injects as ``name`` is acceptable for a parameter annotated ``annotation``."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object:
        return True
    if isinstance(annotation, (str, typing.TypeVar)):
        return True  # unresolvable or generic: mypy (with quiv.mypy) judges these
    if _is_none(annotation):
        return False
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _fits(typing.get_args(annotation)[0], name)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(member, name) for member in typing.get_args(annotation))
    if origin is typing.Literal:
        return False
    if isinstance(annotation, typing.NewType):
        return False  # quiv passes the plain type, which a NewType does not accept (mypy agrees)
    if name == "_progress_hook":
        return _hook_fits(annotation)
    provided = str if name == "_job_id" else StopEvent
    return _accepts_class(annotation, provided)


def _annotation_text(annotation: object) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return (
            annotation.__qualname__
            if annotation.__module__ == "builtins"
            else (f"{annotation.__module__}.{annotation.__qualname__}")
        )
    return repr(annotation).replace("typing.", "")


# ------------------------------------------------------------------ checks
def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


#: Handlers that passed every check with no arguments at all (weakly held): a
#: repeated ``add_task`` of one handler without arguments checks it once.
_PLAIN_OK: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


def check_task_handler(
    func: object,
    args: tuple[Any, ...] | None,
    kwargs: dict[str, Any] | None,
    *,
    role: str = "task handler",
) -> None:
    """Raise ``HandlerRegistrationError`` (showing the ``def`` line) if quiv cannot call ``func`` as declared.

    Checked: it is callable; each injected parameter can be passed by
    keyword and its annotation accepts what quiv passes; ``args`` and
    ``kwargs`` bind to the remaining parameters.
    """
    plain = not args and not kwargs
    if plain:
        try:
            if func in _PLAIN_OK:
                return
        except TypeError:  # not weak-referenceable: check every time
            plain = False
    if not callable(func):
        raise HandlerRegistrationError(f"{role} must be callable, got {func!r}")
    try:
        injection_plan(func)
    except HandlerRegistrationError as exc:
        raise HandlerRegistrationError(f"{exc}{_where(func)}") from None
    signature = _signature(func)
    if signature is None:
        return
    params = signature.parameters
    for name in INJECTED_NAMES:
        param = params.get(name)
        if param is None:
            continue
        annotation = _resolve(param.annotation, func)
        if not _fits(annotation, name):
            raise HandlerRegistrationError(
                f"{role} {describe(func)} annotates {name} as {_annotation_text(annotation)}, "
                f"but quiv passes {_INJECTED_TYPES[name]} there; annotate it so it accepts that "
                f"(adding '| None' is fine){_where(func)}"
            )
    clashing = sorted(set(kwargs or {}) & set(INJECTED_NAMES))
    if clashing:
        raise HandlerRegistrationError(
            f"kwargs for {role} {describe(func)} set {', '.join(clashing)}, which quiv injects itself; "
            f"rename the argument{_where(func)}"
        )
    remaining = [p for p in params.values() if p.name not in INJECTED_NAMES]
    try:
        signature.replace(parameters=remaining).bind(*(args or ()), **(kwargs or {}))
    except TypeError as exc:
        raise HandlerRegistrationError(
            f"args={args!r} and kwargs={kwargs!r} do not fit {role} {describe(func)}{signature}: "
            f"{exc}{_where(func)}"
        ) from None
    if plain:
        _PLAIN_OK.add(func)


def check_listener(func: object, arity: int, group: str) -> None:
    """Raise ``HandlerRegistrationError`` unless ``func`` accepts ``arity`` positional arguments."""
    what = "(event, task)" if arity == 2 else "(event, task, job)"
    if not callable(func):
        raise HandlerRegistrationError(f"listener for {group} events must be callable, got {func!r}")
    signature = _signature(func)
    if signature is None:
        return
    try:
        signature.bind(*([None] * arity))
    except TypeError as exc:
        raise HandlerRegistrationError(
            f"listener {describe(func)}{signature} cannot take the {what} quiv passes for {group} "
            f"events: {exc}{_where(func)}"
        ) from None
