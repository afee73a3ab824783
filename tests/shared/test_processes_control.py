"""Control from one process over tasks and jobs that run in others: pause, resume, cancel."""

from __future__ import annotations

from typing import Any

import pytest

from .procs import Cluster, Proc, wait_until

ONE_SECOND: dict[str, Any] = {"interval": 1.0, "fixed_interval": True}
#: How long after a command the other processes may take to act on it: NOTIFY, then the polling floor.
WITH_NOTIFY = 1.0
POLL_SECONDS = 1.0
#: What a loaded two-core machine may add to the polling period.
MARGIN = 1.0


def _started_after(cluster: Cluster, task: str, after: float) -> list[dict[str, Any]]:
    return [j for j in cluster.jobs(task) if j["status"] != "missed" and j["started_at"] > after]


@pytest.mark.slow
@pytest.mark.parametrize("notify", [True, False], ids=["notify", "polling"])
def test_pause_resume_and_cancel_from_another_process(cluster: Cluster, notify: bool) -> None:
    """Process A declares no task; B and C run ``ctl`` every second and B runs ``long`` (until stopped).

    From A: ``pause_task`` stops ``ctl`` in B and C (no job of it starts more
    than a second after the pause); ``resume_task`` starts it again, and
    ``cancel_job`` stops the ``long`` job running in B (it ends ``cancelled``
    and B fires ``JOB_CANCELLED``). With NOTIFY each takes effect within a
    second although the processes only poll every 10 s and beat every 5 s;
    with ``notify=False`` within the polling period (1 s) plus a margin.
    """
    if notify:
        bound = WITH_NOTIFY
        settings: dict[str, Any] = {"notify": True, "poll_seconds": 10.0, "heartbeat_seconds": 5.0}
    else:
        bound = POLL_SECONDS + MARGIN
        settings = {
            "notify": False,
            "poll_seconds": POLL_SECONDS,
            "heartbeat_seconds": POLL_SECONDS,
            "dead_after_seconds": 10.0,
        }
    ctl = {"name": "ctl", **ONE_SECOND}
    long = {"name": "long", **ONE_SECOND, "hold": 120.0}
    a, b, c = cluster.start(
        {
            "a": {"quiv": settings},
            "b": {"quiv": settings, "tasks": [ctl, long]},
            "c": {"quiv": settings, "tasks": [ctl]},
        }
    )
    wait_until(lambda: len(_started_after(cluster, "ctl", 0.0)) >= 2, 20.0, "ctl to run twice")
    held = wait_until(lambda: cluster.running("long"), 20.0, "the long job to start in b")
    assert held["worker"] == b.worker

    # Pause from A: nothing of ctl starts afterwards (a second of slack for a claim in flight).
    a.send("pause", task="ctl")
    paused_at = cluster.now()
    assert cluster.rows("SELECT status FROM quiv_tasks WHERE task_name = 'ctl'") == [("paused",)]
    wait_until(lambda: cluster.now() >= paused_at + bound + 2.0, 10.0, "a quiet spell while ctl is paused")
    late = _started_after(cluster, "ctl", paused_at + 1.0)
    assert not late, f"jobs of ctl started after it was paused at {paused_at}: {late}"

    # Resume from A: B or C starts ctl again within the bound. resume_task plans the next run
    # at the database's "now" of its own transaction, so the first job's slot is when it happened.
    before_resume = cluster.now()
    a.send("resume", task="ctl")
    first = wait_until(
        lambda: sorted(_started_after(cluster, "ctl", before_resume), key=lambda j: j["started_at"]),
        10.0,
        "ctl to run again after resume_task",
    )[0]
    assert first["worker"] in {b.worker, c.worker}
    assert before_resume <= first["scheduled_for"] <= first["started_at"], first
    delay = first["started_at"] - first["scheduled_for"]
    assert delay <= bound, f"ctl started {delay:.2f} s after resume_task (allowed {bound} s)"

    # Cancel from A the job running in B; the request is committed by the time A answers.
    reply = a.send("cancel", job=held["id"])
    answered = cluster.now()
    assert reply["result"] is True, "cancel_job of a job running elsewhere answers True"
    ended = wait_until(lambda: cluster.ended(held["id"]), 10.0, "the long job to end after cancel_job")
    assert ended["status"] == "cancelled", ended
    delay = ended["ended_at"] - answered
    assert delay <= bound, f"the job ended {delay:.2f} s after cancel_job answered (allowed {bound} s)"
    _assert_event(b, "job_cancelled", held["id"])
    cluster.stop_all()


def _assert_event(proc: Proc, event: str, job_id: str) -> None:
    """``proc`` printed ``event`` for the job, once (listeners run just after the end is written)."""
    wait_until(lambda: proc.events(event), 5.0, f"{proc.label} to fire {event}")
    seen = [e for e in proc.events(event) if e["job"] == job_id]
    assert len(seen) == 1, f"{proc.label} fires {event} once for {job_id}: {proc.messages}"
