"""The live event stream of quiv.fastapi under a progress flood, against a real uvicorn server.

Usage (from the repository root)::

    python bench/stream_flood.py              # 40 s windows, 2 repetitions: bench/results/stream_flood.*
    python bench/stream_flood.py --quick      # 10 s windows, 1 repetition:
                                              # bench/results/tmp/stream_flood_quick.*
    python bench/stream_flood.py --soak 300   # one 300 s flood window with 50 clients (the RSS check);
                                              # stored as the "soak" part of bench/results/stream_flood.*
    python bench/stream_flood.py --profile    # also cProfile the server's event-loop thread over each window

Every run starts one uvicorn process (this file, ``serve`` sub-command) with an
app serving ``quiv_router(scheduler)`` under ``/quiv`` (the stream at
``/quiv/ws``), an ``async def`` ``GET /ping`` and a few ``/bench/*`` endpoints.
The scheduler runs three quick tasks every 0.5 s; in flood runs it also runs a
``flood`` task every 1 s whose job calls ``_progress_hook`` in a tight loop for
0.9 s. Three kinds of run, repeated ``--reps`` times in this order:

* ``baseline``: the quick tasks only, no WebSocket client;
* ``flood-0``: the flood, no WebSocket client (the stream is detached);
* ``flood-N``: the flood and N WebSocket clients (default 50) reading as fast as they can,
  all in one asyncio process of their own (not the server's). The clients offer permessage-deflate,
  as browsers do, and uvicorn accepts it by default: every message is compressed once per client.
* ``flood-N-nodeflate`` (not run by default): the same with uvicorn's ``ws_per_message_deflate=False``.

During the window (wall clock, ``--window`` seconds) this process measures
``GET /ping`` (one thread, sequential requests on one keep-alive connection,
one every 10 ms) and samples the server's VmRSS every second; the server
records how late a 10 ms ``asyncio.sleep`` wakes on its loop and, with a job
listener, which job events fired. After the window every client must have
received each of those events (it keeps reading until it has, or 20 s pass).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import itertools
import json
import math
import multiprocessing
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

FLOOD_TASK = "flood"
FLOOD_INTERVAL = 1.0
FLOOD_SECONDS = 0.9
QUICK_TASKS = 3
QUICK_INTERVAL = 0.5
LAG_SLEEP = 0.010
PING_PACE = 0.010
DEADLINE = 30.0
DELIVERY_DEADLINE = 20.0
#: baseline: quick tasks only; flood-0: and the flood; flood-N: and N clients; -nodeflate: with
#: uvicorn's permessage-deflate turned off (ws_per_message_deflate=False).
KINDS = ("baseline", "flood-0", "flood-N", "flood-N-nodeflate")
JOB_EVENTS = ("job_started", "job_completed", "job_failed", "job_cancelled", "job_missed")

TARGET_GAP_MS = 200.0
TARGET_PING_RATIO = 3.0
TARGET_LAG_MS = 20.0
#: RSS counts as bounded when a straight line fitted over the last half of the window rises slower than
#: this (1 KB/s is 3.5 MB an hour).
RSS_SLOPE_LIMIT_KB_S = 1.0


# ======================================================================= server
def serve(
    flood: bool, profile_path: str | None, switch_interval: float | None, deflate: bool, retention: int | None
) -> None:
    """The benchmark app under uvicorn; prints ``PORT <n>`` on stdout once it listens."""
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    import uvicorn
    from fastapi import FastAPI

    from quiv import Event, Quiv
    from quiv.fastapi import EventStream, quiv_lifespan, quiv_router
    from quiv.models import Job, Task

    scheduler = (
        Quiv(pool_size=8) if retention is None else Quiv(pool_size=8, history_retention_seconds=retention)
    )
    stream = EventStream(scheduler)
    lags: list[float] = []
    truth: dict[str, list[str]] = {name: [] for name in JOB_EVENTS}
    flood_started: list[str] = []
    final_steps: dict[str, int] = {}
    window = {"open": False, "started": 0.0}
    # When the stream handed each flood job's progress to the clients' lanes (server side of the gap).
    handed: dict[str, list[float]] = {}
    publish_progress = stream._publish_progress

    def timed_publish(report: Any) -> None:
        if window["open"] and report[1] == FLOOD_TASK:
            handed.setdefault(report[2], []).append(time.monotonic())
        publish_progress(report)

    stream._publish_progress = timed_publish  # type: ignore[method-assign]
    profiler: list[Any] = []

    def on_job(event: Event, task: Task, job: Job) -> None:  # on the loop, with the stream's own listener
        if event is Event.JOB_STARTED and job.task_name == FLOOD_TASK:
            flood_started.append(job.id)
        if window["open"]:
            truth[event.value].append(job.id)

    for event in Event:
        if event.is_job_event:
            scheduler.add_listener(event, on_job)

    def flood_job(
        _job_id: str | None = None,
        _progress_hook: Any = None,
        _stop_event: threading.Event | None = None,
    ) -> None:
        assert _job_id is not None
        assert _progress_hook is not None
        assert _stop_event is not None
        end = time.monotonic() + FLOOD_SECONDS
        step = 0
        while True:
            step += 1
            _progress_hook(step=step, message="flooding")
            if time.monotonic() >= end or (step & 1023 == 0 and _stop_event.is_set()):
                break
        final_steps[_job_id] = step

    def quick_job() -> None:
        sum(range(2_000))

    if flood:
        scheduler.add_task(FLOOD_TASK, flood_job, interval=FLOOD_INTERVAL)
    for i in range(QUICK_TASKS):
        scheduler.add_task(f"quick-{i}", quick_job, interval=QUICK_INTERVAL)

    async def watch_loop() -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(LAG_SLEEP)
            late = time.perf_counter() - asked - LAG_SLEEP
            if window["open"]:
                lags.append(late)

    @contextlib.asynccontextmanager
    async def bench_lifespan(app: Any) -> Any:
        watcher = asyncio.ensure_future(watch_loop())
        try:
            yield
        finally:
            watcher.cancel()

    app = FastAPI(lifespan=quiv_lifespan(scheduler, lifespan=bench_lifespan))
    app.include_router(quiv_router(scheduler, stream=stream), prefix="/quiv")

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/bench/state")
    async def state() -> dict[str, Any]:
        return {"clients": stream.clients, "flood_jobs": len(flood_started), "pid": os.getpid()}

    @app.post("/bench/window/start")
    async def window_start() -> dict[str, Any]:
        lags.clear()
        handed.clear()
        for ids in truth.values():
            ids.clear()
        window["open"] = True
        window["started"] = time.monotonic()
        if profile_path:
            import cProfile

            profiler[:] = [cProfile.Profile()]
            profiler[0].enable()  # this thread only: the event loop's
        return {"clients": stream.clients}

    @app.post("/bench/window/stop")
    async def window_stop() -> dict[str, Any]:
        window["open"] = False
        seconds = time.monotonic() - window["started"]
        if profiler:
            profiler[0].disable()
            profiler[0].dump_stats(profile_path)
            profiler.clear()
        ended = {job for name, ids in truth.items() if name != "job_started" for job in ids}
        # Flood jobs whose whole life (start to end event) fell in the window.
        window_floods = set(truth["job_started"]) & set(flood_started) & ended
        return {
            "seconds": seconds,
            "lag_ms": [round(x * 1000, 3) for x in lags],
            "truth": {name: list(ids) for name, ids in truth.items()},
            "flood_jobs": sorted(window_floods),
            "final_steps": {job: final_steps[job] for job in window_floods if job in final_steps},
            "server_gaps_ms": [
                round(max(b - a for a, b in itertools.pairwise(handed[job])) * 1000, 2)
                for job in window_floods
                if len(handed.get(job, ())) >= 2
            ],
            "clients": stream.clients,
            "stream_dropped": stream.dropped,
            "stream_slow_disconnects": stream.slow_disconnects,
        }

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws_per_message_deflate=deflate)
    uvicorn.Server(config).run(sockets=[sock])


class ServerProcess:
    """``python bench/stream_flood.py serve`` in a child process."""

    def __init__(
        self,
        flood: bool,
        profile_path: Path | None,
        switch_interval: float | None,
        deflate: bool,
        retention: int | None = None,
    ) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "serve"]
        if retention is not None:
            command += ["--retention", str(retention)]
        if flood:
            command.append("--flood")
        if not deflate:
            command.append("--no-deflate")
        if switch_interval is not None:
            command += ["--switch-interval", str(switch_interval)]
        if profile_path is not None:
            command += ["--profile-to", str(profile_path)]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE)
        self.pid = self.process.pid
        self.port = self._read_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def _read_port(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + DEADLINE
        line = b""
        while time.monotonic() < deadline and self.process.poll() is None:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                break
        if not line.startswith(b"PORT "):
            self.stop()
            raise RuntimeError(f"the server did not start (said {line!r})")
        return int(line.split()[1])

    def call(self, method: str, path: str) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {body[:200]!r}")
            return json.loads(body)
        finally:
            connection.close()

    def wait_until(self, what: str, predicate: Any) -> Any:
        """Poll ``predicate()`` (which may raise while the server comes up) until it is truthy."""
        deadline = time.monotonic() + DEADLINE
        error: BaseException | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}) waiting for {what}")
            try:
                value = predicate()
            except (OSError, http.client.HTTPException, RuntimeError) as exc:
                error, value = exc, None
            if value:
                return value
            time.sleep(0.05)
        raise RuntimeError(f"timed out after {DEADLINE} s waiting for {what} (last error: {error!r})")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# ====================================================================== clients
class Reader:
    """One WebSocket client: what it received, and when."""

    def __init__(self) -> None:
        self.events: dict[str, set[str]] = {name: set() for name in JOB_EVENTS}
        #: Arrival times (monotonic) of each flood job's progress messages.
        self.progress: dict[str, list[float]] = {}
        #: Step of the last progress message of each flood job received before its end event.
        self.last_step: dict[str, int] = {}
        self.ended: set[str] = set()
        self.progress_after_end = 0
        self.overflows = 0
        self.overflow_dropped = 0
        self.counts: Counter[str] = Counter()
        self.close: str | None = None
        self.hello = asyncio.Event()

    async def run(self, url: str, stop: asyncio.Event) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        try:
            async with connect(url, max_size=None, open_timeout=DEADLINE, close_timeout=5) as ws:
                reading = asyncio.ensure_future(self._read(ws))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if reading.done():
                    reading.result()
                else:
                    reading.cancel()
        except ConnectionClosed as exc:
            self.close = f"closed by the server: {exc.rcvd.code if exc.rcvd else None} {exc}"
        except Exception as exc:
            self.close = f"{type(exc).__name__}: {exc}"
        finally:
            self.hello.set()  # a failed connection must not hold up the others

    async def _read(self, ws: Any) -> None:
        events = self.events
        async for raw in ws:
            arrived = time.monotonic()
            message = json.loads(raw)
            kind = message["event"]
            self.counts[kind] += 1
            if kind == "progress":
                if message["task_name"] == FLOOD_TASK:
                    job = message["job_id"]
                    self.progress.setdefault(job, []).append(arrived)
                    if job in self.ended:
                        self.progress_after_end += 1
                    else:
                        self.last_step[job] = message["payload"]["step"]
            elif kind in events:
                events[kind].add(message["job_id"])
                if kind != "job_started":
                    self.ended.add(message["job_id"])
            elif kind == "overflow":
                self.overflows += 1
                self.overflow_dropped += message["dropped"]
            elif kind == "hello":
                self.hello.set()
        self.close = f"closed by the server: {ws.close_code} {ws.close_reason}"

    def missing(self, truth: dict[str, list[str]]) -> int:
        return sum(len(set(ids) - self.events[name]) for name, ids in truth.items())


def clients_main(url: str, count: int, conn: Connection) -> None:
    """In a process of its own: ``count`` clients on one asyncio loop (see ``client_session``)."""
    asyncio.run(client_session(url, count, conn))


async def client_session(url: str, count: int, conn: Connection) -> None:
    """Connect, say ``connected``, read until the truth arrives and every client has it, report."""
    loop = asyncio.get_running_loop()
    readers = [Reader() for _ in range(count)]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(reader.run(url, stop)) for reader in readers]
    await asyncio.wait_for(asyncio.gather(*(reader.hello.wait() for reader in readers)), DEADLINE)
    conn.send(("connected", sum(r.close is None for r in readers)))
    truth, flood_jobs, final_steps = await loop.run_in_executor(None, conn.recv)
    started = time.monotonic()
    while time.monotonic() - started < DELIVERY_DEADLINE:
        if all(r.missing(truth) == 0 or r.close is not None for r in readers):
            break
        await asyncio.sleep(0.05)
    waited = time.monotonic() - started
    stop.set()
    await asyncio.wait(tasks, timeout=DEADLINE)
    conn.send(("results", [summarise_reader(r, truth, flood_jobs, final_steps) for r in readers], waited))


def summarise_reader(
    reader: Reader, truth: dict[str, list[str]], flood_jobs: list[str], final_steps: dict[str, int]
) -> dict[str, Any]:
    gaps: list[float] = []
    per_job: list[int] = []
    last_ok = 0
    for job in flood_jobs:
        times = reader.progress.get(job, [])
        per_job.append(len(times))
        if len(times) >= 2:
            gaps.append(max(b - a for a, b in itertools.pairwise(times)))
        if job in final_steps and reader.last_step.get(job) == final_steps[job] and job in reader.ended:
            last_ok += 1
    return {
        "expected_events": sum(len(ids) for ids in truth.values()),
        "missing_events": reader.missing(truth),
        "max_gap_ms": round(max(gaps) * 1000, 2) if gaps else None,
        "job_max_gaps_ms": [round(g * 1000, 2) for g in gaps],
        "progress_per_flood_job": per_job,
        "last_report_before_end": last_ok,
        "flood_jobs_checked": sum(job in final_steps for job in flood_jobs),
        "progress_after_end": reader.progress_after_end,
        "overflows": reader.overflows,
        "overflow_dropped": reader.overflow_dropped,
        "messages": dict(reader.counts),
        "close": reader.close,
    }


# ================================================================== measurement
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_wait(pid: int, tid: int | None = None) -> float:
    """Seconds thread ``tid`` (default: every thread of ``pid``) spent runnable but waiting for a CPU."""
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for t in tids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{t}/schedstat") as f:
            total += int(f.read().split()[1])
    return total / 1e9


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """VmRSS of ``pid`` once a second, with the monotonic time of each sample."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((time.monotonic(), value))
            self.done.wait(1.0)


