"""Listeners live in task modules too: ``autodiscover`` picks them up the same way."""

from __future__ import annotations

import logging

from examples.fastapi_app.scheduler import scheduler
from quiv import Event, Job, Task

logger = logging.getLogger(__name__)


@scheduler.on(Event.JOB_FAILED)
def alert_on_failure(event: Event, task: Task, job: Job) -> None:
    """Runs on the application's event loop whenever a job fails."""
    logger.error("task %r failed (job %s): %s", task.task_name, job.id, job.error_message)
