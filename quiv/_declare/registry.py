"""The standalone registry task modules declare against.

A :class:`TaskRegistry` collects task and listener specs at import time, the
way FastAPI's ``APIRouter`` collects routes: task modules decorate with
``@registry.task(...)`` without importing the application's scheduler, and
the scheduler takes them in with ``scheduler.include_registry(registry)``.
Registries can include each other; a scheduler sees every spec reachable from
its own registry, in declaration order, each declaration once.

Declarations made while :func:`declaration_batch` is open on the current
thread (autodiscover opens one per module) stay pending, invisible to
schedulers, until the batch closes: they are published if the import
succeeded and withdrawn if it failed.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, Protocol, overload

from typing_extensions import Unpack

from quiv._declare.decorators import (
    JobListenerDecorator,
    ListenerSpec,
    TaskDecorator,
    TaskListenerDecorator,
    TaskOptions,
    TaskSpec,
    listener_decorator,
)
from quiv._enums import Event
from quiv._exceptions import ConfigurationError, InvalidArgumentError
from quiv._schedule.options import DeclaredOptions
from quiv.types import JobEvent, TaskEvent

__all__ = ["DeclarationBatch", "TaskRegistry", "declaration_batch"]

Spec = TaskSpec | ListenerSpec


class _Observer(Protocol):
    def _declarations_changed(self) -> None: ...


class TaskRegistry:
    """Collects ``@registry.task`` and ``@registry.on`` declarations for schedulers to include.

    Declaring never schedules anything: a scheduler that includes the
    registry (directly or through another registry) materialises the specs
    when it starts, or at once if it is already running.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._specs: list[Spec] = []
        self._pending: set[int] = set()
        self._children: list[TaskRegistry] = []
        self._parents: weakref.WeakSet[TaskRegistry] = weakref.WeakSet()
        self._observers: weakref.WeakSet[_Observer] = weakref.WeakSet()

    # ------------------------------------------------------------ declaring
    def task(self, interval: float | None = None, **options: Unpack[DeclaredOptions]) -> TaskDecorator:
        """Declare the decorated function as a task; the options are those of ``add_task``."""
        given: dict[str, Any] = dict(options)
        name = given.pop("name", None)
        if interval is not None:
            given["interval"] = interval
        return TaskDecorator(self._declare, TaskOptions.validated(name, given))

    @overload
    def on(self, event: TaskEvent, /, *events: TaskEvent) -> TaskListenerDecorator: ...
    @overload
    def on(self, event: JobEvent, /, *events: JobEvent) -> JobListenerDecorator: ...
    def on(self, event: Event, /, *events: Event) -> TaskListenerDecorator | JobListenerDecorator:
        """Declare the decorated function as a listener of one or more events of one group."""
        return listener_decorator(self._declare, (event, *events))

    def include_registry(self, registry: TaskRegistry) -> None:
        """Make every declaration of ``registry``, now and later, part of this one."""
        if not isinstance(registry, TaskRegistry):
            raise InvalidArgumentError(f"include_registry() takes a TaskRegistry, got {registry!r}")
        if registry is self or registry._reaches(self):
            raise ConfigurationError("include_registry() would make a registry include itself")
        with self._lock:
            if registry in self._children:
                return
            self._children.append(registry)
            registry._parents.add(self)
        self._changed()

    # ------------------------------------------------------------- reading
    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """Every task declared here or in an included registry, in declaration order."""
        return tuple(spec for spec in self.specs() if isinstance(spec, TaskSpec))

    @property
    def listeners(self) -> tuple[ListenerSpec, ...]:
        """Every listener declared here or in an included registry, in declaration order."""
        return tuple(spec for spec in self.specs() if isinstance(spec, ListenerSpec))

    def specs(self) -> list[Spec]:
        """Reachable, published specs in declaration order, one per declaration."""
        found: dict[int, Spec] = {}
        self._collect(found, set())
        unique: dict[Hashable, Spec] = {}
        for spec in sorted(found.values(), key=lambda s: s.sequence):
            unique.setdefault(spec.key, spec)
        return list(unique.values())

    def __repr__(self) -> str:
        with self._lock:
            return f"<TaskRegistry {len(self._specs)} declarations, {len(self._children)} included>"

    # ------------------------------------------------------------ internals
    def _collect(self, found: dict[int, Spec], visited: set[int]) -> None:
        if id(self) in visited:
            return
        visited.add(id(self))
        with self._lock:
            mine = [s for s in self._specs if id(s) not in self._pending]
            children = list(self._children)
        for spec in mine:
            found[id(spec)] = spec
        for child in children:
            child._collect(found, visited)

    def _reaches(self, other: TaskRegistry) -> bool:
        with self._lock:
            children = list(self._children)
        return any(child is other or child._reaches(other) for child in children)

    def _declare(self, spec: Spec) -> None:
        batch = _current_batch()
        with self._lock:
            self._specs.append(spec)
            if batch is not None:
                self._pending.add(id(spec))
        if batch is not None:
            batch.entries.append((self, spec))
        else:
            self._changed()

    def _publish(self, spec: Spec) -> None:
        with self._lock:
            self._pending.discard(id(spec))

    def _withdraw(self, spec: Spec) -> None:
        with self._lock:
            self._pending.discard(id(spec))
            self._specs = [s for s in self._specs if s is not spec]

    def _changed(self) -> None:
        """Tell every scheduler that sees this registry that its declarations changed."""
        for observer in list(self._observers):
            observer._declarations_changed()
        for parent in list(self._parents):
            parent._changed()


# ----------------------------------------------------------------- batches
class DeclarationBatch:
    """Declarations made on one thread while a :func:`declaration_batch` was open."""

    def __init__(self) -> None:
        self.entries: list[tuple[TaskRegistry, Spec]] = []
        self.withdrawn: list[Spec] = []


_local = threading.local()


def _stack() -> list[DeclarationBatch]:
    stack: list[DeclarationBatch] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _current_batch() -> DeclarationBatch | None:
    stack = _stack()
    return stack[-1] if stack else None


@contextmanager
def declaration_batch() -> Iterator[DeclarationBatch]:
    """Hold this thread's declarations back; publish them on success, withdraw them on error."""
    stack = _stack()
    batch = DeclarationBatch()
    stack.append(batch)
    outcome: Literal["ok", "failed"] = "failed"
    try:
        yield batch
        outcome = "ok"
    finally:
        stack.pop()
        if outcome == "failed":
            for registry, spec in reversed(batch.entries):
                registry._withdraw(spec)
                batch.withdrawn.append(spec)
        elif stack:
            stack[-1].entries.extend(batch.entries)
        else:
            for registry, spec in batch.entries:
                registry._publish(spec)
            for registry in {id(r): r for r, _ in batch.entries}.values():
                registry._changed()
