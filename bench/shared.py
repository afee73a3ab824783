"""Benchmark quiv's durable and shared modes: real OS processes on one PostgreSQL database.

Usage (from the repository root)::

    python bench/shared.py                 # full run (~10 min): bench/results/shared.json + shared.md
    python bench/shared.py --quick         # failover with heartbeat 1 s / dead 5 s only (~5 min)
    python bench/shared.py --smoke         # CI: one process, a handful of claims, ~10 s; exit 1 on failure
    python bench/shared.py --only claims,pgbench --out bench/results/tmp/shared.json

The server comes from ``--server``, else ``QUIV_TEST_DATABASE_URL``, else
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``: any database the
user may ``CREATE DATABASE`` from. Every measurement gets a database of its
own, created before and dropped (``WITH (FORCE)``) after.

What is measured (each section is described in docs/benchmarks.md):

``claims``
    N processes (1, 2, 4) declare the same 200 no-op tasks (``interval=0.001``,
    ``fixed_interval=False``, pool 10 each); after a 2 s warm-up, the job rows
    created in a 10 s window (database clock) divided by the window. One more
    run with 1 process and ``fixed_interval=True`` shows the cost of recording
    the slots a tiny fixed interval cannot keep up with (``missed`` rows).
``pgbench``
    The raw claim statement (SKIP LOCKED select + advance + job insert ON
    CONFLICT DO NOTHING, one statement, LIMIT 1) on quiv's own tables, driven
    by ``pgbench`` at 1, 2, 4 and 8 clients: our own reference in the same run.
``profile``
    One process of the ``claims`` case with every statement timed on the
    client (SQLAlchemy cursor events) and the claim / end transactions timed
    whole: where a job's database time goes.
``failover``
    3 processes declare ``tick`` (every 1 s, no-op) and ``long`` (every 1 s,
    runs until stopped). (a) kill -9 of a process not running ``long``, right
    after a ``tick`` ran: lateness of the next ``tick`` (start minus due).
    (b) kill -9 of the process running ``long``: seconds from the kill until
    the job is ``abandoned`` and until the next ``long`` job starts. Each kill
    is followed by a replacement process. Heartbeat 1 s / dead 5 s (always)
    and the defaults 5 s / 30 s (full run only).
``duplicates``
    4 processes, 100 tasks every 0.1 s, until the job table holds >= 10,000
    slots; every handler writes an audit row in a table with no unique key;
    duplicated (task, slot) pairs counted in both.
``single``
    One process: jobs/s (50 no-op tasks at ``interval=0.001``,
    ``fixed_interval=False``, 10 s window) and lateness of a 0.1 s task
    (handler entry minus its slot, ~100 runs), on the default temporary
    SQLite store, a ``sqlite:///`` file and PostgreSQL.

Exit status: 0 when every section produced its figures (a missed target does
not change it), 1 when a section failed (or a smoke check failed), 2 when the
server cannot be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SECTIONS = ("claims", "pgbench", "profile", "failover", "duplicates", "single")
#: What the issue measured with pgbench on this kind of machine (claims/s by clients).
ISSUE_PGBENCH = {1: 2600.0, 4: 2900.0, 8: 3500.0}
READY, RESULT = "READY ", "RESULT "

T = TypeVar("T")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def poll(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.02) -> T:
    """Call ``check`` until it returns something truthy; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100)."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (from /proc); 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    total = sum(values[:8])
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


class Meter:
    """CPU of the quiv processes and of the machine, and the database's counters, over a window."""

    FIELDS = ("xact_commit", "xact_rollback", "sessions", "tup_inserted", "tup_updated", "tup_fetched")

    def __init__(self, db: Database, pids: Sequence[int]) -> None:
        self.db, self.pids = db, list(pids)
        self.start = self._sample()

    def _sample(self) -> tuple[float, tuple[float, float], dict[str, int]]:
        row = self.db.rows(
            f"SELECT {', '.join(self.FIELDS)} FROM pg_stat_database WHERE datname = current_database()"
        )[0]
        return sum(process_cpu(p) for p in self.pids), machine_cpu(), dict(zip(self.FIELDS, row, strict=True))

    def stop(self, per: float) -> dict[str, float]:
        """Figures per unit of ``per`` (claims, jobs) over the window; the machine's busy share."""
        cpu0, (busy0, total0), db0 = self.start
        cpu1, (busy1, total1), db1 = self._sample()
        per = max(per, 1.0)
        out = {
            "client_cpu_ms_per_claim": (cpu1 - cpu0) * 1000 / per,
            "machine_busy_share": (busy1 - busy0) / max(1e-9, total1 - total0),
        }
        for name in self.FIELDS:
            out[f"db_{name}_per_claim"] = (db1[name] - db0[name]) / per
        return out


def wait_idle(limit: float, busy_below: float = 0.3, sample: float = 2.0) -> dict[str, Any]:
    """Wait (at most ``limit`` s) until the CPUs are busy less than ``busy_below`` over ``sample`` s.

    Other work on the machine (a test suite) would be measured with us: this
    waits it out when it can, and says how busy the machine was when it could not.
    """
    t0 = time.monotonic()
    while True:
        busy0, total0 = machine_cpu()
        time.sleep(sample)  # a CPU sample is a wall-clock window on purpose
        busy1, total1 = machine_cpu()
        share = (busy1 - busy0) / max(1e-9, total1 - total0)
        waited = time.monotonic() - t0
        if share < busy_below or waited >= limit:
            return {"waited_s": waited, "busy_share": share, "idle": share < busy_below}


# =========================================================================== the database


class Database:
    """One PostgreSQL database: its quiv URL and a connection for checks (autocommit)."""

    def __init__(self, url: str, conninfo: str) -> None:
        import psycopg

        self.url = url
        self.conninfo = conninfo
        self.conn = psycopg.connect(conninfo, autocommit=True)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, params)

    def now(self) -> float:
        """The database's clock: the one quiv compares due times with."""
        return float(self.value("SELECT extract(epoch FROM clock_timestamp())::float8"))

    def has_jobs_table(self) -> bool:
        return bool(self.value("SELECT to_regclass('quiv_jobs') IS NOT NULL"))

    def close(self) -> None:
        self.conn.close()


