"""What the declarative decorators build: frozen specs and the decorator objects.

``@scheduler.task(...)`` and ``@registry.task(...)`` return a
:class:`TaskDecorator`; applying it checks the handler, hands a frozen
:class:`TaskSpec` to the registry and returns the function unchanged.
``@scheduler.on(...)`` returns a :class:`TaskListenerDecorator` or a
:class:`JobListenerDecorator`, depending on the event group. Nothing here
touches a scheduler: specs become tasks and listeners when one starts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, ParamSpec, TypeVar

from quiv._declare.checks import SourceLocation, check_listener, check_task_handler, source_location
from quiv._enums import JOB_EVENTS, Event
from quiv._exceptions import (
    AmbiguousTaskError,
    ConfigurationError,
    HandlerRegistrationError,
    InvalidArgumentError,
    TaskNotMaterializedError,
)
from quiv._schedule.options import TaskSettings
from quiv.types import JobListener, TaskListener

__all__ = [
    "AmbiguousTaskError",
    "JobListenerDecorator",
    "ListenerSpec",
    "TaskDecorator",
    "TaskListenerDecorator",
    "TaskNotMaterializedError",
    "TaskOptions",
    "TaskSpec",
    "callable_key",
    "listener_decorator",
]

P = ParamSpec("P")
R = TypeVar("R")
_TL = TypeVar("_TL", bound=TaskListener)
_JL = TypeVar("_JL", bound=JobListener)

#: Declaration order across every registry: specs are materialised in this order.
_sequence = itertools.count()


def callable_key(func: object) -> Hashable:
    """What identifies a callable across re-imports: where it is defined, else the object itself."""
    location = source_location(func)
    if location is None:
        return ("object", id(func))
    return ("source", location.filename, location.lineno, location.qualname)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """The options given to ``task(...)``, validated by the same code as ``add_task``.

    ``given`` names the options passed explicitly (``name=None`` means the
    function's name); ``settings`` is what validation made of them. The
    arguments are kept pickled only, inside the settings.
    """

    name: str | None
    given: frozenset[str]
    settings: TaskSettings

    @classmethod
    def validated(cls, name: str | None, options: Mapping[str, Any]) -> TaskOptions:
        """Check the options exactly as ``add_task`` does and freeze them."""
        settings = TaskSettings.validate(options, task_name="(the function's name)" if name is None else name)
        return cls(name, frozenset(options), settings)

    def spec_for(self, func: Callable[..., Any]) -> TaskSpec:
        """Check ``func`` against these options and build its spec."""
        name = self.name
        if name is None:
            name = getattr(func, "__name__", None)
            if not isinstance(name, str) or not name:
                raise HandlerRegistrationError(
                    f"cannot name a task after {func!r}: it has no __name__; pass name=..."
                )
        check_task_handler(func, *self.settings.arguments())
        return TaskSpec(func=func, name=name, options=self, location=source_location(func))

    def key(self) -> Hashable:
        """Equal for equal options; arguments compare pickled, callbacks by definition site."""
        return self.settings.identity(callable_key)


@dataclass(frozen=True, eq=False, slots=True)
class TaskSpec:
    """One declared task: the function, its task name and its options, frozen."""

    func: Callable[..., Any]
    name: str
    options: TaskOptions
    location: SourceLocation | None
    sequence: int = field(default_factory=lambda: next(_sequence))
    #: :func:`callable_key` of ``func``.
    func_key: Hashable = field(init=False, repr=False)
    #: Equal for the same declaration reached twice (e.g. a module imported under two names).
    key: Hashable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        func_key = callable_key(self.func)
        object.__setattr__(self, "func_key", func_key)
        object.__setattr__(self, "key", (func_key, self.name, self.options.key()))


@dataclass(frozen=True, eq=False, slots=True)
class ListenerSpec:
    """One declared listener: the callback and the events (all of one group) it listens to."""

    func: Callable[..., Any]
    events: tuple[Event, ...]
    location: SourceLocation | None
    sequence: int = field(default_factory=lambda: next(_sequence))
    #: Equal for the same callback declared twice for the same events. Identity is the
    #: object: two closures from one factory are two listeners.
    key: Hashable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (("object", id(self.func)), self.events))


class TaskDecorator:
    """What ``task(...)`` returns: applied to a function, declares it and returns it unchanged.

    One instance may decorate several functions; each becomes its own task.
    """

    __slots__ = ("_declare", "_options")

    def __init__(self, declare: Callable[[TaskSpec], None], options: TaskOptions) -> None:
        self._declare = declare
        self._options = options

    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]:
        self._declare(self._options.spec_for(func))
        return func

    def __repr__(self) -> str:
        return f"<TaskDecorator {self._options!r}>"


class _ListenerDecorator:
    __slots__ = ("_declare", "_events")
    _arity: ClassVar[int]
    _group: ClassVar[str]

    def __init__(self, declare: Callable[[ListenerSpec], None], events: tuple[Event, ...]) -> None:
        self._declare = declare
        self._events = events

    def _apply(self, func: Callable[..., Any]) -> None:
        check_listener(func, self._arity, self._group)
        self._declare(ListenerSpec(func=func, events=self._events, location=source_location(func)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {', '.join(e.name for e in self._events)}>"


class TaskListenerDecorator(_ListenerDecorator):
    """What ``on(...)`` returns for ``TASK_*`` events: declares an ``(event, task)`` listener."""

    __slots__ = ()
    _arity = 2
    _group = "TASK_*"

    def __call__(self, func: _TL, /) -> _TL:
        self._apply(func)
        return func


class JobListenerDecorator(_ListenerDecorator):
    """What ``on(...)`` returns for ``JOB_*`` events: declares an ``(event, task, job)`` listener."""

    __slots__ = ()
    _arity = 3
    _group = "JOB_*"

    def __call__(self, func: _JL, /) -> _JL:
        self._apply(func)
        return func


def listener_decorator(
    declare: Callable[[ListenerSpec], None], events: tuple[object, ...]
) -> TaskListenerDecorator | JobListenerDecorator:
    """Check the events given to ``on(...)`` and build the decorator for their group."""
    unique: list[Event] = []
    for event in events:
        if not isinstance(event, Event):
            raise InvalidArgumentError(f"on() takes quiv.Event members, got {event!r}")
        if event not in unique:
            unique.append(event)
    job = [e in JOB_EVENTS for e in unique]
    if any(job) and not all(job):
        names = ", ".join(e.name for e in unique)
        raise ConfigurationError(
            f"on({names}) mixes TASK_* and JOB_* events; their listeners receive different "
            "arguments ((event, task) and (event, task, job)): use one on() per group"
        )
    if all(job):
        return JobListenerDecorator(declare, tuple(unique))
    return TaskListenerDecorator(declare, tuple(unique))
