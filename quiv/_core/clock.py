"""The one place quiv reads the time.

Every "now" in the engine comes from a :class:`Clock`. The system clock reads
``datetime.now(timezone.utc)`` (so freezegun can freeze it); a test clock
(``quiv.testing.ManualClock``) only moves when told to and wakes the
scheduler when it does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]

# In a tuple, because freezegun rewrites every module attribute that *is* datetime.
_REAL_DATETIME = (datetime,)


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
    """Wall-clock time in UTC.

    Like ``ManualClock`` it also offers ``timestamp()``, the current instant in
    epoch seconds; the engine uses it when a clock has it (it is optional).
    """

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def timestamp(self) -> float:
        # freezegun swaps this module's ``datetime`` for its fake; read the time through
        # it then, and through the much cheaper time.time() otherwise.
        if datetime is _REAL_DATETIME[0]:
            return time.time()
        return datetime.now(timezone.utc).timestamp()

    def wait_seconds(self, deadline: float) -> float | None:
        return max(0.0, deadline - self.timestamp())

    def subscribe(self, wake: Callable[[], None]) -> None:
        """The system clock never jumps on request, so nobody needs waking."""

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        """Nothing to forget: see :meth:`subscribe`."""
