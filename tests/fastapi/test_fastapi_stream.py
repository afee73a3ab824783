"""The live stream against a real uvicorn server on 127.0.0.1, with real WebSocket clients."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi_support import DEADLINE, JobEvents, ServerThread, Steps, idle, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from quiv import Event, InvalidArgumentError, Quiv
from quiv.fastapi import EventStream, quiv_lifespan, quiv_router
from quiv.types import ProgressHook

FAR = 3600.0


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv(pool_size=4)


def make_app(scheduler: Quiv, stream: EventStream) -> FastAPI:
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    app.include_router(quiv_router(scheduler, stream=stream))
    return app


def post(server: ServerThread, path: str) -> Any:
    request = urllib.request.Request(server.http + path, method="POST")
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:
        return json.loads(response.read())


def get(server: ServerThread, path: str) -> Any:
    with urllib.request.urlopen(server.http + path, timeout=DEADLINE) as response:
        return json.loads(response.read())


def receive(client: ClientConnection) -> dict[str, Any]:
    message = json.loads(client.recv(timeout=DEADLINE))
    assert isinstance(message, dict)
    return message


def receive_until(client: ClientConnection, event: str, **match: Any) -> list[dict[str, Any]]:
    """Every message up to and including the first ``event`` whose fields equal ``match``."""
    seen = []
    while True:
        message = receive(client)
        seen.append(message)
        if message["event"] == event and all(message.get(k) == v for k, v in match.items()):
            return seen


@contextmanager
def subscribed(server: ServerThread, **options: Any) -> Iterator[ClientConnection]:
    """A connected client that has received its hello, so it sees everything from now on."""
    with connect(server.ws + "/ws", open_timeout=DEADLINE, close_timeout=DEADLINE, **options) as client:
        hello = receive(client)
        assert hello["event"] == "hello"
        yield client


# ------------------------------------------------------------ messages
def test_lifecycle_and_progress_messages(scheduler: Quiv) -> None:
    stream = EventStream(scheduler, queue_size=64)
    steps = Steps(total=3)
    with ServerThread(make_app(scheduler, stream)) as server, subscribed(server) as client:
        assert stream.clients == 1
        task_id = scheduler.add_task("steps", steps.handler, interval=60, delay=FAR)
        added = receive(client)
        assert added["event"] == "task_added"
        assert added["task_id"] == task_id
        assert added["task_name"] == "steps"
        assert added["status"] == "active"
        assert added["next_run_at"].endswith("Z")

        assert post(server, f"/tasks/{task_id}/run") == {"task_id": task_id, "queued": 1}
        started = receive(client)
        assert started["event"] == "job_started"
        job_id = started["job_id"]
        assert started["status"] == "running"
        assert started["ended_at"] is None
        for step in (1, 2, 3):
            steps.release(step)
            progress = receive(client)
            assert progress == {
                "event": "progress",
                "at": progress["at"],
                "task_id": task_id,
                "task_name": "steps",
                "job_id": job_id,
                "args": [],
                "payload": {"step": step, "total": 3, "message": f"step {step} of 3"},
            }
        completed = receive(client)
        assert completed["event"] == "job_completed"
        assert completed["job_id"] == job_id
        assert completed["status"] == "completed"
        assert completed["duration_seconds"] >= 0
        assert completed["error"] is None

        post(server, f"/tasks/{task_id}/pause")
        assert receive(client)["event"] == "task_paused"
        post(server, f"/tasks/{task_id}/resume?delay=600")
        resumed = receive(client)
        assert resumed["event"] == "task_resumed"
        assert resumed["status"] == "active"


def test_failures_and_cancellations_carry_the_error(scheduler: Quiv) -> None:
    stream = EventStream(scheduler)

    def broken() -> None:
        raise ValueError("bad input")

    steps = Steps(total=1)
    with ServerThread(make_app(scheduler, stream)) as server, subscribed(server) as client:
        failing = scheduler.add_task("broken", broken, interval=60, delay=FAR)
        post(server, f"/tasks/{failing}/run")
        failed = receive_until(client, "job_failed")[-1]
        assert failed["error"] == "ValueError: bad input"
        assert failed["status"] == "failed"

        slow = scheduler.add_task("slow", steps.handler, interval=60, delay=FAR)
        post(server, f"/tasks/{slow}/run")
        job_id = receive_until(client, "job_started", task_id=slow)[-1]["job_id"]
        post(server, f"/jobs/{job_id}/cancel")
        cancelled = receive_until(client, "job_cancelled")[-1]
        assert cancelled["job_id"] == job_id
        assert cancelled["error"] == "cancelled by cancel_job()"


def test_progress_payloads_are_made_json_safe(scheduler: Quiv) -> None:
    stream = EventStream(scheduler)

    def odd_payloads(_progress_hook: ProgressHook | None = None) -> None:
        assert _progress_hook is not None
        _progress_hook(0.5, {1, 2}, when=time, ratio=float("inf"), nested={"ok": [1, None]})

    with ServerThread(make_app(scheduler, stream)) as server, subscribed(server) as client:
        task_id = scheduler.add_task("odd", odd_payloads, interval=60, delay=FAR)
        post(server, f"/tasks/{task_id}/run")
        progress = receive_until(client, "progress")[-1]
        assert progress["args"] == [0.5, [1, 2]]
        assert progress["payload"]["when"].startswith("<module 'time'")
        assert progress["payload"]["ratio"] == "inf"
        assert progress["payload"]["nested"] == {"ok": [1, None]}
        assert receive(client)["event"] == "job_completed"


def test_listeners_are_attached_only_while_clients_are_connected(scheduler: Quiv) -> None:
    stream = EventStream(scheduler)
    events = JobEvents(scheduler)  # a listener of the test's own, to know when a job is over
    with ServerThread(make_app(scheduler, stream)) as server:
        assert stream.clients == 0
        with subscribed(server), subscribed(server):
            assert stream.clients == 2
        wait_until(lambda: stream.clients == 0, what="both clients to be removed")
        # No client: publishing is a no-op, and jobs still run normally.
        task_id = scheduler.add_task("quiet", idle, interval=60, delay=FAR)
        post(server, f"/tasks/{task_id}/run")
        events.next(Event.JOB_COMPLETED)
        with subscribed(server) as client:
            post(server, f"/tasks/{task_id}/run")
            assert receive_until(client, "job_completed")[-1]["task_id"] == task_id


# ---------------------------------------------------------- slow clients
def _raw_websocket(port: int, path: str = "/ws") -> socket.socket:
    """Open a WebSocket by hand with a tiny receive buffer, then never read from it: a stuck client."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(DEADLINE)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(1)
        assert chunk, "server closed during the handshake"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def _read_frames(sock: socket.socket) -> Iterator[str]:
    """Text frames sent by the server (unmasked), until it closes."""
    buffer = b""

    def need(count: int) -> bytes:
        nonlocal buffer
        while len(buffer) < count:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            buffer += chunk
        data, buffer = buffer[:count], buffer[count:]
        return data

    while True:
        try:
            head = need(2)
        except EOFError:
            return
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(need(2), "big")
        elif length == 127:
            length = int.from_bytes(need(8), "big")
        payload = need(length)
        if opcode == 0x8:  # close
            return
        if opcode == 0x1:
            yield payload.decode()


