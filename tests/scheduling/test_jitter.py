"""``jitter``: every recurring run is pushed back by up to ``jitter`` seconds; the cadence never drifts."""

from __future__ import annotations

from datetime import timedelta

from quiv.testing import ManualClock

from .support import Ended, QuivFactory, at, noop

MICROSECOND = timedelta(microseconds=1)


def test_runs_stay_within_the_jitter_window_and_the_cadence_does_not_drift(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("spread", noop, interval=60, jitter=5)
    assert scheduler.get_task(task_id).jitter == 5
    offsets: list[float] = []
    scheduler.start()
    for cycle in range(12):
        due = scheduler.get_task(task_id).next_run_at
        nominal = at(60 * cycle)
        assert nominal <= due < nominal + timedelta(seconds=5), f"cycle {cycle}: {due} outside the window"
        offsets.append((due - nominal).total_seconds())
        # next_run_at is rounded to the microsecond; step just past it (see the test below).
        clock.set(due + MICROSECOND)
        job = ended.next()
        assert due <= job.started_at <= due + MICROSECOND
    # Anchoring on the jittered time would push each window ~2.5 s further: 12 cycles would leave it.
    assert len(set(offsets)) > 1, f"no spread at all: {offsets}"


def test_jitter_applies_to_cron_runs(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("cron spread", noop, cron="*/10 * * * *", jitter=30)
    scheduler.start()
    for cycle in range(1, 6):
        due = scheduler.get_task(task_id).next_run_at
        nominal = at(600 * cycle)
        assert nominal <= due < nominal + timedelta(seconds=30)
        clock.set(due + MICROSECOND)
        assert due <= ended.next().started_at <= due + MICROSECOND


def test_jitter_desynchronises_tasks_sharing_a_boundary(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ids = [scheduler.add_task(f"t{i}", noop, interval=60, delay=60, jitter=10) for i in range(20)]
    firsts = [scheduler.get_task(task_id).next_run_at for task_id in ids]
    assert all(at(60) <= first < at(70) for first in firsts)
    assert len(set(firsts)) > 1, "every task kept the same boundary"


def test_no_jitter_by_default(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    task_id = scheduler.add_task("exact", noop, interval=60, delay=60)
    assert scheduler.get_task(task_id).jitter == 0
    scheduler.start()
    for cycle in range(1, 4):
        assert scheduler.get_task(task_id).next_run_at == at(60 * cycle)
        clock.set(at(60 * cycle))
        assert ended.next().started_at == at(60 * cycle)


def test_a_one_shot_run_at_is_not_jittered(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("exact once", noop, run_at=at(600), jitter=30)
    assert scheduler.get_task(task_id).next_run_at == at(600)


def test_setting_the_clock_to_next_run_at_starts_a_jittered_run(
    make_quiv: QuivFactory, clock: ManualClock
) -> None:
    """``clock.set(task.next_run_at)`` must start the run: the due time a task shows is when it runs."""
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    ids = [scheduler.add_task(f"t{i}", noop, interval=3600, delay=60, jitter=5) for i in range(20)]
    scheduler.start()
    for task_id in sorted(ids, key=lambda task_id: scheduler.get_task(task_id).next_run_at):
        due = scheduler.get_task(task_id).next_run_at
        clock.set(due)
        job = ended.next(timeout=1.0)
        assert (job.task_id, job.started_at) == (task_id, due)
