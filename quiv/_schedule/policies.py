"""Pure decisions for retries, jitter and late runs."""

from __future__ import annotations

import math
import random
from enum import Enum

__all__ = ["Misfire", "jittered", "late_run_decision", "retry_delay"]


class Misfire(str, Enum):
    """What to do with runs that came due while the task could not start them.

    A run comes due while the previous job of the task is still running, or
    while the process was too busy (a full pool, a suspended laptop).
    """

    SKIP = "skip"
    """Drop the missed runs; the next run is the next point of the schedule still ahead."""
    RUN_ONCE = "run_once"
    """Run once as soon as possible to catch up, however many runs were missed, then follow the schedule."""

    def __str__(self) -> str:
        return self.value


def retry_delay(attempt: int, backoff: float) -> float:
    """Seconds before retry number ``attempt`` (1 is the first retry): ``backoff * 2 ** (attempt - 1)``."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    return float(backoff * 2.0 ** (attempt - 1))


def jittered(due: float, jitter: float, rng: random.Random | None = None) -> float:
    """``due`` pushed back by a random amount in ``[0, jitter)`` seconds."""
    if jitter <= 0:
        return due
    value = due + (rng or random).random() * jitter
    # Whole microseconds, so the time a Task shows (a datetime) is exactly when it runs,
    # unless the window is too narrow to round up within it.
    rounded = math.ceil(value * 1e6) / 1e6
    return rounded if rounded < due + jitter else value


def late_run_decision(due: float, now: float, grace: float | None) -> bool:
    """True if a run due at ``due`` may still start at ``now`` given the grace window."""
    return grace is None or now - due <= grace