class Server:
    """The PostgreSQL server: creates and drops a database per measurement."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        self.url = make_url(url)
        if self.url.get_backend_name() != "postgresql":
            raise SystemExit(f"--server must be a postgresql URL, got {self.url.render_as_string()}")

    def conninfo(self, database: str | None = None) -> str:
        url = self.url.set(drivername="postgresql")
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)

    def admin(self, sql: str) -> Any:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql)
            row = cursor.fetchone() if cursor.description is not None else None
            return None if row is None else row[0]

    def version(self) -> str:
        return str(self.admin("SELECT version()"))

    @contextlib.contextmanager
    def database(self, label: str) -> Iterator[Database]:
        name = f"quiv_bench_{label}_{uuid.uuid4().hex[:8]}"
        self.admin(f'CREATE DATABASE "{name}"')
        db: Database | None = None
        try:
            url = self.url.set(drivername="postgresql+psycopg", database=name)
            db = Database(url.render_as_string(hide_password=False), self.conninfo(name))
            yield db
        finally:
            if db is not None:
                db.close()
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def pgbench_args(self, database: str) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.url.password:
            env["PGPASSWORD"] = str(self.url.password)
        args = ["-h", self.url.host or "127.0.0.1", "-p", str(self.url.port or 5432)]
        if self.url.username:
            args += ["-U", self.url.username]
        return [*args, database], env


# =========================================================================== child processes


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "QUIV_DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Process:
    """One quiv process (``shared.py --child SPEC``): ``READY`` when started, ``RESULT`` when done."""

    def __init__(self, spec: dict[str, Any], logdir: Path, label: str) -> None:
        self.label = label
        self.log_path = logdir / f"{label}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=REPO,
            env=_child_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.info: dict[str, Any] = {}
        threading.Thread(target=self._read, name=f"read-{label}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, mark: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.label}: no {mark.strip()} within {timeout:g} s") from None
            if line is None:
                raise RuntimeError(
                    f"{self.label} exited {self.proc.wait()} before {mark.strip()}:\n{self.log_tail()}"
                )
            if line.startswith(mark):
                out: dict[str, Any] = json.loads(line[len(mark) :])
                return out

    def ready(self, timeout: float = 60.0) -> Process:
        self.info = self.expect(READY, timeout)
        return self

    @property
    def worker_id(self) -> str:
        return str(self.info.get("worker_id"))

    def finish(self, timeout: float = 60.0) -> dict[str, Any]:
        """Close stdin (the child shuts quiv down) and return its RESULT."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            return self.expect(RESULT, timeout)
        finally:
            self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, BrokenPipeError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextlib.contextmanager
def processes(specs: Sequence[dict[str, Any]], logdir: Path, label: str) -> Iterator[list[Process]]:
    """Start one process per spec, wait until each is READY; stop them all on the way out."""
    started: list[Process] = []
    try:
        for i, spec in enumerate(specs):
            started.append(Process(spec, logdir, f"{label}-{i}"))
        for proc in started:
            proc.ready()
        yield started
    finally:
        for proc in started:
            proc.stop()


def serve_spec(
    url: str,
    tasks: list[dict[str, Any]],
    *,
    pool_size: int = 10,
    heartbeat: float = 5.0,
    dead_after: float = 30.0,
    poll_seconds: float = 2.0,
    profile: bool = False,
) -> dict[str, Any]:
    return {
        "role": "serve",
        "url": url,
        "tasks": tasks,
        "pool_size": pool_size,
        "heartbeat": heartbeat,
        "dead_after": dead_after,
        "poll": poll_seconds,
        "profile": profile,
    }


def task_group(
    prefix: str, count: int, interval: float, kind: str, fixed: bool = True
) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix}-{i:04d}", "interval": interval, "kind": kind, "fixed": fixed}
        for i in range(count)
    ]


# =========================================================================== 1. claims


def measure_claims(
    server: Server, logdir: Path, procs: int, *, tasks: int, warmup: float, window: float, fixed: bool = False
) -> dict[str, Any]:
    """Job rows created per second (database clock) with ``procs`` processes sharing ``tasks`` due tasks."""
    with server.database(f"claims{procs}") as db:
        spec = serve_spec(db.url, task_group("t", tasks, 0.001, "noop", fixed=fixed))
        with processes([spec] * procs, logdir, f"claims{procs}") as started:
            time.sleep(warmup)  # wall-clock warm-up on purpose
            meter = Meter(db, [p.proc.pid for p in started])
            t0 = db.now()
            time.sleep(window)  # the measured window, wall-clock on purpose
            t1 = db.now()
            runs = db.rows(
                "SELECT worker, count(*) FROM quiv_jobs WHERE status <> 'missed' "
                "AND started_at >= %s AND started_at < %s GROUP BY worker",
                (t0, t1),
            )
            missed = db.value(
                "SELECT count(*) FROM quiv_jobs WHERE status = 'missed' "
                "AND started_at >= %s AND started_at < %s",
                (t0, t1),
            )
            total = sum(int(n) for _, n in runs)
            costs = meter.stop(total)
            for proc in started:
                proc.finish()
    elapsed = t1 - t0
    return {
        **costs,
        "processes": procs,
        "tasks": tasks,
        "fixed_interval": fixed,
        "window_s": elapsed,
        "claims": total,
        "claims_per_s": total / elapsed,
        "missed_rows_per_s": int(missed or 0) / elapsed,
        "per_process_claims_per_s": sorted((int(n) / elapsed for _, n in runs), reverse=True),
    }


# =========================================================================== pgbench

CLAIM_SQL = """\
WITH c AS (
  SELECT id, task_name, next_run_at FROM quiv_tasks
  WHERE running_job IS NULL AND status <> 'paused'
    AND next_run_at <= extract(epoch FROM clock_timestamp())
  ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED
), u AS (
  UPDATE quiv_tasks t SET next_run_at = extract(epoch FROM clock_timestamp()) + 0.001
  FROM c WHERE t.id = c.id RETURNING c.id, c.task_name, c.next_run_at
)
INSERT INTO quiv_jobs (id, task_id, task_name, status, started_at, attempt, scheduled_for, worker,
                       cancel_requested)
SELECT gen_random_uuid()::text, id, task_name, 'completed', extract(epoch FROM clock_timestamp()), 1,
       next_run_at, 'pgbench', false FROM u
ON CONFLICT (task_id, scheduled_for) DO NOTHING;
"""


