"""Per-job log correlation: stamp the running job's id on every log record.

quiv sets context variables while a job runs (for sync and async handlers,
on the worker thread and in the job's private event loop), so any code a
handler calls, however deep, can ask which job it belongs to with
:func:`quiv.get_current_job_id`. :class:`JobContextFilter` puts the answer on
log records, where a format string can show it::

    import logging
    from quiv.logging import JobContextFilter

    handler = logging.StreamHandler()
    handler.addFilter(JobContextFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s [%(job_id)s] %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)

Attach the filter to a *handler*: a filter on a logger only sees records
logged on that very logger, not those propagated from its children.
"""

from __future__ import annotations

import logging

from quiv._core.context import get_current_job_id, get_current_task_id, get_current_task_name

__all__ = ["JobContextFilter"]


class JobContextFilter(logging.Filter):
    """Sets ``job_id``, ``task_id`` and ``task_name`` on every record it sees; never drops one.

    Outside a job the three are ``default`` (``"-"`` unless given), so a
    format string using them works for every record. A value already on the
    record (passed with ``extra=``) is left alone.
    """

    def __init__(self, *, default: str = "-") -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        values = {
            "job_id": get_current_job_id(),
            "task_id": get_current_task_id(),
            "task_name": get_current_task_name(),
        }
        for attribute, value in values.items():
            if not hasattr(record, attribute):
                setattr(record, attribute, self.default if value is None else value)
        return True
