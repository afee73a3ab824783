"""Schedule arithmetic: pure functions over epoch seconds."""

from __future__ import annotations

import math

__all__ = ["next_run_after"]


def next_run_after(due: float, ended: float, interval: float, *, fixed_interval: bool) -> float:
    """When a recurring task runs next, given the run that just ended.

    ``due`` is when that run was scheduled (the cadence anchor), ``ended``
    when it finished. With ``fixed_interval`` the next run stays on the
    cadence ``due + k * interval``: the first point strictly after ``due``
    that is not already in the past when the run ends, so intervals missed
    by a long run are skipped rather than run back to back. Without it the
    next run is ``interval`` seconds after the run ended.
    """
    if not fixed_interval:
        return ended + interval
    elapsed = ended - due
    steps = max(1, math.ceil(elapsed / interval)) if elapsed > 0 else 1
    candidate = due + steps * interval
    # Guard against float rounding leaving the candidate a hair in the past.
    while candidate < ended:
        candidate += interval
    return candidate
