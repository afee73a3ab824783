"""The public surface of ``quiv.fastapi`` and ``quiv.logging``, and FastAPI staying optional."""

from __future__ import annotations

import subprocess
import sys

import quiv.fastapi
import quiv.logging
from quiv.models import Job, SchedulerStats, Task


def test_fastapi_surface_is_pinned() -> None:
    assert quiv.fastapi.__all__ == [
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
    assert quiv.fastapi.__all__ == sorted(quiv.fastapi.__all__)
    for name in quiv.fastapi.__all__:
        obj = getattr(quiv.fastapi, name)
        if hasattr(obj, "__module__") and name != "StreamMessage":
            assert obj.__module__ == "quiv.fastapi", name
    assert quiv.logging.__all__ == ["JobContextFilter"]


def test_the_core_never_imports_fastapi() -> None:
    code = (
        "import sys, quiv, quiv.logging, quiv.testing, quiv.types, quiv.models\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn'))\n"
        "assert not leaked, leaked\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_missing_fastapi_is_explained() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None  # what an environment without FastAPI looks like\n"
        "try:\n"
        "    import quiv.fastapi\n"
        "except ImportError as exc:\n"
        "    assert 'quiv[fastapi]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('imported without FastAPI')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_response_models_show_every_field_of_the_engine_models() -> None:
    """A field added to the engine's models must be added to the API's (or this fails)."""
    assert set(quiv.fastapi.QuivTask.model_fields) == set(Task.model_fields)
    assert set(quiv.fastapi.QuivJob.model_fields) == set(Job.model_fields)
    assert set(quiv.fastapi.QuivStats.model_fields) == set(SchedulerStats.model_fields)