def ping_for(port: int, seconds: float) -> list[float]:
    """Sequential ``GET /ping`` on one keep-alive connection, one every PING_PACE s; latencies in ms."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    latencies: list[float] = []
    end = time.monotonic() + seconds
    due = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now >= end:
                break
            if due > now:
                time.sleep(due - now)  # pacing, not waiting for an outcome
            due += PING_PACE
            sent = time.perf_counter()
            connection.request("GET", "/ping")
            response = connection.getresponse()
            response.read()
            latencies.append((time.perf_counter() - sent) * 1000)
            if due < time.monotonic():
                due = time.monotonic()
    finally:
        connection.close()
    return latencies


def slope_per_second(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [v for _, v in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def run_once(
    kind: str,
    flood: bool,
    clients: int,
    window: float,
    profile_dir: Path | None,
    label: str,
    switch_interval: float | None = None,
    deflate: bool = True,
    retention: int | None = None,
) -> dict[str, Any]:
    """One server, optional clients, one measurement window; the raw figures of that run."""
    profile_path = None if profile_dir is None else profile_dir / f"{label}.prof"
    print(f"[{label}] starting the server ({kind})", flush=True)
    server = ServerProcess(flood, profile_path, switch_interval, deflate, retention)
    context = multiprocessing.get_context("spawn")
    client_process = None
    parent_end: Connection | None = None
    sampler = RssSampler(server.pid)
    try:
        server.wait_until("GET /ping", lambda: server.call("GET", "/ping"))
        sampler.start()
        if clients:
            parent_end, child_end = context.Pipe()
            client_process = context.Process(
                target=clients_main, args=(f"ws://127.0.0.1:{server.port}/quiv/ws", clients, child_end)
            )
            client_process.start()
            if not parent_end.poll(DEADLINE * 2):
                raise RuntimeError("the clients did not connect")
            _, connected = parent_end.recv()
            if connected != clients:
                raise RuntimeError(f"only {connected} of {clients} clients connected")
            server.wait_until(
                f"{clients} clients on the server", lambda: server.call("GET", "/bench/state")["clients"]
            )
        if flood:  # warm up: the flood has run once and is running again
            server.wait_until("two flood jobs", lambda: server.call("GET", "/bench/state")["flood_jobs"] >= 2)
        cpu_server = cpu_seconds(server.pid)
        cpu_clients = cpu_seconds(client_process.pid) if client_process and client_process.pid else 0.0
        load_before = os.getloadavg()[0]
        waits = (run_queue_wait(server.pid, server.pid), run_queue_wait(server.pid))
        client_wait = run_queue_wait(client_process.pid) if client_process and client_process.pid else 0.0
        print(f"[{label}] measuring for {window:g} s", flush=True)
        window_started = time.monotonic()
        server.call("POST", "/bench/window/start")
        latencies = ping_for(server.port, window)  # the window itself: wall clock, on purpose
        stats = server.call("POST", "/bench/window/stop")
        window_ended = time.monotonic()
        cpu_server = cpu_seconds(server.pid) - cpu_server
        waits = (
            run_queue_wait(server.pid, server.pid) - waits[0],
            run_queue_wait(server.pid) - waits[1],
        )
        load_after = os.getloadavg()[0]
        if client_process is not None and client_process.pid:
            client_wait = run_queue_wait(client_process.pid) - client_wait
        if client_process is not None and client_process.pid:
            cpu_clients = cpu_seconds(client_process.pid) - cpu_clients
        sampler.done.set()
        sampler.join()
        results: list[dict[str, Any]] = []
        waited = 0.0
        if parent_end is not None:
            parent_end.send((stats["truth"], stats["flood_jobs"], stats["final_steps"]))
            if not parent_end.poll(DELIVERY_DEADLINE + DEADLINE * 2):
                raise RuntimeError("the clients did not report")
            _, results, waited = parent_end.recv()
    finally:
        sampler.done.set()
        if client_process is not None:
            client_process.join(DEADLINE)
            if client_process.is_alive():
                client_process.kill()
                client_process.join()
        server.stop()
    rss = [(t, v) for t, v in sampler.samples if window_started <= t <= window_ended + 1.0]
    half = window_started + (window_ended - window_started) / 2
    last_half = [(t, v) for t, v in rss if t >= half]
    rise = slope_per_second(last_half) * (window_ended - half)
    lags = stats["lag_ms"]
    truth = stats["truth"]
    return {
        "label": label,
        "kind": kind,
        "flood": flood,
        "clients": clients,
        "window_seconds": round(stats["seconds"], 2),
        "load_average": [load_before, load_after],
        "switch_interval": switch_interval,
        "per_message_deflate": deflate,
        "history_retention_seconds": retention,
        "run_queue_wait": {
            "loop_thread_share": round(waits[0] / (window_ended - window_started), 4),
            "all_threads_seconds": round(waits[1], 3),
            "clients_share": round(client_wait / (window_ended - window_started), 4),
        },
        "ping_ms": {
            "count": len(latencies),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies),
        },
        "loop_lag_ms": {
            "count": len(lags),
            "p50": percentile(lags, 50) if lags else None,
            "p99": percentile(lags, 99) if lags else None,
            "max": max(lags) if lags else None,
        },
        "rss_mb": {
            "start": rss[0][1] if rss else None,
            "max": max(v for _, v in rss) if rss else None,
            "end": rss[-1][1] if rss else None,
            "last_half_rise_mb": round(rise, 3),
            "bounded": rise * 1024 / max(window_ended - half, 1e-9) < RSS_SLOPE_LIMIT_KB_S,
            "samples": [round(v, 2) for _, v in rss],
        },
        "cpu": {
            "server_cores": round(cpu_server / (window_ended - window_started), 3),
            "clients_cores": round(cpu_clients / (window_ended - window_started), 3),
        },
        "job_events": {name: len(ids) for name, ids in truth.items()},
        "flood_jobs": len(stats["flood_jobs"]),
        "progress_reports": sum(stats["final_steps"].values()),
        "server_gaps_ms": stats["server_gaps_ms"],
        "stream_dropped": stats["stream_dropped"],
        "stream_slow_disconnects": stats["stream_slow_disconnects"],
        "delivery_wait_seconds": round(waited, 2),
        "readers": results,
    }


# ======================================================================= report
def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**FAIL**")


def metrics(run: dict[str, Any], baseline: dict[str, Any] | None) -> dict[str, tuple[str, bool | None]]:
    """Each table row's cell for ``run``: (text, target met or None when it does not apply)."""
    readers = run["readers"]
    rows: dict[str, tuple[str, bool | None]] = {}
    expected = sum(run["job_events"].values())
    if readers:
        missing = sum(r["missing_events"] for r in readers)
        short = sum(r["missing_events"] > 0 for r in readers)
        rows["delivery"] = (
            f"{missing} missing of {expected} for each of {len(readers)} clients ({short} clients short)",
            missing == 0,
        )
        gaps = [g for r in readers for g in r["job_max_gaps_ms"]]
        if gaps:
            worst = max(gaps)
            rows["gap"] = (
                f"max {fmt(worst)} ms, p99 {fmt(percentile(gaps, 99))} ms over {len(gaps)} client-jobs",
                worst <= TARGET_GAP_MS,
            )
        server_gaps = run.get("server_gaps_ms")
        if server_gaps:
            rows["server_gap"] = (
                f"max {fmt(max(server_gaps))} ms, p50 {fmt(percentile(server_gaps, 50))} ms "
                f"over {len(server_gaps)} jobs",
                max(server_gaps) <= TARGET_GAP_MS,
            )
        per_job = [n for r in readers for n in r["progress_per_flood_job"]]
        if per_job:
            rows["per_job"] = (
                f"{min(per_job)} to {max(per_job)} (mean {statistics.fmean(per_job):.1f})",
                None,
            )
        checked = sum(r["flood_jobs_checked"] for r in readers)
        ok = sum(r["last_report_before_end"] for r in readers)
        after = sum(r["progress_after_end"] for r in readers)
        rows["last"] = (
            f"{ok} of {checked} client-jobs; {after} progress after end",
            ok == checked and not after,
        )
        overflows = sum(r["overflows"] for r in readers)
        rows["overflow"] = (
            f"{overflows} ({sum(r['overflow_dropped'] for r in readers)} dropped)",
            overflows == 0,
        )
        closed = [r["close"] for r in readers if r["close"]]
        rows["closed"] = (
            f"{len(closed)} closed; server: {run['stream_slow_disconnects']} slow, "
            f"{run['stream_dropped']} dropped",
            not closed and not run["stream_slow_disconnects"],
        )
    ping = run["ping_ms"]
    rows["ping"] = (f"{fmt(ping['p50'])} / {fmt(ping['p99'])} ms (n={ping['count']})", None)
    if baseline is not None and baseline is not run:
        ratio = ping["p99"] / baseline["ping_ms"]["p99"]
        rows["ping_ratio"] = (
            f"{ratio:.2f}x ({fmt(baseline['ping_ms']['p99'])} ms)",
            ratio <= TARGET_PING_RATIO,
        )
    lag = run["loop_lag_ms"]
    if lag["count"]:
        rows["lag_p99"] = (f"{fmt(lag['p99'])} ms (p50 {fmt(lag['p50'])})", lag["p99"] <= TARGET_LAG_MS)
        rows["lag_max"] = (f"{fmt(lag['max'])} ms (n={lag['count']})", lag["max"] <= TARGET_LAG_MS)
    rss = run["rss_mb"]
    slope = rss["last_half_rise_mb"] * 1024 / (run["window_seconds"] / 2)
    rows["rss"] = (
        f"{fmt(rss['start'])} / {fmt(rss['max'])} / {fmt(rss['end'])} MB; "
        f"last half {rss['last_half_rise_mb']:+.2f} MB ({slope:+.1f} KB/s)",
        slope < RSS_SLOPE_LIMIT_KB_S,
    )
    rows["cpu"] = (
        f"server {run['cpu']['server_cores']:.2f}, clients {run['cpu']['clients_cores']:.2f}",
        None,
    )
    load = run["load_average"]
    rows["noise"] = (
        f"loop thread waited for a CPU {run['run_queue_wait']['loop_thread_share']:.1%} of the window"
        + (
            f", clients process {run['run_queue_wait']['clients_share']:.1%}"
            if run["clients"] and "clients_share" in run["run_queue_wait"]
            else ""
        )
        + "; "
        f"load {load[0]:.1f} to {load[1]:.1f}",
        None,
    )
    events = run["job_events"]
    rows["events"] = (
        f"{expected} ({events['job_started']} started, {run['flood_jobs']} flood jobs, "
        f"{fmt(run['progress_reports'] / run['window_seconds'])} reports/s)",
        None,
    )
    return rows


