"""Regressions of the shared mode: a task name freed when its row goes, arguments checked on update."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from quiv import Event, HandlerRegistrationError, Quiv, QuivConfig
from quiv.testing import ManualClock

DEADLINE = 15.0


def test_a_run_once_task_that_ran_frees_its_name(pair: tuple[Quiv, Quiv]) -> None:
    scheduler, _ = pair
    ended = threading.Event()
    scheduler.add_listener(Event.JOB_COMPLETED, lambda *_: ended.set())  # fires once the end is written
    scheduler.start()
    task_id = scheduler.add_task("once", lambda: None, interval=60, run_once=True)
    assert ended.wait(DEADLINE)
    # The run is over and the row deleted: the same name may be added again (it was refused).
    again = threading.Event()
    new_id = scheduler.add_task("once", again.set, interval=60, run_once=True)
    assert new_id != task_id
    assert again.wait(DEADLINE)


def test_a_task_removed_and_added_again_elsewhere_is_not_run_with_the_old_handler(
    pair: tuple[Quiv, Quiv],
) -> None:
    old_side, new_side = pair
    ran_old, ran_new = threading.Event(), threading.Event()
    old_id = old_side.add_task("job", ran_old.set, interval=3600, delay=3600)
    assert new_side.add_task("job", ran_old.set, interval=3600, delay=3600) == old_id
    new_side.remove_task(old_id)
    new_id = new_side.add_task("job", ran_new.set, interval=3600, delay=3600)
    assert new_id != old_id
    old_side.start()
    new_side.start()
    for _ in range(5):
        new_side.run_task_immediately(new_id)
        new_side.wait_for_task(new_id, timeout=DEADLINE)
    assert ran_new.is_set()
    assert not ran_old.is_set(), "the process holding the removed task ran the new one with its old handler"
    assert {job.worker for job in new_side.get_all_jobs(task_id=new_id)} == {new_side.worker_id}


def test_update_task_checks_new_arguments_against_a_handler_declared_here(pair: tuple[Quiv, Quiv]) -> None:
    scheduler, _ = pair

    def handler(region: str) -> None:
        del region

    task_id = scheduler.add_task("report", handler, interval=3600, delay=3600, kwargs={"region": "eu"})
    with pytest.raises(HandlerRegistrationError):
        scheduler.update_task(task_id, kwargs={"nope": 1})
    assert scheduler.get_task(task_id).kwargs == {"region": "eu"}  # nothing was written
    scheduler.update_task(task_id, kwargs={"region": "us"})
    assert scheduler.get_task(task_id).kwargs == {"region": "us"}


def test_shutdown_leaves_no_job_running(pg_url: str) -> None:
    """A claim in flight when shutdown begins: the jobs it starts end (cancelled), none stays running."""
    config = QuivConfig(database_url=pg_url, pool_size=10, poll_seconds=0.5)
    for _ in range(3):
        scheduler = Quiv(config=config)
        started = threading.Event()
        scheduler.add_listener(Event.JOB_STARTED, lambda *_, seen=started: seen.set())
        for number in range(200):
            scheduler.add_task(f"busy-{number}", lambda: None, interval=0.001, fixed_interval=False)
        scheduler.start()
        assert started.wait(DEADLINE)
        scheduler.shutdown(timeout=5)
    reader = Quiv(config=config)
    try:
        assert reader.count_jobs("running") == 0
        assert reader.count_jobs() > 0
    finally:
        reader.shutdown()


def test_claims_running_late_still_run_the_latest_slot(
    sqlite_url: str, manual_clock: ManualClock, make_quiv: Callable[..., Quiv]
) -> None:
    """Slots that passed while claims lagged (not downtime) do not stop the task: the latest one runs.

    With ``misfire="skip"`` a task whose claim finds several slots past used to run none of them, so a
    busy process never ran a short-interval task at all. Within ``poll_seconds`` of the latest slot it
    is a late claim: that slot runs and only the ones before it are recorded as missed.
    """
    scheduler = make_quiv(config=QuivConfig(database_url=sqlite_url, poll_seconds=60), clock=manual_clock)
    started = threading.Event()
    scheduler.add_listener(Event.JOB_COMPLETED, lambda *_: started.set())
    start = manual_clock.timestamp()
    task_id = scheduler.add_task("fast", lambda: None, interval=1, delay=1)
    scheduler.start()
    manual_clock.advance(3.5)  # slots +1, +2, +3 have passed; the claim comes 0.5 s after the latest
    assert started.wait(DEADLINE)
    (ran,) = scheduler.get_all_jobs("completed", task_id=task_id)
    assert ran.scheduled_for is not None
    assert ran.scheduled_for.timestamp() - start == pytest.approx(3)
    missed = sorted(
        j.scheduled_for.timestamp() - start for j in scheduler.get_all_jobs("missed") if j.scheduled_for
    )
    assert missed == pytest.approx([1, 2])
