"""Log lines carry the id of the job they come from, with no plumbing in the tasks."""

from __future__ import annotations

import logging

from quiv.logging import JobContextFilter

FORMAT = "%(asctime)s %(levelname)-7s [job %(job_id).8s %(task_name)s] %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Send the application's logs to stderr, each stamped with the running job (or "-")."""
    handler = logging.StreamHandler()
    handler.addFilter(JobContextFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    app_logger = logging.getLogger("examples")
    app_logger.addHandler(handler)
    app_logger.setLevel(level)
    app_logger.propagate = False