def test_a_stuck_client_blocks_neither_the_loop_nor_other_clients(scheduler: Quiv) -> None:
    """A client that stops reading fills its lifecycle lane; a client that keeps up gets every event.

    1000 jobs fail with a 16 KB message each (16 MB of ``job_failed`` events),
    started in batches of 50 that the reading client acknowledges: it never
    falls more than a batch behind, well within its lane of 256. The stuck
    client's socket buffers cannot hold 16 MB, so its lane must drop the oldest
    events. Meanwhile the HTTP API, served by the same event loop, answers.
    """
    runs, batch, queue_size = 1000, 50, 256
    stream = EventStream(scheduler, queue_size=queue_size, send_timeout=60)
    filler = "x" * 16384
    events = JobEvents(scheduler)

    def fail() -> None:
        raise RuntimeError(filler)

    with ServerThread(make_app(scheduler, stream)) as server, closing(_raw_websocket(server.port)) as stuck:
        with subscribed(server) as client:
            wait_until(lambda: stream.clients == 2, what="both clients to be connected")
            task_id = scheduler.add_task("fail", fail, interval=60, delay=FAR)
            assert receive(client)["event"] == "task_added"
            ended: list[str] = []
            for done in range(batch, runs + 1, batch):
                for _ in range(batch):
                    run_and_wait(scheduler, task_id, events)
                while len(ended) < done:  # the reading client acknowledges the batch
                    message = receive(client)
                    assert message["event"] != "overflow"
                    if message["event"] == "job_failed":
                        ended.append(message["job_id"])
            assert len(ended) == len(set(ended)) == runs  # the reading client missed no event

            assert stream.dropped > 0  # the stuck client's lane overflowed
            started = time.monotonic()
            assert get(server, "/tasks")[0]["id"] == task_id  # the loop still serves requests
            assert time.monotonic() - started < 5.0

        # Now the stuck client reads: what it had room for, an overflow notice where
        # the gap is, then the newest events up to the last job's end.
        messages = []
        for text in _read_frames(stuck):
            messages.append(json.loads(text))
            if messages[-1]["event"] == "job_failed" and messages[-1]["job_id"] == ended[-1]:
                break
    kinds = [m["event"] for m in messages]
    assert kinds[:2] == ["hello", "task_added"]
    dropped = sum(m["dropped"] for m in messages if m["event"] == "overflow")
    received = [m for m in messages if m["event"] in ("job_started", "job_failed")]
    assert dropped > 0
    assert len(received) + dropped == 2 * runs  # every event was either delivered or counted
    assert [m["job_id"] for m in received if m["event"] == "job_failed"][-1] == ended[
        -1
    ]  # the newest survive
    assert stream.dropped == dropped


