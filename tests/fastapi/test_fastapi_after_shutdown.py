"""After ``scheduler.shutdown()`` every surface says so: REST 503, dashboard 503, the stream refuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from quiv import Quiv, SchedulerStoppedError
from quiv.fastapi import quiv_router


@pytest.fixture
def stopped_client() -> Iterator[TestClient]:
    scheduler = Quiv()
    scheduler.start()
    app = FastAPI()
    app.include_router(quiv_router(scheduler), prefix="/quiv")
    with TestClient(app) as client:
        assert client.get("/quiv/dashboard").status_code == 200
        with client.websocket_connect("/quiv/ws") as ws:
            assert ws.receive_json()["event"] == "hello"
        scheduler.shutdown()
        assert scheduler.stopped
        yield client


def test_the_dashboard_says_the_scheduler_is_stopped(stopped_client: TestClient) -> None:
    answer = stopped_client.get("/quiv/dashboard")
    assert answer.status_code == 503
    assert "shut down" in answer.text


def test_the_stream_refuses_new_clients(stopped_client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, stopped_client.websocket_connect("/quiv/ws"):
        pass
    assert refused.value.code == 1013


def test_the_rest_api_answers_503(stopped_client: TestClient) -> None:
    assert stopped_client.get("/quiv/tasks").status_code == 503
    assert stopped_client.get("/quiv/stats").status_code == 503


def test_stopped_is_false_before_start_and_while_running() -> None:
    scheduler = Quiv()
    states = [scheduler.stopped]
    scheduler.start()
    states.append(scheduler.stopped)
    scheduler.shutdown()
    states.append(scheduler.stopped)
    assert states == [False, False, True]
    with pytest.raises(SchedulerStoppedError):
        scheduler.start()


def test_the_example_reports_route_needs_the_token_and_answers_503_after_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi import HTTPException

    from examples.fastapi_app.main import app
    from examples.fastapi_app.routes import reports

    monkeypatch.setenv("EXAMPLE_API_TOKEN", "secret")
    client = TestClient(app)  # no lifespan: the app's scheduler is not started
    assert client.post("/reports/monthly").status_code == 401
    stopped = Quiv()
    stopped.shutdown()
    monkeypatch.setattr(reports, "scheduler", stopped)
    with pytest.raises(HTTPException) as refused:
        reports.request_report("monthly")
    assert refused.value.status_code == 503
