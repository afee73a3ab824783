"""quiv: an in-process task scheduler for FastAPI applications.

Sync and async handlers run on a thread pool, with cooperative cancellation
(``_stop_event``), progress delivered to the main event loop
(``_progress_hook``) and a per-job id (``_job_id``); task and job state live
in a private temporary SQLite database.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from quiv._config import QuivConfig
from quiv._core.clock import Clock, SystemClock
from quiv._core.context import get_current_job_id, get_current_task_id, get_current_task_name
from quiv._core.scheduler import Quiv
from quiv._declare.decorators import (
    JobListenerDecorator,
    ListenerSpec,
    TaskDecorator,
    TaskListenerDecorator,
    TaskSpec,
)
from quiv._declare.registry import TaskRegistry
from quiv._delivery.main import run_on_main
from quiv._delivery.progress import ProgressReport
from quiv._enums import Event, JobStatus, TaskStatus
from quiv._exceptions import (
    AmbiguousTaskError,
    ConfigurationError,
    DatabaseError,
    DatabaseInitializationError,
    DiscoveryError,
    HandlerNotRegisteredError,
    HandlerRegistrationError,
    InvalidArgumentError,
    InvalidTimezoneError,
    JobNotFoundError,
    QuivError,
    SchedulerStoppedError,
    TaskNotFoundError,
    TaskNotMaterializedError,
    TaskNotScheduledError,
)
from quiv._subprocess import run_subprocess
from quiv.types import (
    JobEvent,
    JobId,
    JobListener,
    ProgressCallback,
    ProgressHook,
    TaskEvent,
    TaskId,
    TaskListener,
)

if TYPE_CHECKING:
    from quiv.models import Job, SchedulerStats, Task

__version__ = "0.1.0"

#: Names whose modules load on first use, so ``import quiv`` does not pull in
#: SQLModel, SQLAlchemy and pydantic before they are needed.
_LAZY = {"Job": "quiv.models", "SchedulerStats": "quiv.models", "Task": "quiv.models"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quiv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AmbiguousTaskError",
    "Clock",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseInitializationError",
    "DiscoveryError",
    "Event",
    "HandlerNotRegisteredError",
    "HandlerRegistrationError",
    "InvalidArgumentError",
    "InvalidTimezoneError",
    "Job",
    "JobEvent",
    "JobId",
    "JobListener",
    "JobListenerDecorator",
    "JobNotFoundError",
    "JobStatus",
    "ListenerSpec",
    "ProgressCallback",
    "ProgressHook",
    "ProgressReport",
    "Quiv",
    "QuivConfig",
    "QuivError",
    "SchedulerStats",
    "SchedulerStoppedError",
    "SystemClock",
    "Task",
    "TaskDecorator",
    "TaskEvent",
    "TaskId",
    "TaskListener",
    "TaskListenerDecorator",
    "TaskNotFoundError",
    "TaskNotMaterializedError",
    "TaskNotScheduledError",
    "TaskRegistry",
    "TaskSpec",
    "TaskStatus",
    "get_current_job_id",
    "get_current_task_id",
    "get_current_task_name",
    "run_on_main",
    "run_subprocess",
]

for _name in __all__:
    if _name in _LAZY:
        continue
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("quiv._"):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "quiv"
del _name, _obj