def measure_pgbench(
    server: Server, logdir: Path, clients: Sequence[int], *, tasks: int, seconds: float
) -> dict[str, Any]:
    """The raw claim statement on quiv's own tables (made by quiv), driven by pgbench."""
    binary = shutil.which("pgbench")
    if binary is None:
        return {"skipped": "pgbench is not on PATH (it comes with postgresql-client)"}
    script = logdir / "claim.sql"
    script.write_text(CLAIM_SQL.replace("\n", " ").strip() + "\n")
    out: dict[str, Any] = {"script": CLAIM_SQL, "tasks": tasks, "seconds": seconds, "runs": []}
    with server.database("pgbench") as db:
        # quiv creates its tables and the 200 task rows, then leaves (no worker runs them).
        Process(
            {"role": "declare", "url": db.url, "tasks": task_group("t", tasks, 0.001, "noop", False)},
            logdir,
            "pgbench-declare",
        ).finish()
        db.execute("VACUUM ANALYZE quiv_tasks")
        args, env = server.pgbench_args(db.conninfo.rsplit("/", 1)[-1])
        for n in clients:
            before = int(db.value("SELECT count(*) FROM quiv_jobs"))
            proc = subprocess.run(
                [binary, "-n", "-f", str(script), "-c", str(n), "-j", str(n), "-T", str(int(seconds)), *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=seconds + 60,
            )
            rows = int(db.value("SELECT count(*) FROM quiv_jobs")) - before
            match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", proc.stdout)
            if proc.returncode != 0 or match is None:
                raise RuntimeError(
                    f"pgbench failed ({proc.returncode}):\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
                )
            out["runs"].append(
                {"clients": n, "tps": float(match.group(1)), "rows": rows, "rows_per_s": rows / seconds}
            )
        out["version"] = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    return out


# =========================================================================== profile


def measure_profile(
    server: Server, logdir: Path, *, tasks: int, warmup: float, window: float
) -> dict[str, Any]:
    """One process of the claims case with its statements and transactions timed on the client."""
    with server.database("profile") as db:
        spec = serve_spec(db.url, task_group("t", tasks, 0.001, "noop", fixed=False), profile=True)
        proc = Process(spec, logdir, "profile").ready()
        try:
            time.sleep(warmup)
            proc.proc.send_signal(signal.SIGUSR1)  # reset the counters: the window starts now
            time.sleep(window)
            result = proc.finish()
        finally:
            proc.stop()
    return dict(result["profile"])


# =========================================================================== 2. failover


@dataclass
class Fleet:
    """The failover processes, replaced one for one as they are killed."""

    db: Database
    spec: dict[str, Any]
    logdir: Path
    label: str
    procs: list[Process] = field(default_factory=list)
    spawned: int = 0

    def spawn(self) -> Process:
        self.spawned += 1
        proc = Process(self.spec, self.logdir, f"{self.label}-{self.spawned}").ready()
        self.procs.append(proc)
        return proc

    def by_worker(self, worker: str) -> Process | None:
        for proc in self.procs:
            if proc.worker_id == worker:
                return proc
        # A process that was presumed dead carries on under a new id: find it by pid.
        pid = self.db.value("SELECT pid FROM quiv_workers WHERE id = %s", (worker,))
        return next((p for p in self.procs if p.proc.pid == pid), None)

    def kill(self, proc: Process) -> float:
        """kill -9 ``proc``; return the database time just before the signal."""
        self.procs.remove(proc)
        at = self.db.now()
        proc.kill9()
        return at

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()


def running_long(db: Database) -> tuple[str, str, float] | None:
    row = db.rows(
        "SELECT id, worker, started_at FROM quiv_jobs WHERE task_name = 'long' AND status = 'running' "
        "ORDER BY started_at DESC LIMIT 1"
    )
    return None if not row else (str(row[0][0]), str(row[0][1]), float(row[0][2]))


def measure_failover(
    server: Server, logdir: Path, *, heartbeat: float, dead_after: float, kills: int, procs: int = 3
) -> dict[str, Any]:
    tasks = [
        {"name": "tick", "interval": 1.0, "kind": "noop", "fixed": True},
        {"name": "long", "interval": 1.0, "kind": "long", "fixed": True},
    ]
    a_rows: list[dict[str, Any]] = []
    b_rows: list[dict[str, Any]] = []
    wait = dead_after * 3 + 30
    with server.database(f"failover{int(dead_after)}") as db:
        spec = serve_spec(db.url, tasks, heartbeat=heartbeat, dead_after=dead_after)
        fleet = Fleet(db, spec, logdir, f"failover{int(dead_after)}")
        try:
            for _ in range(procs):
                fleet.spawn()
            # (a) kill a process that is not running `long`, right after a `tick` ran.
            for _ in range(kills):
                _, long_worker, _ = poll(lambda: running_long(db), wait, "a running `long` job")
                since = db.now()
                ran = poll(
                    lambda since=since: db.rows(  # type: ignore[misc]
                        "SELECT worker FROM quiv_jobs WHERE task_name = 'tick' AND status = 'completed' "
                        "AND ended_at > %s ORDER BY ended_at DESC LIMIT 1",
                        (since,),
                    ),
                    10,
                    "a `tick` run",
                )
                tick_worker = str(ran[0][0])
                victims = [p for p in fleet.procs if p.worker_id != long_worker]
                # Prefer the process that ran the last tick: it is not running it now.
                victim = next((p for p in victims if p.worker_id == tick_worker), victims[0])
                killed_at = fleet.kill(victim)
                nxt = poll(
                    lambda killed_at=killed_at: db.rows(  # type: ignore[misc]
                        "SELECT scheduled_for, started_at, worker FROM quiv_jobs WHERE task_name = 'tick' "
                        "AND status <> 'missed' AND scheduled_for > %s ORDER BY scheduled_for LIMIT 1",
                        (killed_at,),
                    ),
                    wait,
                    "the next `tick` after a kill",
                )
                due, started, worker = float(nxt[0][0]), float(nxt[0][1]), str(nxt[0][2])
                missed = db.value(
                    "SELECT count(*) FROM quiv_jobs WHERE task_name = 'tick' AND status = 'missed' "
                    "AND scheduled_for > %s AND scheduled_for < %s",
                    (killed_at, due),
                )
                a_rows.append(
                    {
                        "lateness_s": started - due,
                        "due_after_kill_s": due - killed_at,
                        "missed_slots_between": int(missed),
                        "ran_on_survivor": worker != victim.worker_id,
                        "victim_ran_last_tick": victim.worker_id == tick_worker,
                    }
                )
                fleet.spawn()
            # (b) kill the process running `long`.
            for _ in range(kills):
                job_id, worker, _ = poll(lambda: running_long(db), wait, "a running `long` job")
                victim_or_none = fleet.by_worker(worker)
                if victim_or_none is None:
                    raise RuntimeError(f"no live process is worker {worker} running `long`")
                killed_at = fleet.kill(victim_or_none)
                ended = poll(
                    lambda job_id=job_id: db.rows(  # type: ignore[misc]
                        "SELECT ended_at FROM quiv_jobs WHERE id = %s AND status = 'abandoned'", (job_id,)
                    ),
                    wait,
                    "the killed `long` job marked abandoned",
                )
                nxt = poll(
                    lambda killed_at=killed_at: db.rows(  # type: ignore[misc]
                        "SELECT started_at, scheduled_for FROM quiv_jobs WHERE task_name = 'long' "
                        "AND status <> 'missed' AND started_at > %s ORDER BY started_at LIMIT 1",
                        (killed_at,),
                    ),
                    wait,
                    "the next `long` job after a kill",
                )
                b_rows.append(
                    {
                        "abandoned_after_s": float(ended[0][0]) - killed_at,
                        "next_run_after_s": float(nxt[0][0]) - killed_at,
                        "next_run_lateness_s": float(nxt[0][0]) - float(nxt[0][1]),
                    }
                )
                fleet.spawn()
            baseline = [
                float(r[0])
                for r in db.rows(
                    "SELECT started_at - scheduled_for FROM quiv_jobs WHERE task_name = 'tick' "
                    "AND status = 'completed'"
                )
            ]
        finally:
            fleet.close()
    a_late = [r["lateness_s"] for r in a_rows]
    b_aband = [r["abandoned_after_s"] for r in b_rows]
    b_next = [r["next_run_after_s"] for r in b_rows]
    return {
        "heartbeat_s": heartbeat,
        "dead_after_s": dead_after,
        "processes": procs,
        "kills_each": kills,
        "a_median_lateness_s": median(a_late),
        "a_max_lateness_s": max(a_late, default=math.nan),
        "b_median_abandoned_s": median(b_aband),
        "b_max_abandoned_s": max(b_aband, default=math.nan),
        "b_median_next_run_s": median(b_next),
        "b_max_next_run_s": max(b_next, default=math.nan),
        "tick_lateness_all_median_s": median(baseline),
        "tick_lateness_all_p99_s": percentile(baseline, 99),
        "a": a_rows,
        "b": b_rows,
    }


# =========================================================================== 3. duplicates

AUDIT_DDL = (
    "CREATE TABLE bench_audit (job_id text, task_id text, scheduled_for float8, pid int, "
    "at float8 DEFAULT extract(epoch FROM clock_timestamp()))"
)


def measure_duplicates(
    server: Server,
    logdir: Path,
    *,
    procs: int,
    tasks: int,
    interval: float,
    fixed: bool,
    slots: int,
    runs: int,
    run_s: float,
    max_s: float = 300.0,
) -> dict[str, Any]:
    """Run until the job table holds ``slots`` rows and the audit table ``runs`` rows (``run_s`` at least)."""
    with server.database("dups") as db:
        db.execute(AUDIT_DDL)
        spec = serve_spec(db.url, task_group("d", tasks, interval, "audit", fixed=fixed))
        with processes([spec] * procs, logdir, "dups") as started:
            t0 = time.monotonic()
            time.sleep(run_s)  # the shortest run, wall-clock on purpose
            poll(
                lambda: (
                    int(db.value("SELECT count(*) FROM quiv_jobs")) >= slots
                    and int(db.value("SELECT count(*) FROM bench_audit")) >= runs
                ),
                max_s - run_s,
                f"{slots} slots in the job table and {runs} runs in the audit table",
                every=0.5,
            )
            ran_s = time.monotonic() - t0
            for proc in started:
                proc.finish()
        counts = dict(db.rows("SELECT status, count(*) FROM quiv_jobs GROUP BY status"))
        job_dups = db.value(
            "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM quiv_jobs "
            "GROUP BY task_id, scheduled_for HAVING count(*) > 1) d"
        )
        audit_dups = db.value(
            "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM bench_audit "
            "GROUP BY task_id, scheduled_for HAVING count(*) > 1) d"
        )
        audit_job_dups = db.value(
            "SELECT count(*) FROM (SELECT job_id FROM bench_audit GROUP BY job_id HAVING count(*) > 1) d"
        )
        audit_rows = int(db.value("SELECT count(*) FROM bench_audit"))
        audit_orphans = int(db.value("SELECT count(*) FROM bench_audit WHERE task_id IS NULL"))
        unaudited = int(
            db.value(
                "SELECT count(*) FROM quiv_jobs j WHERE j.status = 'completed' "
                "AND NOT EXISTS (SELECT 1 FROM bench_audit a WHERE a.job_id = j.id)"
            )
        )
        errors = [
            f"{status}: {n} x {message}"
            for status, message, n in db.rows(
                "SELECT status, left(error_message, 200), count(*) FROM quiv_jobs "
                "WHERE status IN ('failed', 'abandoned') GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5"
            )
        ]
        per_process = [
            int(n) for (n,) in db.rows("SELECT count(*) FROM bench_audit GROUP BY pid ORDER BY count(*) DESC")
        ]
    total = sum(int(n) for n in counts.values())
    return {
        "processes": procs,
        "tasks": tasks,
        "interval_s": interval,
        "fixed_interval": fixed,
        "ran_s": ran_s,
        "slots": total,
        "jobs_by_status": {str(k): int(v) for k, v in counts.items()},
        "audit_rows": audit_rows,
        "duplicate_slots_jobs": int(job_dups),
        "duplicate_slots_audit": int(audit_dups),
        "audit_rows_same_job": int(audit_job_dups),
        "audit_rows_without_job": audit_orphans,
        "completed_without_audit": unaudited,
        "runs_per_process": per_process,
        "failed_or_abandoned": errors,
    }


# =========================================================================== 4. single process


def measure_single(
    server: Server, logdir: Path, *, tasks: int, warmup: float, window: float, samples: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for mode in ("temporary", "sqlite", "postgresql"):
        with contextlib.ExitStack() as stack:
            urls: list[str | None]
            if mode == "postgresql":
                urls = [stack.enter_context(server.database(f"single{i}")).url for i in range(2)]
            elif mode == "sqlite":
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="quiv-bench-")))
                urls = [f"sqlite:///{folder / 'throughput.db'}", f"sqlite:///{folder / 'latency.db'}"]
            else:
                urls = [None, None]
            spec: dict[str, Any] = {
                "role": "single",
                "urls": urls,
                "tasks": tasks,
                "warmup": warmup,
                "window": window,
                "samples": samples,
            }
            proc = Process(spec, logdir, f"single-{mode}")
            try:
                result = proc.expect(RESULT, warmup + window + samples * 0.1 + 120)
            finally:
                proc.stop()
            out.append({"mode": mode, **result})
    return out


