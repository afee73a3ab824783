"""``quiv_lifespan``: starting on the server's loop, stopping off it, composing, autodiscovery."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import types
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi_support import DEADLINE, JobEvents, TestClient

from quiv import Event, InvalidArgumentError, Quiv, SchedulerStoppedError, run_on_main
from quiv.fastapi import EventStream, quiv_lifespan, quiv_router


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv(pool_size=2)


def test_starts_on_the_servers_loop_and_stops_on_exit(scheduler: Quiv) -> None:
    app = FastAPI(lifespan=quiv_lifespan(scheduler))

    @app.get("/loop")
    async def loop() -> dict[str, bool]:
        return {"running": scheduler.running, "main": scheduler.main_loop is asyncio.get_running_loop()}

    assert not scheduler.running
    with TestClient(app) as client:
        assert client.get("/loop").json() == {"running": True, "main": True}
    assert not scheduler.running
    with pytest.raises(SchedulerStoppedError):
        scheduler.get_all_tasks()


def test_the_apps_lifespan_wraps_the_scheduler_and_its_state_is_kept(scheduler: Quiv) -> None:
    seen: list[tuple[str, bool]] = []

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        seen.append(("app starts", scheduler.running))
        yield {"pool": "database pool"}
        seen.append(("app stops", scheduler.running))

    app = FastAPI(lifespan=quiv_lifespan(scheduler, lifespan=app_lifespan))

    @app.get("/state")
    def state(request: Request) -> dict[str, Any]:
        seen.append(("request", scheduler.running))
        return {"pool": request.state.pool}

    with TestClient(app) as client:
        assert client.get("/state").json() == {"pool": "database pool"}
    # The app's resources exist before the scheduler starts and outlive its last job.
    assert seen == [("app starts", False), ("request", True), ("app stops", False)]


def test_usable_inside_the_apps_own_lifespan(scheduler: Quiv) -> None:
    run_scheduler = quiv_lifespan(scheduler)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with run_scheduler(app):
            yield

    with TestClient(FastAPI(lifespan=lifespan)):
        assert scheduler.running
    assert not scheduler.running


def test_shutdown_leaves_the_loop_free_for_jobs_winding_down(scheduler: Quiv) -> None:
    """A job that needs the main loop to finish (run_on_main) can, while shutdown waits for it."""
    started = threading.Event()
    answers: list[str] = []

    def needs_the_loop(_stop_event: threading.Event | None = None) -> None:
        assert _stop_event is not None
        started.set()
        _stop_event.wait(DEADLINE)
        answers.append(run_on_main(lambda: "from the loop").result(timeout=DEADLINE))

    events = JobEvents(scheduler)
    with TestClient(FastAPI(lifespan=quiv_lifespan(scheduler, shutdown_timeout=DEADLINE))):
        scheduler.add_task("needs-loop", needs_the_loop, interval=60)
        assert started.wait(DEADLINE)
    assert answers == ["from the loop"]
    assert events.next(Event.JOB_CANCELLED).error_message == "cancelled: the scheduler shut down"


def test_streams_of_the_scheduler_are_closed(scheduler: Quiv) -> None:
    stream = EventStream(scheduler)
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    app.include_router(quiv_router(scheduler, stream=stream))
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as websocket:
            assert websocket.receive_json()["event"] == "hello"
        assert not stream.closed
    assert stream.closed


# ---------------------------------------------------------- autodiscover
@pytest.fixture
def task_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler: Quiv) -> Iterator[str]:
    """A fresh importable package whose modules declare tasks on ``scheduler``."""
    name = f"quiv_lifespan_pkg_{uuid.uuid4().hex[:8]}"
    holder = types.ModuleType(f"{name}_holder")
    holder.scheduler = scheduler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "reports.py").write_text(
        textwrap.dedent(
            f"""
            from {holder.__name__} import scheduler

            @scheduler.task(interval=3600, delay=3600)
            def nightly_report() -> None:
                pass
            """
        )
    )
    (package / "sub").mkdir()
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "cleanup.py").write_text(
        textwrap.dedent(
            f"""
            from {holder.__name__} import scheduler

            @scheduler.task(interval=60, delay=3600, name="cleanup")
            def clean() -> None:
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def test_autodiscover_imports_the_task_modules_before_starting(scheduler: Quiv, task_package: str) -> None:
    app = FastAPI(lifespan=quiv_lifespan(scheduler, autodiscover=task_package))
    with TestClient(app):
        names = sorted(task.task_name for task in scheduler.get_all_tasks())
    assert names == ["cleanup", "nightly_report"]


def test_autodiscover_takes_several_packages(
    scheduler: Quiv, task_package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = FastAPI(lifespan=quiv_lifespan(scheduler, autodiscover=[f"{task_package}.sub"]))
    with TestClient(app):
        assert [task.task_name for task in scheduler.get_all_tasks()] == ["cleanup"]


def test_a_failing_task_module_fails_startup(scheduler: Quiv, task_package: str, tmp_path: Path) -> None:
    (tmp_path / task_package / "broken.py").write_text("raise RuntimeError('no database configured')\n")
    app = FastAPI(lifespan=quiv_lifespan(scheduler, autodiscover=task_package))
    with pytest.raises(ImportError, match="broken"), TestClient(app):
        pass
    assert not scheduler.running


def test_options_are_checked(scheduler: Quiv) -> None:
    with pytest.raises(InvalidArgumentError, match="shutdown_timeout"):
        quiv_lifespan(scheduler, shutdown_timeout=-1)
    with pytest.raises(InvalidArgumentError, match="shutdown_timeout"):
        quiv_lifespan(scheduler, shutdown_timeout=float("inf"))
    with pytest.raises(InvalidArgumentError, match="package names"):
        quiv_lifespan(scheduler, autodiscover=[""])
    with pytest.raises(InvalidArgumentError, match="package names"):
        quiv_lifespan(scheduler, autodiscover=[42])  # type: ignore[list-item]
