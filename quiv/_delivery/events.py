"""The listener table: who hears which event, and delivery of one event to them.

The table is copy-on-write: readers (every job end) take the current tuple
without a lock; adding or removing a listener compares callbacks *outside*
the scheduler lock (``==`` may be user code) and swaps the tuple under a
small lock of its own, retrying if another change won the race.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quiv._core.task import job_model
from quiv._delivery.dispatch import Dispatcher
from quiv._delivery.progress import ProgressReport
from quiv._enums import Event

if TYPE_CHECKING:
    from quiv._core.task import TaskView

__all__ = ["Listener", "Listeners", "ProgressTap"]

Listener = Callable[..., Any]
#: Called in the job's own thread for each progress report: ``(task_id, task_name, job_id, args, kwargs)``.
ProgressTap = Callable[[str, str, str, tuple[Any, ...], dict[str, Any]], None]


class Listeners:
    """Event listeners and progress listeners, with their delivery."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._lock = threading.Lock()
        self._table: dict[Event | None, tuple[Listener, ...]] = {**dict.fromkeys(Event, ()), None: ()}
        #: Internal progress consumers that coalesce for themselves (the live stream): called in
        #: the reporting thread, never dispatched, so a flood of reports costs the loop nothing.
        self.taps: tuple[ProgressTap, ...] = ()

    def of(self, event: Event) -> tuple[Listener, ...]:
        """The listeners of ``event`` right now (lock-free)."""
        return self._table[event]

    @property
    def progress(self) -> tuple[Listener, ...]:
        return self._table[None]

    def add(self, key: Event | None, callback: Callable[..., Any]) -> None:
        """Add ``callback`` for ``key`` (``None``: progress reports) unless an equal one is there."""
        while True:
            current = self._table[key]
            if any(existing == callback for existing in current):  # user __eq__: no lock held
                return
            with self._lock:
                if self._table[key] is current:
                    self._table[key] = (*current, callback)
                    return

    def remove(self, key: Event | None, callback: Callable[..., Any]) -> None:
        while True:
            current = self._table[key]
            kept = tuple(item for item in current if item != callback)
            with self._lock:
                if self._table[key] is current:
                    self._table[key] = kept
                    return

    def add_tap(self, tap: ProgressTap) -> None:
        with self._lock:
            if tap not in self.taps:
                self.taps = (*self.taps, tap)

    def remove_tap(self, tap: ProgressTap) -> None:
        with self._lock:
            self.taps = tuple(t for t in self.taps if t != tap)

    # --- delivery (never with the scheduler lock held) -------------------------
    def emit_task(self, event: Event, view: TaskView, listeners: tuple[Listener, ...] | None = None) -> None:
        listeners = self._table[event] if listeners is None else listeners
        if listeners:
            self.dispatcher.emit(listeners, (event, view.model()))

    def emit_job(
        self,
        event: Event,
        view: TaskView,
        job_row: tuple[Any, ...],
        listeners: tuple[Listener, ...] | None = None,
    ) -> None:
        listeners = self._table[event] if listeners is None else listeners
        if listeners:
            self.dispatcher.emit(listeners, (event, view.model(), job_model(job_row)))

    def report_progress(self, report: ProgressReport) -> None:
        listeners = self._table[None]
        if listeners:
            self.dispatcher.emit(listeners, (report,))