# =========================================================================== smoke


def smoke(server: Server, logdir: Path) -> int:
    """One process, 5 tasks every 0.05 s: at least 20 claims, none twice, all recorded as completed."""
    with server.database("smoke") as db:
        spec = serve_spec(db.url, task_group("s", 5, 0.05, "noop"), heartbeat=1, dead_after=5)
        with processes([spec], logdir, "smoke") as (proc,):
            poll(
                lambda: (
                    db.has_jobs_table()
                    and int(db.value("SELECT count(*) FROM quiv_jobs WHERE status = %s", ("completed",)))
                    >= 10
                ),
                30,
                "10 completed jobs",
            )
            proc.finish()
        dups = int(
            db.value(
                "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM quiv_jobs "
                "GROUP BY 1, 2 HAVING count(*) > 1) d"
            )
        )
        counts = dict(db.rows("SELECT status, count(*) FROM quiv_jobs GROUP BY status"))
        workers = int(db.value("SELECT count(*) FROM quiv_workers"))
    problems = []
    if dups:
        problems.append(f"{dups} slot(s) have two jobs")
    if int(counts.get("completed", 0)) < 10:
        problems.append(f"too few completed jobs: {counts}")
    if set(counts) - {"completed", "missed", "cancelled", "running"}:
        problems.append(f"unexpected job statuses after a clean shutdown: {counts}")
    if counts.get("running"):
        # Not a failure of the benchmark: a claim in flight when shutdown() is called is committed
        # after the workers have stopped, so its jobs stay `running` (reported, not gated on here).
        print(f"shared smoke: note: {counts['running']} job(s) left `running` by the shutdown")
    if workers:
        problems.append(f"{workers} worker row(s) left after a clean shutdown")
    print(f"shared smoke: jobs by status {counts}; duplicate slots {dups}; worker rows left {workers}")
    for problem in problems:
        print(f"shared smoke FAILED: {problem}")
    return 1 if problems else 0


