"""``Task`` and ``Job``: UTC-aware datetimes, JSON and FastAPI serialisation, freezegun timestamps."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi import FastAPI
from freezegun import freeze_time
from sqlmodel import SQLModel

from quiv import Event, JobStatus, Quiv, TaskStatus
from quiv.models import Job, Task

from .support import DEADLINE, Blocker, Calls, QuivFactory

FROZEN = "2024-05-01 12:00:00"
FROZEN_AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def noop() -> None:
    pass


def _is_utc(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


def _utc_suffix(text: str) -> bool:
    return text.endswith(("Z", "+00:00"))


def accept(*args: Any, **kwargs: Any) -> None:
    pass


def _finished_job(scheduler: Quiv) -> tuple[Task, Job]:
    ends = Calls()
    scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
    task_id = scheduler.add_task("model", accept, interval=3600, args=(1, "two"), kwargs={"k": [3]})
    scheduler.start()
    job_id = ends.wait_for(1)[0].args[2].id
    return scheduler.get_task(task_id), scheduler.wait_for_job(job_id, timeout=DEADLINE)


def test_models_are_sqlmodel_classes_but_not_tables() -> None:
    assert issubclass(Task, SQLModel)
    assert issubclass(Job, SQLModel)
    assert not [name for name in SQLModel.metadata.tables if name.lower() in ("task", "job")]


def test_every_returned_datetime_is_utc_aware(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv(timezone="Asia/Tokyo")
    task, job = _finished_job(scheduler)
    assert _is_utc(task.next_run_at)
    assert _is_utc(job.started_at)
    assert _is_utc(job.ended_at)
    for listed in scheduler.get_all_tasks():
        assert _is_utc(listed.next_run_at)
    for listed_job in scheduler.get_all_jobs():
        assert _is_utc(listed_job.started_at)
        assert _is_utc(listed_job.ended_at)


def test_model_dump_json_marks_every_datetime_as_utc(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    task, job = _finished_job(scheduler)
    task_json = json.loads(task.model_dump_json())
    job_json = json.loads(job.model_dump_json())
    assert _utc_suffix(task_json["next_run_at"])
    assert _utc_suffix(job_json["started_at"])
    assert _utc_suffix(job_json["ended_at"])
    assert task_json["args"] == [1, "two"]
    assert task_json["kwargs"] == {"k": [3]}
    assert task_json["status"] == "active"
    assert job_json["status"] == "completed"


def test_model_fields_are_the_documented_ones(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    task, job = _finished_job(scheduler)
    assert set(Task.model_fields) >= {
        "id",
        "task_name",
        "args",
        "kwargs",
        "interval_seconds",
        "fixed_interval",
        "run_once",
        "status",
        "next_run_at",
    }
    assert set(Job.model_fields) >= {
        "id",
        "task_id",
        "task_name",
        "status",
        "started_at",
        "ended_at",
        "duration_seconds",
        "error_message",
    }
    assert task.status == "active"
    assert job.status == "completed"


def test_fastapi_returns_tasks_and_jobs_as_they_are(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv()
    blocker = Blocker()
    task_id = scheduler.add_task("api", blocker, interval=3600)
    scheduler.start()
    job_id = blocker.next_start()
    blocker.release.set()
    scheduler.wait_for_job(job_id, timeout=DEADLINE)

    app = FastAPI()

    @app.get("/tasks")
    def list_tasks() -> list[Task]:
        return scheduler.get_all_tasks()

    @app.get("/tasks/{task_id}")
    def get_task(task_id: str) -> Task:
        return scheduler.get_task(task_id)

    @app.get("/jobs")
    def list_jobs(status: str | None = None) -> list[Job]:
        return scheduler.get_all_jobs(status=status)

    @app.get("/untyped")
    def untyped() -> object:
        return scheduler.get_all_jobs()

    async def fetch() -> tuple[Any, Any, Any, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quiv.test") as client:
            responses = [
                await client.get("/tasks"),
                await client.get(f"/tasks/{task_id}"),
                await client.get("/jobs", params={"status": "completed"}),
                await client.get("/untyped"),
            ]
        for response in responses:
            assert response.status_code == 200, response.text
        first, second, third, fourth = (r.json() for r in responses)
        return first, second, third, fourth

    tasks, one, jobs, untyped_jobs = asyncio.run(fetch())
    assert [t["id"] for t in tasks] == [task_id]
    assert one["id"] == task_id
    assert _utc_suffix(one["next_run_at"])
    assert [j["id"] for j in jobs] == [job_id]
    assert _utc_suffix(jobs[0]["started_at"])
    assert _utc_suffix(jobs[0]["ended_at"])
    assert jobs[0]["status"] == "completed"
    assert [j["id"] for j in untyped_jobs] == [job_id]
    assert _utc_suffix(untyped_jobs[0]["started_at"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (datetime(2024, 1, 1, 12, 0), datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)),
        (
            datetime(2024, 1, 1, 21, 0, tzinfo=ZoneInfo("Asia/Tokyo")),
            datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc),
        ),
    ],
    ids=["naive-read-as-utc", "aware-converted"],
)
def test_models_built_by_hand_are_normalised_to_utc(given: datetime, expected: datetime) -> None:
    task = Task(id="t", task_name="n", interval_seconds=1, status=TaskStatus.ACTIVE, next_run_at=given)
    job = Job(id="j", task_id="t", task_name="n", status=JobStatus.RUNNING, started_at=given, ended_at=given)
    for value in (task.next_run_at, job.started_at, job.ended_at):
        assert value == expected
        assert _is_utc(value)


# ------------------------------------------------------------------ freezegun
def test_task_times_under_freezegun(make_quiv: QuivFactory) -> None:
    with freeze_time(FROZEN):
        scheduler = make_quiv()
        task_id = scheduler.add_task("frozen", noop, interval=60, delay=90)
        task = scheduler.get_task(task_id)
    assert task.next_run_at == FROZEN_AT + timedelta(seconds=90)
    assert _is_utc(task.next_run_at)


def test_job_times_under_freezegun(make_quiv: QuivFactory) -> None:
    with freeze_time(FROZEN):
        scheduler = make_quiv()
        ends = Calls()
        scheduler.add_listener(Event.JOB_COMPLETED, ends.sync())
        task_id = scheduler.add_task("frozen", noop, interval=60)
        scheduler.start()
        job = ends.wait_for(1)[0].args[2]
        task = scheduler.get_task(task_id)
        scheduler.shutdown()
    assert job.started_at == FROZEN_AT
    assert job.ended_at == FROZEN_AT
    assert job.duration_seconds == 0
    assert task.next_run_at == FROZEN_AT + timedelta(seconds=60)