ROWS: list[tuple[str, str, str]] = [
    ("delivery", "every job event reaches every client", "0 missing"),
    ("gap", "largest gap between consecutive progress messages of a flood job, per client", "≤ 200 ms"),
    (
        "server_gap",
        "the same on the server: largest gap between two flushes of a flood job's progress into the lanes",
        "≤ 200 ms",
    ),
    ("per_job", "progress messages per flood job per client", "≈ 9 (0.9 s / 0.1 s)"),
    ("last", "last report of each flood job arrives, before its end event", "all"),
    ("overflow", "overflow messages received by clients", "0"),
    ("closed", "clients cut off", "0"),
    ("ping", "`GET /ping` p50 / p99", "-"),
    ("ping_ratio", "`GET /ping` p99 ÷ baseline p99 (same repetition)", "≤ 3x"),
    ("lag_p99", "event-loop lag p99 (10 ms sleep, how late it wakes)", "≤ 20 ms"),
    ("lag_max", "event-loop lag max", "≤ 20 ms"),
    (
        "rss",
        "server RSS start / max / end; line fitted over the last half",
        "no upward trend (< 1 KB/s)",
    ),
    ("cpu", "CPU used during the window (cores)", "-"),
    ("noise", "machine noise: time runnable but not running (schedstat); 1-min load", "-"),
    ("events", "job events in the window", "-"),
]