# =========================================================================== the report


def fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# quiv durable and shared modes: benchmark results",
        "",
        f"Machine: {meta['date']} · {meta['nproc']} CPUs ({meta['cpu']}) · Python {meta['python']} · "
        f"{meta['postgres']} · load average {meta['loadavg_start'][0]:.2f} at start, "
        f"{meta['loadavg_end'][0]:.2f} at end · quiv at commit {meta['commit']} · mode `{meta['mode']}` · "
        f"run took {meta['run_s'] / 60:.1f} min.",
        "",
    ]
    claims = results.get("claims")
    pgb = results.get("pgbench") or {}
    ours_pg = {r["clients"]: r["rows_per_s"] for r in pgb.get("runs", [])}
    if claims:
        lines += [
            "### Claims per second (200 due tasks, `interval=0.001`, pool 10 per process)",
            "",
            "| processes | quiv claims/s | per process | pgbench, this run (clients = processes) "
            "| pgbench, the issue | target (≥ half the issue's) | |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in claims["runs"]:
            n = row["processes"]
            issue = ISSUE_PGBENCH.get(n)
            if issue is None and n == 2:
                issue = (ISSUE_PGBENCH[1] + ISSUE_PGBENCH[4]) / 2  # between the 1- and 4-client figures
            target = issue / 2 if issue else math.nan
            issue_txt = fmt(issue) + (" (interpolated)" if n == 2 else "") if issue else "-"
            lines.append(
                f"| {n} | {fmt(row['claims_per_s'])} | "
                f"{', '.join(fmt(v) for v in row['per_process_claims_per_s'])} | "
                f"{fmt(ours_pg.get(n, math.nan))} | {issue_txt} | {fmt(target)} | "
                f"{verdict(row['claims_per_s'] >= target) if issue else ''} |"
            )
        extra = claims.get("fixed_interval_run")
        if extra:
            lines += [
                "",
                f"With `fixed_interval=True` (the default), 1 process: {fmt(extra['claims_per_s'])} runs/s, "
                f"plus {fmt(extra['missed_rows_per_s'])} `missed` rows/s recorded for the slots a 1 ms "
                "fixed interval cannot keep up with.",
            ]
        lines.append("")
    if pgb.get("runs"):
        lines += [
            "pgbench on quiv's tables, the raw claim (one statement: SKIP LOCKED select of 1 due row, "
            "advance it, insert the job ON CONFLICT DO NOTHING): "
            + ", ".join(f"{fmt(r['rows_per_s'])} claims/s at {r['clients']} client(s)" for r in pgb["runs"])
            + ".",
            "",
        ]
    elif pgb.get("skipped"):
        lines += [f"pgbench: skipped ({pgb['skipped']}).", ""]
    prof = results.get("profile")
    if prof:
        lines += [
            "### Where a job's database time goes (1 process, the claims case, client-side timing)",
            "",
            f"{fmt(prof['jobs_per_s'])} jobs/s in the window; per job: claim transaction "
            f"{fmt(prof['claim_ms_per_job'], 3)} ms, end transaction {fmt(prof['finish_ms_per_job'], 3)} ms "
            "(each transaction's time divided by the jobs it claimed or ended); "
            f"{fmt(prof['claim_rows_per_tx'], 2)} rows claimed per claim transaction, "
            f"{fmt(prof.get('ends_per_tx', 1.0), 2)} job ends written per end transaction, "
            f"{fmt(prof['empty_claim_share'] * 100, 1)} % of claim transactions claimed nothing.",
            "",
            "| statement | calls per job | ms per call | ms per job | share of statement time |",
            "|---|---|---|---|---|",
        ]
        for st in prof["statements"][:10]:
            lines.append(
                f"| `{st['statement']}` | {fmt(st['calls_per_job'], 2)} | {fmt(st['ms_per_call'], 3)} | "
                f"{fmt(st['ms_per_job'], 3)} | {fmt(st['share'] * 100, 1)} % |"
            )
        lines.append("")
    failover = results.get("failover")
    if failover:
        lines += [
            "### Failover (kill -9; medians over the kills, max in brackets)",
            "",
            "| heartbeat / dead | kills | (a) next `tick` lateness after killing a bystander | target | |"
            " (b) killed `long` job abandoned after | next `long` starts after | target | |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for f in failover:
            limit = f["dead_after_s"] + 5
            lines.append(
                f"| {f['heartbeat_s']:g} s / {f['dead_after_s']:g} s | "
                f"{f['kills_each']} + {f['kills_each']} | "
                f"{fmt(f['a_median_lateness_s'], 3)} s ({fmt(f['a_max_lateness_s'], 3)}) | ≤ 2 s | "
                f"{verdict(f['a_median_lateness_s'] <= 2)} | "
                f"{fmt(f['b_median_abandoned_s'], 2)} s ({fmt(f['b_max_abandoned_s'], 2)}) | "
                f"{fmt(f['b_median_next_run_s'], 2)} s ({fmt(f['b_max_next_run_s'], 2)}) | ≤ {limit:g} s | "
                f"{verdict(f['b_median_next_run_s'] <= limit and f['b_median_abandoned_s'] <= limit)} |"
            )
        lines.append("")
    dups_runs = results.get("duplicates")
    if dups_runs:
        lines += [
            "### Duplicates (4 processes, 100 tasks every 0.1 s)",
            "",
            "| `fixed_interval` | ran | slots (job rows) | runs (audit rows) | missed | "
            "duplicate slots: jobs / audit | same job twice | run without job row | |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for d in dups_runs:
            ok = d["duplicate_slots_jobs"] == 0 and d["duplicate_slots_audit"] == 0
            ok = ok and d["audit_rows_same_job"] == 0 and d["audit_rows_without_job"] == 0
            lines.append(
                f"| {d['fixed_interval']} | {d['ran_s']:.0f} s | {fmt(d['slots'])} | "
                f"{fmt(d['audit_rows'])} | "
                f"{fmt(d['jobs_by_status'].get('missed', 0))} | "
                f"{d['duplicate_slots_jobs']} / {d['duplicate_slots_audit']} | {d['audit_rows_same_job']} | "
                f"{d['audit_rows_without_job']} | {verdict(ok)} |"
            )
        lines += [
            "",
            "Runs per process: "
            + "; ".join(", ".join(fmt(n) for n in d["runs_per_process"]) for d in dups_runs)
            + ". Completed jobs with no audit row: "
            + ", ".join(str(d["completed_without_audit"]) for d in dups_runs)
            + ".",
            "",
        ]
        for d in dups_runs:
            lines.append(
                f"- `fixed_interval={d['fixed_interval']}`: jobs by status after every process shut down "
                f"cleanly: {d['jobs_by_status']}"
                + (
                    f"; failed or abandoned: {'; '.join(d['failed_or_abandoned'])}"
                    if d.get("failed_or_abandoned")
                    else ""
                )
            )
        lines.append("")
    single = results.get("single")
    if single:
        lines += [
            "### One process: the cost of the durable modes",
            "",
            "| store | jobs/s (50 tasks, `interval=0.001`) "
            "| lateness of a 0.1 s task: median | p99 | max | runs |",
            "|---|---|---|---|---|---|",
        ]
        for s in single:
            lines.append(
                f"| {s['mode']} | {fmt(s['jobs_per_s'])} | {fmt(s['lateness_median_ms'], 2)} ms | "
                f"{fmt(s['lateness_p99_ms'], 2)} ms | {fmt(s['lateness_max_ms'], 2)} ms | {s['lateness_n']} |"
            )
        lines.append("")
    load = results.get("load")
    if load:
        lines += [
            "Machine CPU busy (this benchmark included) per section: "
            + "; ".join(
                f"{name} {fig['busy_share_during']:.0%}"
                + (
                    f" (other work before it: {fig['before']['busy_share']:.0%})"
                    if fig.get("before") and not fig["before"]["idle"]
                    else ""
                )
                for name, fig in load.items()
            )
            + ".",
            "",
        ]
    if results.get("errors"):
        lines += ["### Errors", ""]
        lines += [
            f"- {name}: {err.splitlines()[0] if err else ''}" for name, err in results["errors"].items()
        ]
        lines.append("")
    return "\n".join(lines)


def machine_info(mode: str, server: Server) -> dict[str, Any]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "quiv"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    version = server.version()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": " ".join(version.split()[:2]),
        "postgres_version": version,
        "commit": commit + (" + uncommitted changes" if dirty else ""),
        "mode": mode,
        "loadavg_start": list(os.getloadavg()),
    }


# =========================================================================== the driver


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="failover with heartbeat 1 s / dead 5 s only")
    parser.add_argument("--smoke", action="store_true", help="CI: a few seconds, exit 1 on failure")
    parser.add_argument("--out", type=Path, default=None, help="JSON output (the .md goes beside it)")
    parser.add_argument("--server", default=None, help="PostgreSQL URL to create databases from")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--window", type=float, default=10.0, help="measured window of the rate figures, s")
    parser.add_argument("--kills", type=int, default=5, help="kills per failover case (>= 5 for the report)")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=300.0,
        help="before each section, wait up to this many seconds for the CPUs to be < 30%% busy (0: never)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return child(json.loads(args.child))

    url = args.server or os.environ.get("QUIV_TEST_DATABASE_URL", "").strip() or DEFAULT_SERVER
    server = Server(url)
    try:
        server.version()
    except Exception as exc:
        _log(f"cannot reach PostgreSQL at {server.url.render_as_string(hide_password=True)}: {exc}")
        return 2
    logdir = Path(tempfile.mkdtemp(prefix="quiv-bench-shared-"))
    if args.smoke:
        try:
            return smoke(server, logdir)
        except Exception:
            traceback.print_exc()
            _log(_logs(logdir))
            return 1
        finally:
            shutil.rmtree(logdir, ignore_errors=True)

    mode = "quick" if args.quick else "full"
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    started = time.monotonic()
    results: dict[str, Any] = {"meta": machine_info(mode, server), "errors": {}, "load": {}}
    warmup, window = 2.0, args.window

    def section(name: str, run: Callable[[], Any]) -> None:
        if name not in only:
            return
        before = wait_idle(args.wait_idle) if args.wait_idle > 0 else {}
        _log(
            f"[{time.monotonic() - started:6.0f} s] {name} ... "
            + (f"(machine {before['busy_share']:.0%} busy before)" if before else "")
        )
        busy0, total0 = machine_cpu()
        try:
            results[name] = run()
        except Exception:
            results["errors"][name] = traceback.format_exc()
            _log(f"{name} FAILED:\n{results['errors'][name]}\n{_logs(logdir)}")
        busy1, total1 = machine_cpu()
        results["load"][name] = {
            "before": before,
            "busy_share_during": (busy1 - busy0) / max(1e-9, total1 - total0),
            "loadavg_after": list(os.getloadavg()),
        }

    def claims() -> dict[str, Any]:
        runs = [measure_claims(server, logdir, n, tasks=200, warmup=warmup, window=window) for n in (1, 2, 4)]
        for r in runs:
            _log(f"    {r['processes']} process(es): {r['claims_per_s']:,.0f} claims/s")
        fixed = measure_claims(server, logdir, 1, tasks=200, warmup=warmup, window=window, fixed=True)
        _log(
            f"    fixed_interval=True: {fixed['claims_per_s']:,.0f} runs/s, "
            f"{fixed['missed_rows_per_s']:,.0f} missed/s"
        )
        return {"runs": runs, "fixed_interval_run": fixed}

    def failover() -> list[dict[str, Any]]:
        configs = [(1.0, 5.0)] if args.quick else [(1.0, 5.0), (5.0, 30.0)]
        out = []
        for heartbeat, dead in configs:
            f = measure_failover(server, logdir, heartbeat=heartbeat, dead_after=dead, kills=args.kills)
            _log(
                f"    {heartbeat:g}/{dead:g}: (a) {f['a_median_lateness_s']:.3f} s, (b) abandoned "
                f"{f['b_median_abandoned_s']:.2f} s, next {f['b_median_next_run_s']:.2f} s"
            )
            out.append(f)
        return out

    section("claims", claims)
    section("pgbench", lambda: measure_pgbench(server, logdir, (1, 2, 4, 8), tasks=200, seconds=window))
    section("profile", lambda: measure_profile(server, logdir, tasks=200, warmup=warmup, window=window))
    section("failover", failover)
    section(
        "duplicates",
        lambda: [
            # The brief's case: the default fixed interval, >= 10,000 slots (runs or missed).
            measure_duplicates(
                server, logdir, procs=4, tasks=100, interval=0.1, fixed=True, slots=10_000, runs=0, run_s=12.0
            ),
            # >= 10,000 actual runs: every slot is a run when the interval counts from the end.
            measure_duplicates(
                server,
                logdir,
                procs=4,
                tasks=100,
                interval=0.1,
                fixed=False,
                slots=10_000,
                runs=10_000,
                run_s=12.0,
            ),
        ],
    )
    section(
        "single", lambda: measure_single(server, logdir, tasks=50, warmup=warmup, window=window, samples=100)
    )

    results["meta"].update(loadavg_end=list(os.getloadavg()), run_s=time.monotonic() - started)
    out = args.out or (HERE / "results" / ("shared.json" if mode == "full" else "tmp/shared-quick.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str, allow_nan=True))
    report = render(results)
    out.with_suffix(".md").write_text(report + "\n")
    print(report)
    _log(f"wrote {out} and {out.with_suffix('.md')}")
    if not results["errors"]:
        shutil.rmtree(logdir, ignore_errors=True)
        return 0
    _log(f"process logs kept in {logdir}")
    return 1


def _logs(logdir: Path, chars: int = 1500) -> str:
    parts = []
    for path in sorted(logdir.glob("*.log"), key=lambda p: p.stat().st_mtime)[-4:]:
        text = path.read_text(errors="replace").strip()
        if text:
            parts.append(f"--- {path.name}\n{text[-chars:]}")
    return "\n".join(parts)


# =========================================================================== inside a child


def child(spec: dict[str, Any]) -> int:
    """Run one role in this process; print ``READY``/``RESULT`` lines on the real stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # keep library prints off the protocol
    for name in ("quiv", "Quiv"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def say(mark: str, payload: dict[str, Any]) -> None:
        out.write(mark + json.dumps(payload, allow_nan=True) + "\n")
        out.flush()

    role = spec["role"]
    status = 0
    try:
        if role == "serve":
            _child_serve(spec, say)
        elif role == "declare":
            _child_declare(spec, say)
        elif role == "single":
            say(RESULT, _child_single(spec))
        else:
            raise ValueError(f"unknown role {role!r}")
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stderr.flush()
    os._exit(status)  # threads that would not stop must not keep the process alive


def _config(url: str | None, spec: dict[str, Any]) -> Any:
    from quiv import QuivConfig

    return QuivConfig(
        database_url=url,
        pool_size=int(spec.get("pool_size", 10)),
        heartbeat_seconds=float(spec.get("heartbeat", 5.0)),
        dead_after_seconds=float(spec.get("dead_after", 30.0)),
        poll_seconds=float(spec.get("poll", 2.0)),
    )


class _Audit:
    """The handler of the duplicates case: one audit row per run, on one connection per process.

    One connection (behind a lock) rather than one per worker thread: 4
    processes of quiv already hold up to 19 connections each, and PostgreSQL's
    default ``max_connections`` is 100.
    """

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.lock = threading.Lock()
        self.conn: Any = None

    def __call__(self, _job_id: str) -> None:
        import psycopg

        with self.lock:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(self.conninfo, autocommit=True)
            self.conn.execute(
                "INSERT INTO bench_audit (job_id, task_id, scheduled_for, pid) VALUES (%s, "
                "(SELECT task_id FROM quiv_jobs WHERE id = %s), "
                "(SELECT scheduled_for FROM quiv_jobs WHERE id = %s), %s)",
                (_job_id, _job_id, _job_id, os.getpid()),
            )


def noop() -> None:
    """The no-op job."""


def long_job(_stop_event: threading.Event) -> None:
    """A job that runs until it is told to stop (or its process dies)."""
    _stop_event.wait(3600)


def _add_tasks(q: Any, spec: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    handlers: dict[str, Callable[..., Any]] = {"noop": noop, "long": long_job}
    if any(t["kind"] == "audit" for t in spec["tasks"]):
        conninfo = make_url(spec["url"]).set(drivername="postgresql").render_as_string(hide_password=False)
        handlers["audit"] = _Audit(conninfo)
    for t in spec["tasks"]:
        q.add_task(t["name"], handlers[t["kind"]], interval=t["interval"], fixed_interval=t["fixed"])


def _child_declare(spec: dict[str, Any], say: Callable[[str, dict[str, Any]], None]) -> None:
    from quiv import Quiv

    q = Quiv(config=_config(spec["url"], spec))
    _add_tasks(q, spec)
    q.shutdown()
    say(RESULT, {"declared": len(spec["tasks"])})


def _child_serve(spec: dict[str, Any], say: Callable[[str, dict[str, Any]], None]) -> None:
    from quiv import Quiv

    q = Quiv(config=_config(spec["url"], spec))
    _add_tasks(q, spec)
    profiler = _Profiler(q) if spec.get("profile") else None
    q.start()
    say(READY, {"worker_id": q.worker_id, "pid": os.getpid()})
    sys.stdin.read()  # the parent closes stdin to stop us
    result: dict[str, Any] = {}
    if profiler is not None:
        result["profile"] = profiler.report()
    q.shutdown(timeout=5)
    say(RESULT, result)


class _Profiler:
    """Client-side timing of every statement and of the claim and end transactions (SIGUSR1 resets)."""

    def __init__(self, q: Any) -> None:
        from sqlalchemy import event

        store = q._durable.store
        self.lock = threading.Lock()
        self.reset()
        event.listen(store.engine, "before_cursor_execute", self._before)
        event.listen(store.engine, "after_cursor_execute", self._after)
        event.listen(store.engine, "connect", self._connected)
        dialect = store.engine.dialect
        ping = dialect.do_ping

        def timed_ping(dbapi_connection: Any) -> bool:
            t0 = time.perf_counter()
            try:
                return bool(ping(dbapi_connection))
            finally:
                self._count("(pool_pre_ping: SELECT 1 on every checkout)", time.perf_counter() - t0)

        dialect.do_ping = timed_ping
        # The claim's and end's statements go straight through psycopg (quiv._durable.pgfast).
        from quiv._durable import pgfast

        run = pgfast._run

        def timed_run(conn: Any, statement: str, params: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return run(conn, statement, params, **kwargs)
            finally:
                self._count(self._key(statement), time.perf_counter() - t0)

        pgfast._run = timed_run
        for name in ("claim", "finish_many"):
            setattr(store, name, self._timed(name, getattr(store, name)))
        signal.signal(signal.SIGUSR1, lambda *_: self.reset())

    def reset(self) -> None:
        with self.lock:
            self.started = time.perf_counter()
            self.statements: dict[str, list[float]] = {}
            self.tx: dict[str, list[float]] = {"claim": [0, 0.0], "finish_many": [0, 0.0]}
            self.claimed = 0
            self.ended = 0
            self.empty_claims = 0
            self.connects = 0
            self.cpu = time.process_time()

    @staticmethod
    def _key(statement: str) -> str:
        text = " ".join(statement.split())
        text = re.sub(r"\(__\[POSTCOMPILE_[^\]]*\]\)", "(...)", text)
        text = re.sub(r"%\(\w+\)s", "?", text)
        text = re.sub(r"SELECT quiv_tasks\.id, .*? FROM", "SELECT quiv_tasks.* FROM", text)
        text = re.sub(r"SET task_name=.*? WHERE", "SET <all columns> WHERE", text)
        text = re.sub(r"\(id, task_id, .*?\) VALUES \(.*?\)", "(...) VALUES (...)", text)
        text = re.sub(r"IN \((\?, )+\?\)", "IN (...)", text)
        return text[:150]

    def _before(self, conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
        conn.info.setdefault("bench_t0", []).append(time.perf_counter())

    def _after(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self._count(self._key(statement), time.perf_counter() - conn.info["bench_t0"].pop())

    def _count(self, key: str, elapsed: float) -> None:
        with self.lock:
            entry = self.statements.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += elapsed

    def _connected(self, *_args: Any) -> None:
        with self.lock:
            self.connects += 1

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            elapsed = time.perf_counter() - t0
            with self.lock:
                self.tx[name][0] += 1
                self.tx[name][1] += elapsed
                if name == "claim":
                    self.claimed += len(result.started)
                    self.empty_claims += not result.started
                else:
                    self.ended += len(result)
            return result

        return wrapper

    def report(self) -> dict[str, Any]:
        with self.lock:
            window = time.perf_counter() - self.started
            jobs = max(1, self.claimed)
            total = sum(t for _, t in self.statements.values()) or 1.0
            rows: list[dict[str, Any]] = [
                {
                    "statement": key,
                    "calls": calls,
                    "calls_per_job": calls / jobs,
                    "ms_per_call": spent * 1000 / max(1, calls),
                    "ms_per_job": spent * 1000 / jobs,
                    "share": spent / total,
                }
                for key, (calls, spent) in self.statements.items()
            ]
            statements = sorted(rows, key=lambda s: -float(s["ms_per_job"]))
            claims, claim_s = self.tx["claim"]
            finishes, finish_s = self.tx["finish_many"]
            return {
                "window_s": window,
                "jobs": self.claimed,
                "jobs_per_s": self.claimed / window,
                "claim_transactions": claims,
                "claim_ms_per_tx": claim_s * 1000 / max(1, claims),
                "claim_ms_per_job": claim_s * 1000 / jobs,
                "finish_ms_per_job": finish_s * 1000 / max(1, self.ended),
                "finish_ms_per_tx": finish_s * 1000 / max(1, finishes),
                "ends_per_tx": self.ended / max(1, finishes),
                "claim_rows_per_tx": self.claimed / max(1, claims),
                "empty_claim_share": self.empty_claims / max(1, claims),
                "statement_ms_per_job": total * 1000 / jobs,
                "new_connections_per_s": self.connects / window,
                "process_cpu_ms_per_job": (time.process_time() - self.cpu) * 1000 / jobs,
                "statements": statements,
            }


def _child_single(spec: dict[str, Any]) -> dict[str, Any]:
    """Jobs/s of ``tasks`` no-op tasks, then the lateness of one 0.1 s task, in one store."""
    from quiv import Quiv

    throughput_url, latency_url = spec["urls"]
    count = [0]
    lock = threading.Lock()

    def counted() -> None:
        with lock:
            count[0] += 1

    q = Quiv(config=_config(throughput_url, spec))
    for i in range(int(spec["tasks"])):
        q.add_task(f"n-{i:03d}", counted, interval=0.001, fixed_interval=False)
    q.start()
    time.sleep(float(spec["warmup"]))  # wall-clock warm-up on purpose
    with lock:
        c0, t0 = count[0], time.perf_counter()
    time.sleep(float(spec["window"]))  # the measured window, wall-clock on purpose
    with lock:
        c1, t1 = count[0], time.perf_counter()
    q.shutdown(timeout=5)

    entries: dict[str, float] = {}
    samples = int(spec["samples"])
    done = threading.Event()

    def record(_job_id: str) -> None:
        entries[_job_id] = time.time()
        if len(entries) > samples:
            done.set()

    q = Quiv(config=_config(latency_url, spec))
    task_id = q.add_task("latency", record, interval=0.1)
    q.start()
    if not done.wait(samples * 0.1 * 3 + 30):
        raise TimeoutError(f"only {len(entries)} runs of the 0.1 s task")
    jobs = {job.id: job for job in q.get_all_jobs(task_id=task_id)}
    q.shutdown(timeout=5)
    # The first run's slot is its start: drop it, keep ``samples`` runs in the steady state.
    ordered = sorted(
        (
            (job.scheduled_for.timestamp(), jid)
            for jid, job in jobs.items()
            if jid in entries and job.scheduled_for
        ),
    )
    lateness = [(entries[jid] - due) * 1000 for due, jid in ordered[1:]]
    return {
        "jobs_per_s": (c1 - c0) / (t1 - t0),
        "tasks": int(spec["tasks"]),
        "window_s": t1 - t0,
        "lateness_n": len(lateness),
        "lateness_median_ms": median(lateness),
        "lateness_p99_ms": percentile(lateness, 99),
        "lateness_max_ms": max(lateness, default=math.nan),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
