"""A scheduler's declarations: its registry, autodiscover, and turning specs into tasks.

Each scheduler owns a root :class:`TaskRegistry`; ``scheduler.task`` and
``scheduler.on`` declare into it and ``include_registry`` links other
registries to it. When the scheduler starts, :meth:`Declarations.go_live`
turns every reachable declaration into a listener or a task (listeners
first, so declared ``TASK_ADDED`` listeners see every declared task; each
group in declaration order). The specs are read, never consumed: another
scheduler including the same registry builds the same tasks again. Once
live, new declarations are materialised as soon as they are made.

This part talks to the scheduler only through the callables it is given.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterable
from datetime import tzinfo
from typing import Any

from quiv._core.handlers import describe
from quiv._declare.decorators import AmbiguousTaskError, TaskNotMaterializedError, TaskSpec, callable_key
from quiv._declare.discovery import check_patterns, discover
from quiv._declare.registry import TaskRegistry
from quiv._enums import Event
from quiv._exceptions import InvalidArgumentError, SchedulerStoppedError, TaskNotFoundError
from quiv._schedule.options import TaskSettings

__all__ = ["Declarations"]


class Declarations:
    """Declaring tasks and listeners with decorators; materialising them on start."""

    def __init__(
        self,
        *,
        add_task: Callable[[str, Callable[..., Any], TaskSettings], str],
        add_listener: Callable[[Event, Callable[..., Any]], None],
        is_running: Callable[[], bool],
        timezone: tzinfo,
    ) -> None:
        self._add_task = add_task
        self._add_listener = add_listener
        self._is_running = is_running
        self._timezone = timezone
        self.registry = TaskRegistry()
        self.registry._observers.add(self)
        self._lock = threading.RLock()
        self._live = False
        self._syncing = False
        self._again = False
        self._task_ids: dict[Hashable, str] = {}
        self._listeners: set[Hashable] = set()
        self._discovered: set[tuple[str, tuple[str, ...], bool]] = set()

    def autodiscover(
        self, packages: tuple[str, ...], exclude: Iterable[str], include_private: bool
    ) -> list[str]:
        if not packages:
            raise InvalidArgumentError("autodiscover() needs at least one package name")
        patterns = check_patterns(exclude)
        if not isinstance(include_private, bool):
            raise InvalidArgumentError(f"include_private must be a bool, got {include_private!r}")
        visited: list[str] = []
        for package in packages:
            marker = (package, patterns, include_private)
            if marker in self._discovered:
                continue
            visited.extend(discover(package, patterns, include_private))
            self._discovered.add(marker)
        return visited

    def task_id(self, func: Callable[..., Any], name: str | None) -> str:
        key = callable_key(func)
        specs = [s for s in self.registry.tasks if s.func_key == key]
        if name is not None:
            specs = [s for s in specs if s.name == name]
        label = describe(func) + ("" if name is None else f" named {name!r}")
        if not specs:
            raise TaskNotFoundError(f"{label} is not declared as a task on this scheduler or its registries")
        if len(specs) > 1:
            names = ", ".join(repr(s.name) for s in specs)
            raise AmbiguousTaskError(f"{label} is declared as {len(specs)} tasks ({names}); pass name=")
        with self._lock:
            task_id = self._task_ids.get(specs[0].key)
        if task_id is None:
            raise TaskNotMaterializedError(
                f"{label} is declared, but its task is created when the scheduler starts: call start() first"
            )
        return task_id

    # ------------------------------------------------------- materialising
    def go_live(self) -> None:
        with self._lock:
            self._live = True
        self._sync()

    def _declarations_changed(self) -> None:
        """Called by the registry (an observer hook) whenever a declaration is published."""
        with self._lock:
            live = self._live
        if not live or not self._is_running():
            return
        with contextlib.suppress(SchedulerStoppedError):  # shut down meanwhile: nothing to do
            self._sync()

    def _sync(self) -> None:
        """Create the listeners and tasks not created yet. Re-entrant calls fold into the running one."""
        with self._lock:
            if self._syncing:
                self._again = True
                return
            self._syncing = True
            try:
                again = True
                while again:
                    self._again = False
                    self._sync_once()
                    again = self._again
            finally:
                self._syncing = False

    def _sync_once(self) -> None:
        specs = self.registry.specs()
        for spec in specs:
            if isinstance(spec, TaskSpec) or spec.key in self._listeners:
                continue
            for event in spec.events:
                self._add_listener(event, spec.func)
            self._listeners.add(spec.key)
        for spec in specs:
            if not isinstance(spec, TaskSpec) or spec.key in self._task_ids:
                continue
            # Validated when declared, by the code add_task uses; a cron read in
            # the scheduler's timezone takes that timezone now.
            settings = spec.options.settings.in_timezone(self._timezone)
            self._task_ids[spec.key] = self._add_task(spec.name, spec.func, settings)