def run_and_wait(scheduler: Quiv, task_id: str, events: JobEvents) -> None:
    """Run the task now and wait until its job has failed (the task runs one job at a time)."""
    scheduler.run_task_immediately(task_id)
    events.next(Event.JOB_FAILED)


def test_a_progress_flood_is_coalesced_and_never_hides_lifecycle_events(scheduler: Quiv) -> None:
    """A handler reporting as fast as it can: every event arrives, progress at most every 0.1 s a job."""
    stream = EventStream(scheduler, queue_size=8)
    reports = 200_000

    def flood(_progress_hook: ProgressHook | None = None) -> None:
        assert _progress_hook is not None
        for index in range(reports):
            _progress_hook(index=index)

    with ServerThread(make_app(scheduler, stream)) as server, subscribed(server) as client:
        task_id = scheduler.add_task("flood", flood, interval=60, delay=FAR)
        post(server, f"/tasks/{task_id}/run")
        started_at = time.monotonic()
        seen = receive_until(client, "job_completed", task_id=task_id)
        elapsed = time.monotonic() - started_at
    kinds = [m["event"] for m in seen]
    assert "overflow" not in kinds
    assert kinds[0] == "task_added"
    assert kinds[1] == "job_started"
    assert kinds[-1] == "job_completed"
    indexes = [m["payload"]["index"] for m in seen if m["event"] == "progress"]
    assert indexes == sorted(indexes)
    assert indexes[-1] == reports - 1  # the last report precedes the end
    assert len(indexes) <= elapsed / 0.1 + 3  # coalesced: one message per 0.1 s, not one per report
    assert stream.dropped == 0


