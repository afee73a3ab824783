"""Every transition of the task state machine, as a table.

Each row starts a task (interval 10 s, at most one retry) in a named state,
applies one transition at ``NOW`` and checks what the engine is told to do
(the plan) and the state the task is left in. The rules tested here live
only in ``quiv._core.task``; the engine and the facade just carry them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from quiv._core.handlers import injection_plan
from quiv._core.task import DELETE, JobState, Plan, Schedule, TaskState
from quiv._enums import JobStatus, TaskStatus
from quiv._schedule.options import TaskSettings

NOW = 1_000.0
INTERVAL = 10.0


def _handler() -> None: ...


def make(state: str, **options: Any) -> TaskState:
    """A task in one of the named states (see ``STATES``)."""
    settings = TaskSettings.validate({"interval": INTERVAL, "max_retries": 1, **options}, task_name="t")
    task = TaskState(
        id="t1",
        name="t",
        func=_handler,
        plan=injection_plan(_handler),
        settings=settings,
        created=0.0,
        progress_is_async=False,
    )
    task.add(NOW - INTERVAL)  # first run due at NOW - 10
    if state in ("running", "running-paused", "running-requested"):
        task.start_job(task.next_run, NOW - 1)
    if state in ("paused", "running-paused"):
        task.pause()
    if state == "running-requested":
        task.run_now(NOW - 0.5)
    if state == "retry-pending":
        job = task.start_job(task.next_run, NOW - 2)
        job.status = JobStatus.FAILED
        task.end_job(job, NOW - 1)
    if state == "manual-pending":
        task.run_now(NOW - 1)
    return task


@dataclass(frozen=True)
class Row:
    start: str
    action: str
    plan: str  # "none", "schedule", "schedule-forced", "delete"
    due: float | None = None
    status: TaskStatus | None = None
    check: Callable[[TaskState], bool] = lambda task: True


def end(status: JobStatus, *, stop: bool = False) -> Callable[[TaskState], Plan]:
    def apply(task: TaskState) -> Plan:
        job = task.running
        assert job is not None
        job.status = status
        if stop:
            job.request_stop("test")
        return task.end_job(job, NOW)

    return apply


ACTIONS: dict[str, Callable[[TaskState], Plan]] = {
    "pause": lambda t: t.pause(),
    "resume": lambda t: t.resume(NOW + 5),
    "run_now": lambda t: t.run_now(NOW),
    "update-reschedule": lambda t: t.update(t.settings, NOW, reschedule=True),
    "update-options": lambda t: t.update(t.settings, NOW, reschedule=False),
    "end-completed": end(JobStatus.COMPLETED),
    "end-failed": end(JobStatus.FAILED),
    "end-failed-after-stop": end(JobStatus.FAILED, stop=True),
    "end-cancelled": end(JobStatus.CANCELLED, stop=True),
}

TABLE = [
    # pause: the schedule stops; an explicit run still happens; a pending retry is dropped.
    Row("idle", "pause", "none", status=TaskStatus.PAUSED),
    Row("manual-pending", "pause", "schedule-forced", due=NOW - 1, status=TaskStatus.PAUSED),
    Row("retry-pending", "pause", "none", status=TaskStatus.PAUSED, check=lambda t: t.retry is None),
    Row("running", "pause", "none", status=TaskStatus.PAUSED, check=lambda t: t.requested is None),
    Row(
        "running-requested",
        "pause",
        "none",
        status=TaskStatus.PAUSED,
        check=lambda t: t.requested == NOW - 0.5 and t.requested_forced,
    ),
    # resume: next run after the delay; while running, it waits for the job to end.
    Row("paused", "resume", "schedule", due=NOW + 5, status=TaskStatus.ACTIVE),
    Row("idle", "resume", "schedule", due=NOW + 5, status=TaskStatus.ACTIVE),
    Row(
        "running-paused",
        "resume",
        "none",
        status=TaskStatus.RUNNING,
        check=lambda t: t.requested == NOW + 5 and t.next_run == NOW + 5,
    ),
    # run now: at once; a paused task runs once and stays paused; during a run it is queued.
    Row("idle", "run_now", "schedule", due=NOW, status=TaskStatus.ACTIVE),
    Row("paused", "run_now", "schedule-forced", due=NOW, status=TaskStatus.PAUSED),
    Row("running", "run_now", "none", status=TaskStatus.RUNNING, check=lambda t: t.requested == NOW),
    Row("running-requested", "run_now", "none", check=lambda t: t.requested == NOW),  # collapses into one
    # update: a new schedule starts from now; a paused task stays paused; options alone change no time.
    Row("idle", "update-reschedule", "schedule", due=NOW, status=TaskStatus.ACTIVE),
    Row("paused", "update-reschedule", "none", status=TaskStatus.PAUSED, check=lambda t: t.next_run == NOW),
    Row("running", "update-reschedule", "none", check=lambda t: t.requested == NOW),
    Row("retry-pending", "update-reschedule", "schedule", due=NOW, check=lambda t: t.retry is None),
    Row(
        "idle",
        "update-options",
        "none",
        status=TaskStatus.ACTIVE,
        check=lambda t: t.next_run == NOW - INTERVAL,
    ),
    # a job ends (due 990, ended 1000): the next point of the cadence (1000: a point at the end
    # counts), a retry after its backoff, or a queued request.
    Row("running", "end-completed", "schedule", due=NOW, status=TaskStatus.ACTIVE),
    Row(
        "running",
        "end-failed",
        "schedule",
        due=NOW + 1.0,
        status=TaskStatus.ACTIVE,
        check=lambda t: t.retry is not None and t.retry[0] == 2,
    ),
    Row("running", "end-failed-after-stop", "schedule", due=NOW, check=lambda t: t.retry is None),
    Row("running", "end-cancelled", "schedule", due=NOW, status=TaskStatus.ACTIVE),
    Row("running-paused", "end-completed", "none", status=TaskStatus.PAUSED),
    Row(
        "running-requested",
        "end-completed",
        "schedule",
        due=NOW - 0.5,
        status=TaskStatus.ACTIVE,
        check=lambda t: t.requested is None,
    ),
]


def _kind(plan: Plan) -> str:
    if plan is None:
        return "none"
    if plan is DELETE:
        return "delete"
    assert isinstance(plan, Schedule)
    return "schedule-forced" if plan.forced else "schedule"


@pytest.mark.parametrize("row", TABLE, ids=[f"{r.start}-{r.action}" for r in TABLE])
def test_transition(row: Row) -> None:
    task = make(row.start)
    version = task.version
    plan = ACTIONS[row.action](task)
    assert _kind(plan) == row.plan
    if isinstance(plan, Schedule):
        assert plan.due == pytest.approx(row.due)
        assert task.next_run == pytest.approx(row.due)
        assert plan.version == task.version, "a heap entry must carry the task's current version"
    if row.plan != "none" or row.action in ("pause", "resume"):
        assert task.version > version or row.action == "update-options", "old heap entries must go stale"
    if row.status is not None:
        assert task.status is row.status
    assert row.check(task)


def test_a_run_once_task_is_deleted_after_its_job_and_can_not_run_again() -> None:
    task = make("idle", run_once=True)
    job = task.start_job(task.next_run, NOW)
    assert not task.can_run_now()
    job.status = JobStatus.COMPLETED
    assert task.end_job(job, NOW + 1) is DELETE


def test_a_failed_run_once_task_is_retried_before_it_is_deleted() -> None:
    task = make("idle", run_once=True)
    job = task.start_job(task.next_run, NOW)
    job.status = JobStatus.FAILED
    plan = task.end_job(job, NOW)
    assert _kind(plan) == "schedule"
    assert task.can_run_now()
    retry: JobState = task.start_job(NOW + 1, NOW + 1)
    assert (retry.attempt, retry.retry_of) == (2, job.id)
    retry.status = JobStatus.FAILED
    assert task.end_job(retry, NOW + 2) is DELETE  # max_retries=1: no third attempt


def test_a_due_entry_is_skipped_when_paused_and_taken_when_forced() -> None:
    task = make("paused")
    assert task.take(NOW, False, NOW) == (False, None)
    assert task.take(NOW, True, NOW) == (True, None)


def test_a_late_run_beyond_its_grace_is_skipped_to_the_next_point() -> None:
    task = make("idle", misfire_grace=1.0)
    start, plan = task.take(NOW - INTERVAL, False, NOW)
    assert not start
    assert isinstance(plan, Schedule)
    assert plan.due == NOW  # the next point of the cadence not already past (990 + 10)


def test_a_second_job_never_starts_while_one_runs() -> None:
    task = make("running")
    assert task.take(NOW, True, NOW) == (False, None)
    assert task.requested == NOW


def test_removal_drops_a_pending_retry_and_makes_every_entry_stale() -> None:
    task = make("retry-pending")
    version = task.version
    task.remove()
    assert task.retry is None
    assert task.removed
    assert not task.is_due_entry(version)
