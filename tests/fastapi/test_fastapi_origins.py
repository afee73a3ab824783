"""The router refuses cross-site browser requests: the WebSocket handshake and cookie-borne changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from quiv import InvalidArgumentError, Quiv
from quiv.fastapi import quiv_router

EVIL = "https://evil.example"


def _noop() -> None: ...


Make = Callable[..., tuple[TestClient, str]]


@pytest.fixture
def make_client() -> Iterator[Make]:
    made: list[tuple[Quiv, TestClient]] = []

    def make(allowed_origins: Sequence[str] | None = None) -> tuple[TestClient, str]:
        scheduler = Quiv()
        task_id = scheduler.add_task("t", _noop, interval=60, delay=60)
        app = FastAPI()
        app.include_router(quiv_router(scheduler, allowed_origins=allowed_origins), prefix="/quiv")
        client = TestClient(app)
        client.__enter__()
        made.append((scheduler, client))
        return client, task_id

    yield make
    for scheduler, client in made:
        client.__exit__(None, None, None)
        scheduler.shutdown()


def _handshake(client: TestClient, origin: str | None) -> bool:
    headers = {} if origin is None else {"origin": origin}
    try:
        with client.websocket_connect("/quiv/ws", headers=headers) as ws:
            return bool(ws.receive_json()["event"] == "hello")
    except Exception:
        return False


def test_the_stream_accepts_its_own_origin_and_clients_without_one(make_client: Make) -> None:
    client, _ = make_client()
    assert _handshake(client, None)
    assert _handshake(client, "http://testserver")


@pytest.mark.parametrize("origin", [EVIL, "null", "http://testserver.evil.example", "https://testserver"])
def test_the_stream_refuses_another_origin(make_client: Make, origin: str) -> None:
    client, _ = make_client()
    assert not _handshake(client, origin)


def test_a_cookie_borne_change_from_another_origin_is_refused(make_client: Make) -> None:
    client, task_id = make_client()
    client.cookies.set("session", "x")
    refused = client.post(f"/quiv/tasks/{task_id}/pause", headers={"origin": EVIL})
    assert refused.status_code == 403
    assert client.get(f"/quiv/tasks/{task_id}").json()["status"] == "active"
    assert (
        client.post(f"/quiv/tasks/{task_id}/pause", headers={"origin": "http://testserver"}).status_code
        == 200
    )


def test_reads_and_requests_without_a_cookie_are_not_affected(make_client: Make) -> None:
    client, task_id = make_client()
    assert client.get("/quiv/tasks", headers={"origin": EVIL}).status_code == 200
    assert client.post(f"/quiv/tasks/{task_id}/pause", headers={"origin": EVIL}).status_code == 200


def test_allowed_origins_lists_the_others(make_client: Make) -> None:
    client, task_id = make_client(allowed_origins=["https://ops.example/"])
    assert _handshake(client, "https://ops.example")
    assert not _handshake(client, "http://testserver")
    client.cookies.set("session", "x")
    assert (
        client.post(f"/quiv/tasks/{task_id}/run", headers={"origin": "https://ops.example"}).status_code
        == 202
    )
    anyone, _ = make_client(allowed_origins=["*"])
    assert _handshake(anyone, EVIL)


@pytest.mark.parametrize("bad", ["https://ops.example", [1], 5])
def test_allowed_origins_must_be_a_sequence_of_str(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        quiv_router(Quiv(), allowed_origins=bad)  # type: ignore[arg-type]