def test_progress_interval_zero_sends_reports_as_the_loop_can(scheduler: Quiv) -> None:
    """With progress_interval=0 a slow reporter's every step arrives."""
    stream = EventStream(scheduler, progress_interval=0)
    steps = Steps(total=3)
    with ServerThread(make_app(scheduler, stream)) as server, subscribed(server) as client:
        task_id = scheduler.add_task("steps", steps.handler, interval=60, delay=FAR)
        post(server, f"/tasks/{task_id}/run")
        got = []
        for step in (1, 2, 3):
            steps.release(step)
            got.append(receive_until(client, "progress")[-1]["payload"]["step"])
        assert got == [1, 2, 3]


def test_a_client_slower_than_send_timeout_is_disconnected(scheduler: Quiv) -> None:
    # 200 failures of 64 KB each: far more than the socket buffers take, so a send blocks
    # (and the lane of 16 stays full): either rule cuts the client off after 0.5 s.
    stream = EventStream(scheduler, queue_size=16, send_timeout=0.5)
    filler = "y" * 65536
    events = JobEvents(scheduler)

    def fail() -> None:
        raise RuntimeError(filler)

    with ServerThread(make_app(scheduler, stream)) as server, closing(_raw_websocket(server.port)):
        wait_until(lambda: stream.clients == 1, what="the client to be connected")
        task_id = scheduler.add_task("fail", fail, interval=60, delay=FAR)
        for _ in range(200):
            if stream.clients == 0:
                break
            run_and_wait(scheduler, task_id, events)
        wait_until(lambda: stream.clients == 0, what="the slow client to be dropped")
        assert stream.slow_disconnects == 1


def test_a_client_that_vanishes_is_cleaned_up(scheduler: Quiv) -> None:
    stream = EventStream(scheduler)
    with ServerThread(make_app(scheduler, stream)) as server:
        raw = _raw_websocket(server.port)
        wait_until(lambda: stream.clients == 1, what="the client to be connected")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        raw.close()  # a reset, no close frame: the client just died
        wait_until(lambda: stream.clients == 0, what="the dead client to be removed")
        with subscribed(server) as client:  # the stream still works for others
            scheduler.add_task("after", idle, interval=60, delay=FAR)
            assert receive(client)["event"] == "task_added"


# -------------------------------------------------------------- shutdown
def test_server_shutdown_closes_clients(scheduler: Quiv) -> None:
    stream = EventStream(scheduler)
    with ExitStack() as stack:
        with ServerThread(make_app(scheduler, stream)) as server:
            client = stack.enter_context(connect(server.ws + "/ws", open_timeout=DEADLINE))
            assert receive(client)["event"] == "hello"
        # Leaving the block stopped uvicorn: the connection is closed and the stream is shut.
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=DEADLINE)
    assert stream.clients == 0
    assert stream.closed
    assert not scheduler.running


def test_aclose_sends_queued_messages_then_closes_with_1001(scheduler: Quiv) -> None:
    stream = EventStream(scheduler)
    app = make_app(scheduler, stream)

    @app.post("/close-stream")
    async def close_stream() -> None:
        await stream.aclose()

    with ServerThread(app) as server, subscribed(server) as client:
        post(server, "/close-stream")
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=DEADLINE)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert stream.closed
        # A closed stream refuses new clients.
        with pytest.raises(Exception), connect(server.ws + "/ws", open_timeout=DEADLINE):  # noqa: B017,PT011
            pass


def test_stream_options_are_checked(scheduler: Quiv) -> None:
    with pytest.raises(InvalidArgumentError, match="queue_size"):
        EventStream(scheduler, queue_size=0)
    with pytest.raises(InvalidArgumentError, match="send_timeout"):
        EventStream(scheduler, send_timeout=0)
    with pytest.raises(InvalidArgumentError, match="progress_interval"):
        EventStream(scheduler, progress_interval=-1)
    assert "queue_size=256" in repr(EventStream(scheduler))
