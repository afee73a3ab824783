"""An async task: quiv runs it in an event loop of its own on a worker thread."""

from __future__ import annotations

import asyncio
import logging

from examples.fastapi_app.scheduler import HEARTBEAT_SECONDS, STEP_SECONDS, scheduler
from quiv.types import ProgressHook

logger = logging.getLogger(__name__)


@scheduler.task(interval=HEARTBEAT_SECONDS, fixed_interval=False)
async def heartbeat(_progress_hook: ProgressHook | None = None) -> None:
    """Ping a few upstream services concurrently and report each answer."""
    services = ("billing", "search", "storage")

    async def ping(name: str) -> str:
        await asyncio.sleep(STEP_SECONDS / 4)  # stands in for an HTTP call
        return name

    for done, finished in enumerate(asyncio.as_completed([ping(s) for s in services]), start=1):
        name = await finished
        if _progress_hook is not None:
            _progress_hook(done=done, total=len(services), message=f"{name} is up")
    logger.info("all %d services answered", len(services))
