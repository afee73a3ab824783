"""An application route that schedules a one-off job next to the declared tasks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel

from examples.fastapi_app.scheduler import scheduler
from examples.fastapi_app.tasks.report import generate_report
from quiv import SchedulerStoppedError

router = APIRouter(prefix="/reports", tags=["reports"])


class ReportQueued(BaseModel):
    task_id: str


@router.post("/{report_type}", status_code=202)
def request_report(report_type: Annotated[str, Path(pattern=r"^[a-z0-9-]{1,40}$")]) -> ReportQueued:
    """Build one report now, outside the weekly schedule; follow it on the dashboard.

    Each request gets a task name of its own: with a ``database_url`` (durable
    or shared mode) a task's name is its identity, so two requests for the
    same report type must not share one.
    """
    try:
        task_id = scheduler.add_task(
            f"report:{report_type}:{uuid.uuid4().hex[:8]}",
            generate_report,
            interval=60,
            run_once=True,
            kwargs={"report_type": report_type},
        )
    except SchedulerStoppedError as exc:  # the application is shutting down
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return ReportQueued(task_id=task_id)
