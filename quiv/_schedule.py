"""Schedule arithmetic: pure functions over epoch seconds."""

from __future__ import annotations

import math
import random

from quiv._options import TaskSettings
from quiv._policies import Misfire, jittered

__all__ = ["first_run", "next_regular_run", "next_run_after"]


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


def first_run(settings: TaskSettings, now: float) -> tuple[float, float]:
    """``(nominal, actual)`` time of a new task's first run; ``actual`` includes jitter.

    Interval tasks start after ``delay`` or at ``run_at`` (a past ``run_at``
    means now), cron tasks at their first cron time after now, one-shot tasks
    at ``run_at``.
    """
    if settings.cron is not None:
        nominal = settings.cron.next_after(now)
        if nominal is None:  # checked when the expression was validated
            raise ValueError(f"cron expression {settings.cron.expression!r} never fires")
        return nominal, jittered(nominal, settings.jitter)
    if settings.run_at is not None:
        nominal = max(settings.run_at, now)
        return nominal, nominal if settings.kind == "once" else jittered(nominal, settings.jitter)
    nominal = now + settings.delay
    return nominal, jittered(nominal, settings.jitter)


def next_regular_run(
    settings: TaskSettings, due: float, ended: float, rng: random.Random | None = None
) -> tuple[float, float] | None:
    """``(nominal, actual)`` time of the run after one that was due at ``due`` and ended at ``ended``.

    ``None`` when the task has no further run. Runs that came due while the
    previous one ran follow the misfire policy: ``skip`` jumps to the next
    point of the schedule still ahead, ``run_once`` runs once at ``ended``.
    """
    if settings.cron is not None:
        missed = settings.cron.next_after(due)
        if settings.misfire is Misfire.RUN_ONCE and missed is not None and missed <= ended:
            return ended, ended
        nominal = settings.cron.next_after(ended)
        if nominal is None:
            return None
        return nominal, jittered(nominal, settings.jitter, rng)
    interval = settings.interval
    if interval is None:
        return None
    if settings.fixed_interval and settings.misfire is Misfire.RUN_ONCE and ended > due + interval:
        return ended, ended
    nominal = next_run_after(due, ended, interval, fixed_interval=settings.fixed_interval)
    return nominal, jittered(nominal, settings.jitter, rng)
