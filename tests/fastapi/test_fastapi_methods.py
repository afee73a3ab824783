"""A method a path does not serve answers 405 naming every method it does serve."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from quiv import Quiv
from quiv.fastapi import quiv_router


def _noop() -> None: ...


@pytest.fixture
def client() -> Iterator[tuple[TestClient, str]]:
    scheduler = Quiv()
    task_id = scheduler.add_task("t", _noop, interval=60, delay=60)
    app = FastAPI()
    app.include_router(quiv_router(scheduler), prefix="/quiv")
    with TestClient(app) as test_client:
        yield test_client, task_id
    scheduler.shutdown()


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS", "POST"])
def test_a_task_path_lists_get_and_delete(client: tuple[TestClient, str], method: str) -> None:
    test_client, task_id = client
    answer = test_client.request(method, f"/quiv/tasks/{task_id}")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, GET"


def test_served_methods_still_work(client: tuple[TestClient, str]) -> None:
    test_client, task_id = client
    assert test_client.get(f"/quiv/tasks/{task_id}").status_code == 200
    assert test_client.request("PUT", "/quiv/tasks").headers["allow"] == "GET"
    assert test_client.get("/quiv/tasks/nope/pause").headers["allow"] == "POST"
    assert test_client.delete(f"/quiv/tasks/{task_id}").status_code == 204


def test_the_hidden_routes_stay_out_of_the_openapi_document(client: tuple[TestClient, str]) -> None:
    test_client, _ = client
    paths = test_client.get("/openapi.json").json()["paths"]
    assert set(paths["/quiv/tasks/{task_id}"]) == {"get", "delete"}
