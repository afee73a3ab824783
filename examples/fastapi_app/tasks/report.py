"""A sync task that reports progress and can be cancelled between steps."""

from __future__ import annotations

import logging
import threading

from examples.fastapi_app.scheduler import STEP_SECONDS, scheduler
from quiv.types import ProgressHook

logger = logging.getLogger(__name__)


@scheduler.task(interval=7 * 24 * 3600, delay=10, kwargs={"report_type": "weekly-summary"})
def generate_report(
    report_type: str,
    _stop_event: threading.Event | None = None,
    _progress_hook: ProgressHook | None = None,
) -> None:
    """Build a report in five steps, telling the dashboard after each one."""
    steps = 5
    for step in range(1, steps + 1):
        if _stop_event is not None and _stop_event.wait(STEP_SECONDS):
            logger.info("report cancelled at step %d/%d", step, steps)
            return
        if _progress_hook is not None:
            _progress_hook(step=step, total=steps, message=f"{report_type}: step {step} of {steps}")
    logger.info("report %r generated", report_type)