def render_table(runs: list[dict[str, Any]]) -> str:
    baselines = {r["label"].split("#")[1]: r for r in runs if r["kind"] == "baseline"}
    cells = [metrics(r, baselines.get(r["label"].split("#")[1])) for r in runs]
    head = "| metric | target | " + " | ".join(r["label"] for r in runs) + " |"
    lines = [head, "|---|---|" + "---|" * len(runs)]
    for key, name, target in ROWS:
        if not any(key in c for c in cells):
            continue
        row = [f"| {name} | {target} |"]
        for c in cells:
            if key in c:
                text, ok = c[key]
                row.append(f" {text}{'' if ok is None else ' ' + verdict(ok)} |")
            else:
                row.append(" - |")
        lines.append("".join(row))
    return "\n".join(lines)


def render_markdown(data: dict[str, Any]) -> str:
    machine = data["machine"]
    out = [
        "# Live stream under a progress flood",
        "",
        f"Machine: {machine['cpus']} CPUs · Python {machine['python']} · {machine['platform']} · "
        f"quiv at commit {machine['commit']}. Produced by `python bench/stream_flood.py` "
        "(see its docstring for the workload).",
        "",
        "Workload: one uvicorn process (uvloop, httptools, websockets-sansio) serving `quiv_router` and an "
        "`async def GET /ping`; three quick tasks every 0.5 s; in flood runs a task every 1 s whose job "
        "calls `_progress_hook(step=i, message=...)` in a tight loop for 0.9 s. Clients: one asyncio "
        "process of WebSocket clients reading as fast as they can; `/ping`: one thread of the benchmark "
        "process, sequential requests on a keep-alive connection, one every 10 ms. Server, clients and "
        "pinger share the machine's cores, so client CPU does compete with the server (see the CPU row).",
        "",
    ]
    if data.get("runs"):
        out += [
            f"## Runs of {data['window']:g} s ({data['when']})",
            "",
            f"Order: {', '.join(r['label'] for r in data['runs'])}.",
            "",
            render_table(data["runs"]),
            "",
        ]
    if data.get("soak"):
        soak = data["soak"]
        out += [
            f"## Soak: {soak['window']:g} s ({soak['when']})",
            "",
            "History retention of the server's scheduler: "
            + (
                "quiv's default (one day: the job history grows all along)"
                if soak["runs"][-1].get("history_retention_seconds") is None
                else f"{soak['runs'][-1]['history_retention_seconds']} s"
            )
            + ".",
            "",
            render_table(soak["runs"]),
            "",
            "RSS samples (MB, one a second): "
            + ", ".join(fmt(v, 4) for v in soak["runs"][-1]["rss_mb"]["samples"]),
            "",
        ]
    return "\n".join(out)


