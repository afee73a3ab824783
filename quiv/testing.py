"""Helpers for testing code that uses quiv.

:class:`ManualClock` replaces the scheduler's clock so a test decides when
time moves: ``Quiv(clock=ManualClock())`` never runs anything until the test
advances the clock past a due time, and advancing wakes the scheduler at once,
with no sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

__all__ = ["ManualClock"]


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime.now(timezone.utc)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def wait_seconds(self, deadline: float) -> float | None:
        # Time only moves through advance()/set(), which wake every subscriber.
        return None

    def subscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._subscribers.append(wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        with self._lock:
            if wake in self._subscribers:
                self._subscribers.remove(wake)

    def advance(self, seconds: float) -> datetime:
        """Move time forward by ``seconds`` and wake the schedulers using this clock."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back in time: advance({seconds!r})")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            now = self._now
        self._wake()
        return now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive is read as UTC) and wake the schedulers."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        with self._lock:
            self._now = when.astimezone(timezone.utc)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for wake in subscribers:
            wake()
