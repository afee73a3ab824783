"""FastAPI integration: a lifespan, a control router with a dashboard, and a live event stream.

Install it with ``pip install "quiv[fastapi]"``. The core ``quiv`` package
never imports FastAPI; only this subpackage does::

    from fastapi import FastAPI
    from quiv.fastapi import quiv_lifespan, quiv_router

    app = FastAPI(lifespan=quiv_lifespan(scheduler, autodiscover="myapp.tasks"))
    app.include_router(quiv_router(scheduler), prefix="/quiv")
"""

from __future__ import annotations

import contextlib

try:
    import fastapi as _fastapi  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('quiv.fastapi needs FastAPI: pip install "quiv[fastapi]"') from exc

from quiv.fastapi._lifespan import quiv_lifespan
from quiv.fastapi._router import quiv_router
from quiv.fastapi._schemas import (
    HelloMessage,
    JobEventMessage,
    OverflowMessage,
    ProgressMessage,
    QuivErrorDetail,
    QuivJob,
    QuivJobPage,
    QuivRunResult,
    QuivStats,
    QuivTask,
    StreamMessage,
    TaskEventMessage,
)
from quiv.fastapi._stream import EventStream

__all__ = [
    "EventStream",
    "HelloMessage",
    "JobEventMessage",
    "OverflowMessage",
    "ProgressMessage",
    "QuivErrorDetail",
    "QuivJob",
    "QuivJobPage",
    "QuivRunResult",
    "QuivStats",
    "QuivTask",
    "StreamMessage",
    "TaskEventMessage",
    "quiv_lifespan",
    "quiv_router",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("quiv.fastapi._"):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "quiv.fastapi"
del _name, _obj
