"""Schedule arithmetic: pure functions over epoch seconds."""

from __future__ import annotations

import math
import random

from quiv._schedule.options import TaskSettings
from quiv._schedule.policies import Misfire, jittered

__all__ = [
    "TOLERANCE",
    "first_run",
    "latest_point",
    "next_regular_run",
    "next_run_after",
    "next_while_running",
    "schedule_points",
]

#: Times within a microsecond are the same instant (what a datetime can show).
TOLERANCE = 1e-6


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


def next_while_running(settings: TaskSettings, cycle_due: float) -> float | None:
    """What ``next_run_at`` shows while a job of a recurring interval task runs (``None``: leave it)."""
    if settings.interval is None or settings.once:
        return None
    return cycle_due + settings.interval


def next_regular_run(
    settings: TaskSettings,
    due: float,
    ended: float,
    rng: random.Random | None = None,
    *,
    started: float | None = None,
    misfire: Misfire | None = None,
) -> tuple[float, float] | None:
    """``(nominal, actual)`` time of the run after one that was due at ``due``.

    ``started``/``ended`` are when that run started and ended (``started``
    defaults to ``due``). ``None`` when the task has no further run. Points
    of the schedule that came due while the run was running are missed;
    ``misfire`` (default: the task's policy) decides: ``skip`` goes to the
    first point not already past at ``ended`` (a point equal to ``ended``
    counts), ``run_once`` runs once at ``ended`` and keeps the schedule's
    cadence afterwards. Points that came due before the run started are not
    missed: the late run stood in for them.
    """
    policy = settings.misfire if misfire is None else misfire
    begin = due if started is None else max(due, started)
    if settings.cron is not None:
        cron = settings.cron
        if policy is Misfire.RUN_ONCE:
            missed = cron.next_after(begin)
            if missed is not None and missed < ended:
                return ended, ended
        nominal = cron.next_after(max(due, ended - TOLERANCE))
        if nominal is None:
            return None
        return nominal, jittered(nominal, settings.jitter, rng)
    interval = settings.interval
    if interval is None:
        return None
    if settings.fixed_interval and policy is Misfire.RUN_ONCE:
        # The last point of the cadence at or before the end, if it came after the start.
        last = due + math.floor((ended - due) / interval) * interval
        if last > begin and last < ended:
            return last, ended
    nominal = next_run_after(due, ended, interval, fixed_interval=settings.fixed_interval)
    return nominal, jittered(nominal, settings.jitter, rng)


#: Cron times looked at, at most, to find the latest one before now (a minute-cron over two months).
_CRON_SCAN = 100_000


def latest_point(settings: TaskSettings, anchor: float, now: float) -> float | None:
    """The last point of the schedule after ``anchor`` that is not after ``now`` (None: no such point).

    Interval tasks with ``fixed_interval`` count whole intervals from ``anchor``;
    cron tasks step through their times (at most ``_CRON_SCAN`` of them). Other
    tasks have no points of their own.
    """
    if settings.cron is not None:
        cron, found = settings.cron, None
        point = cron.next_after(anchor)
        for _ in range(_CRON_SCAN):
            if point is None or point > now + TOLERANCE:
                break
            found = point
            point = cron.next_after(point)
        return found
    interval = settings.interval
    if interval is None or not settings.fixed_interval or settings.once:
        return None
    steps = math.floor((now + TOLERANCE - anchor) / interval)
    return anchor + steps * interval if steps >= 1 else None


def schedule_points(
    settings: TaskSettings, anchor: float, after: float, before: float, limit: int
) -> list[float]:
    """The points of the schedule strictly between ``after`` and ``before``, at most ``limit`` of them.

    Interval tasks with ``fixed_interval`` have points ``anchor + k * interval``;
    cron tasks have their cron times. Other tasks (the interval counts from
    the end of a run, or a single run) have no points of their own: ``[]``.
    Used to name the slots nobody ran (durable modes record each as missed).
    """
    points: list[float] = []
    if settings.cron is not None:
        cron = settings.cron
        point = cron.next_after(after)
        while point is not None and point < before and len(points) < limit:
            points.append(point)
            point = cron.next_after(point)
        return points
    interval = settings.interval
    if interval is None or not settings.fixed_interval or settings.once:
        return points
    step = max(1, math.floor((after - anchor) / interval) + 1)
    point = anchor + step * interval
    while point <= after:
        step += 1
        point = anchor + step * interval
    while point < before and len(points) < limit:
        points.append(point)
        step += 1
        point = anchor + step * interval
    return points
