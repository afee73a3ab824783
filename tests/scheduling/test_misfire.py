"""``misfire`` and ``misfire_grace``: runs that come due while the task cannot start them.

Two ways to miss runs: the task's own job outlasts several intervals (the
task never runs twice at once), or every worker is busy past several due
times. ``skip`` drops the missed runs; ``run_once`` runs once to catch up;
``misfire_grace`` drops (and logs) a run that would start too late.
"""

from __future__ import annotations

import pytest

from quiv import Event, JobStatus, Quiv
from quiv.testing import ManualClock

from .support import DEADLINE, Ended, Gate, LogRecords, QuivFactory, at, noop


def outlast(
    make_quiv: QuivFactory, clock: ManualClock, misfire: str, **options: object
) -> tuple[Quiv, str, Ended]:
    """A task whose first job (at 0) runs until 35 s; returns once that job has ended."""
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    gate = Gate()
    task_id = scheduler.add_task("long", gate, misfire=misfire, **options)  # type: ignore[arg-type]
    scheduler.start()
    job_id = gate.next_start()
    clock.advance(35)
    gate.release.set()
    first = ended.next()
    assert first.id == job_id
    assert first.ended_at == at(35)
    return scheduler, task_id, ended


def test_skip_drops_the_runs_missed_while_the_job_ran(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler, task_id, ended = outlast(make_quiv, clock, "skip", interval=10)
    assert scheduler.get_task(task_id).next_run_at == at(40)
    assert ended.none_within(0.2), "skip ran a missed run"
    clock.advance(5)
    assert ended.next().started_at == at(40)  # the next point of the cadence still ahead


def test_skip_is_the_default(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, interval=10)
    assert scheduler.get_task(task_id).misfire == "skip"
    assert scheduler.get_task(task_id).misfire_grace is None


def test_run_once_catches_up_once_when_the_job_ends(make_quiv: QuivFactory, clock: ManualClock) -> None:
    _, _, ended = outlast(make_quiv, clock, "run_once", interval=10)
    catch_up = ended.next()  # the clock does not move: it runs at 35 at once
    assert catch_up.started_at == at(35)
    assert catch_up.status is JobStatus.COMPLETED
    assert ended.none_within(0.2), "run_once caught up more than once"


def test_after_a_catch_up_the_cadence_continues(make_quiv: QuivFactory, clock: ManualClock) -> None:
    """The catch-up run at 35 does not move the cadence of 0, 10, 20...: the next run is at 40."""
    scheduler, task_id, ended = outlast(make_quiv, clock, "run_once", interval=10)
    assert ended.next().started_at == at(35)
    assert scheduler.get_task(task_id).next_run_at == at(40)


@pytest.mark.parametrize("misfire", ["skip", "run_once"])
def test_without_fixed_interval_nothing_is_missed(
    make_quiv: QuivFactory, clock: ManualClock, misfire: str
) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    gate = Gate()
    task_id = scheduler.add_task("free", gate, interval=10, fixed_interval=False, misfire=misfire)  # type: ignore[arg-type]
    scheduler.start()
    gate.next_start()
    clock.advance(35)
    gate.release.set()
    ended.next()
    assert scheduler.get_task(task_id).next_run_at == at(45)
    assert ended.none_within(0.2)


def test_cron_task_outlasting_its_times_with_skip(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    gate = Gate()
    task_id = scheduler.add_task("cron", gate, cron="*/10 * * * *", misfire="skip")
    scheduler.start()
    clock.set(at(600))
    gate.next_start()
    clock.set(at(2100))  # 00:35: 00:20 and 00:30 came due while the job ran
    gate.release.set()
    ended.next()
    assert scheduler.get_task(task_id).next_run_at == at(2400)
    assert ended.none_within(0.2)
    clock.set(at(2400))
    assert ended.next().started_at == at(2400)


def test_cron_task_outlasting_its_times_with_run_once(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    ended = Ended(scheduler)
    gate = Gate()
    task_id = scheduler.add_task("cron", gate, cron="*/10 * * * *", misfire="run_once")
    scheduler.start()
    clock.set(at(600))
    gate.next_start()
    clock.set(at(2100))
    gate.release.set()
    ended.next()
    assert ended.next().started_at == at(2100)  # one catch-up, at once
    assert scheduler.get_task(task_id).next_run_at == at(2400)  # then the cron times again
    assert ended.none_within(0.2)


# ----------------------------------------------------- a busy process (full pool)
def hog_the_pool(
    make_quiv: QuivFactory, clock: ManualClock, until: float, **options: object
) -> tuple[str, Ended, str]:
    """pool_size=1, a hog running from 0 to ``until``, and a task every 10 s from 10 with ``options``.

    Returns the task's id, the recorder, and the hog's job id (already ended).
    """
    scheduler = make_quiv(clock=clock, pool_size=1)
    ended = Ended(scheduler)
    gate = Gate()
    scheduler.add_task("hog", gate, interval=3600)
    task_id = scheduler.add_task("victim", noop, interval=10, delay=10, **options)  # type: ignore[arg-type]
    scheduler.start()
    hog_job = gate.next_start()
    clock.advance(until)
    gate.release.set()
    assert ended.next().id == hog_job
    return task_id, ended, hog_job


@pytest.mark.parametrize("misfire", ["skip", "run_once"])
def test_a_busy_pool_runs_a_late_task_once(make_quiv: QuivFactory, clock: ManualClock, misfire: str) -> None:
    """Due at 10, 20, 30 while the pool is full until 35: one late run at 35, then the cadence (40)."""
    task_id, ended, _ = hog_the_pool(make_quiv, clock, 35, misfire=misfire)
    late = ended.next()
    assert (late.task_id, late.started_at) == (task_id, at(35))
    assert ended.none_within(0.2), f"misfire={misfire}: more than one run for the missed due times"
    clock.advance(5)
    assert ended.next().started_at == at(40)


def test_misfire_grace_skips_a_run_that_would_start_too_late(
    make_quiv: QuivFactory, clock: ManualClock, quiv_log: LogRecords
) -> None:
    task_id, ended, _ = hog_the_pool(make_quiv, clock, 35, misfire_grace=4)
    message = quiv_log.wait_for("skipped the run")
    assert "'victim'" in message
    assert "misfire_grace" in message
    assert ended.none_within(0.2), "a run later than misfire_grace started"
    clock.advance(5)
    on_time = ended.next()
    assert (on_time.task_id, on_time.started_at) == (task_id, at(40))


def test_a_late_run_within_the_grace_still_runs(
    make_quiv: QuivFactory, clock: ManualClock, quiv_log: LogRecords
) -> None:
    task_id, ended, _ = hog_the_pool(make_quiv, clock, 30, misfire_grace=25)
    late = ended.next()  # due at 10, 20 s late, grace 25 s
    assert (late.task_id, late.started_at) == (task_id, at(30))
    assert not [m for m in quiv_log.messages() if "skipped the run" in m]


def test_misfire_grace_wins_over_run_once(
    make_quiv: QuivFactory, clock: ManualClock, quiv_log: LogRecords
) -> None:
    """Every missed run (10, 20, 30) is later than the grace at 35: none may run, not even as a catch-up."""
    task_id, ended, _ = hog_the_pool(make_quiv, clock, 35, misfire="run_once", misfire_grace=4)
    quiv_log.wait_for("skipped the run")
    assert ended.none_within(0.3), "the skipped run was run anyway as a catch-up"
    clock.advance(5)
    on_time = ended.next()
    assert (on_time.task_id, on_time.started_at) == (task_id, at(40))


def test_misfire_grace_on_a_cron_task(
    make_quiv: QuivFactory, clock: ManualClock, quiv_log: LogRecords
) -> None:
    scheduler = make_quiv(clock=clock, pool_size=1)
    ended = Ended(scheduler)
    gate = Gate()
    scheduler.add_task("hog", gate, interval=3600)
    task_id = scheduler.add_task("cron", noop, cron="*/10 * * * *", misfire_grace=60)
    scheduler.start()
    hog = gate.next_start()
    clock.set(at(600 + 61))  # 00:11:01: the 00:10 run is 61 s late
    gate.release.set()
    assert ended.next().id == hog
    quiv_log.wait_for("skipped the run")
    assert scheduler.get_task(task_id).next_run_at == at(1200)
    clock.set(at(1200))
    assert ended.next().started_at == at(1200)


def test_a_one_shot_task_too_late_for_its_grace_is_dropped(
    make_quiv: QuivFactory, clock: ManualClock, quiv_log: LogRecords
) -> None:
    scheduler = make_quiv(clock=clock, pool_size=1)
    ended = Ended(scheduler)
    removed: list[Event] = []
    scheduler.add_listener(Event.TASK_REMOVED, lambda event, task: removed.append(event))
    gate = Gate()
    scheduler.add_task("hog", gate, interval=3600)
    scheduler.add_task("once", noop, run_at=at(10), misfire_grace=5)
    scheduler.start()
    gate.next_start()
    clock.advance(30)
    gate.release.set()
    ended.next()
    quiv_log.wait_for("skipped the run")
    assert ended.none_within(0.2)
    assert [t.task_name for t in scheduler.get_all_tasks(include_run_once=True)] == ["hog"]


def test_no_grace_means_a_late_run_always_runs(make_quiv: QuivFactory, clock: ManualClock) -> None:
    task_id, ended, _ = hog_the_pool(make_quiv, clock, 3 * 3600)
    late = ended.next(timeout=DEADLINE)
    assert (late.task_id, late.started_at) == (task_id, at(3 * 3600))
