"""The one place quiv reads the time.

Every "now" in the engine comes from a :class:`Clock`. The system clock reads
``datetime.now(timezone.utc)`` (so freezegun can freeze it); a test clock
(``quiv.testing.ManualClock``) only moves when told to and wakes the
scheduler when it does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Source of time for one scheduler."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    def wait_seconds(self, deadline: float) -> float | None:
        """Real seconds to sleep before ``deadline`` (epoch seconds) may have come.

        ``None`` means "sleep until woken": the clock calls its subscribers
        when it moves.
        """
        ...

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Register ``wake`` to be called whenever the clock jumps."""
        ...

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        """Forget a callback given to :meth:`subscribe`."""
        ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def wait_seconds(self, deadline: float) -> float | None:
        return max(0.0, deadline - self.now().timestamp())

    def subscribe(self, wake: Callable[[], None]) -> None:
        """The system clock never jumps on request, so nobody needs waking."""

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        """Nothing to forget: see :meth:`subscribe`."""
