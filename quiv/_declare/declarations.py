"""The declarative side of ``Quiv``: ``task``, ``on``, registries and autodiscover.

``Quiv`` inherits :class:`_DeclarativeMixin`. Each scheduler owns a root
:class:`TaskRegistry`; ``scheduler.task``/``scheduler.on`` declare into it and
``include_registry`` links other registries to it. ``start()`` calls
:meth:`_DeclarativeMixin._materialize_declarations`, which turns every
reachable declaration into an ``add_listener``/``add_task`` call (listeners
first, so declared ``TASK_ADDED`` listeners see every declared task; each
group in declaration order). The specs are read, never consumed: another
scheduler including the same registry builds the same tasks again. Once
started, a scheduler materialises new declarations as soon as they are made.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, tzinfo
from typing import Any, Protocol, cast, overload

from quiv._core.handlers import describe
from quiv._declare.decorators import (
    AmbiguousTaskError,
    JobListenerDecorator,
    TaskDecorator,
    TaskListenerDecorator,
    TaskNotMaterializedError,
    TaskSpec,
    callable_key,
    listener_decorator,
)
from quiv._declare.discovery import check_patterns, discover
from quiv._declare.registry import TaskRegistry
from quiv._enums import Event
from quiv._exceptions import InvalidArgumentError, SchedulerStoppedError, TaskNotFoundError
from quiv._schedule.options import MisfirePolicy, TaskSettings
from quiv.types import JobEvent, TaskEvent, TaskId

__all__ = ["_DeclarativeMixin"]


class _Engine(Protocol):
    """What the mixin uses of the scheduler it is mixed into."""

    @property
    def running(self) -> bool: ...

    def add_task(self, task_name: str, func: Callable[..., Any], **options: Any) -> str: ...

    def _add_validated(self, task_name: str, func: Callable[..., Any], settings: TaskSettings) -> str: ...

    def add_listener(self, event: Event, callback: Callable[..., Any]) -> None: ...


class _DeclarativeMixin:
    """Declaring tasks and listeners with decorators; materialising them on start."""

    def _init_declarative(self) -> None:
        self._decl_registry = TaskRegistry()
        self._decl_registry._observers.add(self)
        self._decl_lock = threading.RLock()
        self._decl_live = False
        self._decl_syncing = False
        self._decl_again = False
        self._decl_task_ids: dict[Hashable, str] = {}
        self._decl_listeners: set[Hashable] = set()
        self._decl_discovered: set[tuple[str, tuple[str, ...], bool]] = set()

    # ------------------------------------------------------------ declaring
    @property
    def registry(self) -> TaskRegistry:
        """This scheduler's own registry: its declarations and every registry it includes."""
        return self._decl_registry

    def task(
        self,
        interval: float | None = None,
        *,
        delay: float = 0,
        run_once: bool = False,
        fixed_interval: bool = True,
        name: str | None = None,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        progress_callback: Callable[..., Any] | None = None,
        cron: str | None = None,
        cron_timezone: str | tzinfo | None = None,
        run_at: datetime | None = None,
        max_retries: int = 0,
        retry_backoff: float = 1.0,
        timeout: float | None = None,
        jitter: float = 0.0,
        misfire: MisfirePolicy = "skip",
        misfire_grace: float | None = None,
    ) -> TaskDecorator:
        """Declare the decorated function as a task, with the options of :meth:`add_task`.

        The function is returned unchanged. ``name`` defaults to its
        ``__name__``. Options and handler are checked now; the task is
        created when the scheduler starts (at once if it is running).
        """
        return self._decl_registry.task(
            name=name,
            interval=interval,
            delay=delay,
            run_once=run_once,
            fixed_interval=fixed_interval,
            args=args,
            kwargs=kwargs,
            progress_callback=progress_callback,
            cron=cron,
            cron_timezone=cron_timezone,
            run_at=run_at,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            timeout=timeout,
            jitter=jitter,
            misfire=misfire,
            misfire_grace=misfire_grace,
        )

    @overload
    def on(self, event: TaskEvent, /, *events: TaskEvent) -> TaskListenerDecorator: ...
    @overload
    def on(self, event: JobEvent, /, *events: JobEvent) -> JobListenerDecorator: ...
    def on(self, event: Event, /, *events: Event) -> TaskListenerDecorator | JobListenerDecorator:
        """Declare the decorated function as a listener of these events (all ``TASK_*`` or all ``JOB_*``)."""
        return listener_decorator(self._decl_registry._declare, (event, *events))

    def include_registry(self, registry: TaskRegistry) -> None:
        """Take in every declaration of ``registry``, including those made after this call."""
        self._decl_registry.include_registry(registry)

    def autodiscover(
        self, *packages: str, exclude: Iterable[str] = (), include_private: bool = False
    ) -> list[str]:
        """Import every module of each package, recursively in name order, so their declarations run.

        Modules and packages whose name starts with ``_`` are skipped unless
        ``include_private``; ``exclude`` lists dotted names (with their
        submodules) or glob patterns to skip. A module that fails to import
        raises ``DiscoveryError`` and keeps none of its declarations.
        Returns the modules visited; a call repeating an earlier successful
        one does nothing and returns ``[]``.
        """
        if not packages:
            raise InvalidArgumentError("autodiscover() needs at least one package name")
        patterns = check_patterns(exclude)
        if not isinstance(include_private, bool):
            raise InvalidArgumentError(f"include_private must be a bool, got {include_private!r}")
        visited: list[str] = []
        for package in packages:
            marker = (package, patterns, include_private)
            if marker in self._decl_discovered:
                continue
            visited.extend(discover(package, patterns, include_private))
            self._decl_discovered.add(marker)
        return visited

    # -------------------------------------------------------------- reading
    def task_id(self, func: Callable[..., Any], *, name: str | None = None) -> TaskId:
        """The id of the task this scheduler created for the declared ``func``.

        ``name`` picks one task when ``func`` is declared several times.
        Raises ``TaskNotMaterializedError`` before ``start()``,
        ``TaskNotFoundError`` if ``func`` is not declared here and
        ``AmbiguousTaskError`` if several declarations match.
        """
        key = callable_key(func)
        specs = [s for s in self._decl_registry.tasks if s.func_key == key]
        if name is not None:
            specs = [s for s in specs if s.name == name]
        label = describe(func) + ("" if name is None else f" named {name!r}")
        if not specs:
            raise TaskNotFoundError(f"{label} is not declared as a task on this scheduler or its registries")
        if len(specs) > 1:
            names = ", ".join(repr(s.name) for s in specs)
            raise AmbiguousTaskError(f"{label} is declared as {len(specs)} tasks ({names}); pass name=")
        with self._decl_lock:
            task_id = self._decl_task_ids.get(specs[0].key)
        if task_id is None:
            raise TaskNotMaterializedError(
                f"{label} is declared, but its task is created when the scheduler starts: call start() first"
            )
        return task_id

    # ------------------------------------------------------- materialising
    def _materialize_declarations(self) -> None:
        with self._decl_lock:
            self._decl_live = True
        self._sync_declarations()

    def _declarations_changed(self) -> None:
        with self._decl_lock:
            live = self._decl_live
        if not live or not cast(_Engine, self).running:
            return
        with contextlib.suppress(SchedulerStoppedError):  # shut down meanwhile: nothing to do
            self._sync_declarations()

    def _sync_declarations(self) -> None:
        """Create the listeners and tasks not created yet. Re-entrant calls fold into the running one."""
        with self._decl_lock:
            if self._decl_syncing:
                self._decl_again = True
                return
            self._decl_syncing = True
            try:
                again = True
                while again:
                    self._decl_again = False
                    self._sync_once()
                    again = self._decl_again
            finally:
                self._decl_syncing = False

    def _sync_once(self) -> None:
        engine = cast(_Engine, self)
        specs = self._decl_registry.specs()
        for spec in specs:
            if isinstance(spec, TaskSpec) or spec.key in self._decl_listeners:
                continue
            for event in spec.events:
                engine.add_listener(event, spec.func)
            self._decl_listeners.add(spec.key)
        for spec in specs:
            if not isinstance(spec, TaskSpec) or spec.key in self._decl_task_ids:
                continue
            options = spec.options
            if options.settings.cron is not None and options.values.get("cron_timezone") is None:
                # The cron is read in the scheduler's timezone: validate against it.
                task_id = engine.add_task(**spec.add_task_arguments())
            else:
                # Validated when declared, by the same code: no need to do it twice.
                task_id = engine._add_validated(spec.name, spec.func, options.settings)
            self._decl_task_ids[spec.key] = task_id