def machine_info() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "quiv"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit + (" + uncommitted changes in quiv/" if dirty else ""),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve", help="(internal) the benchmark server")
    serve_parser.add_argument("--flood", action="store_true")
    serve_parser.add_argument("--profile-to", default=None)
    serve_parser.add_argument("--switch-interval", type=float, default=None)
    serve_parser.add_argument("--no-deflate", action="store_true")
    serve_parser.add_argument("--retention", type=int, default=None)
    parser.add_argument(
        "--retention",
        type=int,
        default=None,
        help="history_retention_seconds of the server's scheduler (default: quiv's, one day): the job "
        "history grows with every job until then, which a soak's RSS shows",
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="uvicorn ws_per_message_deflate=False (by default clients that offer it get compressed frames)",
    )
    parser.add_argument(
        "--switch-interval", type=float, default=None, help="sys.setswitchinterval in the server (diagnosis)"
    )
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured per run (default 40)")
    parser.add_argument("--quick", action="store_true", help="10 s windows, 1 repetition")
    parser.add_argument("--soak", type=float, default=None, help="one flood run with clients this long")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 2, 1 with --quick)")
    parser.add_argument(
        "--kinds",
        default="baseline,flood-0,flood-N",
        help=f"which runs, in order, comma-separated: {', '.join(KINDS)} (N: --clients)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the server loop: <out>-profiles/")
    parser.add_argument("--out", default=None, help="output path without extension")
    parser.add_argument("--render", action="store_true", help="only rewrite <out>.md from <out>.json")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.flood, args.profile_to, args.switch_interval, not args.no_deflate, args.retention)
        return 0

    if args.soak is not None:
        window, reps, kinds = args.soak, 1, ["flood-N"]
    else:
        window = 10.0 if args.quick else args.window
        reps = args.reps if args.reps is not None else (1 if args.quick else 2)
        kinds = args.kinds.split(",")
    default_out = HERE / "results" / ("tmp/stream_flood_quick" if args.quick else "stream_flood")
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.render:
        markdown = render_markdown(json.loads(out.with_suffix(".json").read_text()))
        out.with_suffix(".md").write_text(markdown)
        print(markdown)
        return 0
    profile_dir = None
    if args.profile:
        profile_dir = out.parent / f"{out.name}-profiles"
        profile_dir.mkdir(parents=True, exist_ok=True)

    runs = []
    for rep in range(1, reps + 1):
        for kind in kinds:
            if kind not in KINDS:
                parser.error(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
            flood = kind != "baseline"
            clients = args.clients if kind.startswith("flood-N") else 0
            deflate = not args.no_deflate and not kind.endswith("-nodeflate")
            name = (f"flood-{clients}" if flood else "baseline") + ("" if deflate else " no-deflate")
            label = f"{name} #{rep}" if args.soak is None else f"soak {name} #{rep}"
            runs.append(
                run_once(
                    kind,
                    flood,
                    clients,
                    window,
                    profile_dir,
                    label,
                    args.switch_interval,
                    deflate,
                    args.retention,
                )
            )
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    previous: dict[str, Any] = {}
    json_path = out.with_suffix(".json")
    if json_path.exists():
        with contextlib.suppress(ValueError):
            previous = json.loads(json_path.read_text())
    data: dict[str, Any] = {"machine": machine_info()}
    part = {"window": window, "when": when, "runs": runs}
    if args.soak is not None:
        data.update(runs=previous.get("runs"), window=previous.get("window"), when=previous.get("when"))
        data["soak"] = part
    else:
        data.update(part)
        if previous.get("soak"):
            data["soak"] = previous["soak"]
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    markdown = render_markdown(data)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
