"""A sync task that checks its stop event between batches."""

from __future__ import annotations

import logging
import threading

from examples.fastapi_app.scheduler import STEP_SECONDS, scheduler

logger = logging.getLogger(__name__)


@scheduler.task(interval=3600, delay=60, kwargs={"days": 30})
def cleanup_stale_records(days: int, _stop_event: threading.Event | None = None) -> None:
    """Delete records older than ``days``, one batch at a time."""
    batches = 10
    for batch in range(1, batches + 1):
        # wait() instead of sleep(): a cancellation interrupts the pause at once.
        if _stop_event is not None and _stop_event.wait(STEP_SECONDS / 2):
            logger.info("cleanup cancelled before batch %d/%d", batch, batches)
            return
        # ... delete one batch of records older than `days` here ...
    logger.info("cleanup finished: %d batches of records older than %d days", batches, days)
