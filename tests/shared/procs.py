"""A quiv worker process for the real-process tests, and the code the tests use to drive it.

Run as ``python tests/shared/procs.py DATABASE_URL CONFIG_JSON`` (with quiv importable). The process
builds ``Quiv(config=QuivConfig(database_url=..., **config["quiv"]))`` (with a
clock shifted by ``config["skew"]`` seconds, if any), declares the tasks of
``config["tasks"]``, starts, and prints one JSON line ``{"ready": worker_id,
"pid": ...}`` on stdout. Every job writes a row to the ``audit`` table (which
has no unique key, so a slot run twice shows as two rows) through its own
psycopg connection, then optionally holds for a while. Job events are printed
as JSON lines; commands read from stdin (one JSON object a line: ``pause``,
``resume``, ``pause_all``, ``cancel``, ``run_now``) are carried out and
answered on stdout. SIGTERM or the end of stdin shuts the scheduler down.
Logging goes to stderr, so tests can count the warnings a process wrote.

The test side: :class:`Proc` (one started process), :class:`Cluster`
(the processes of one test, killed if still alive when the test ends) and a
few helpers that read the database and wait on its state with a deadline.
"""

from __future__ import annotations

import contextlib
import faulthandler
import itertools
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import psycopg

__all__ = [
    "AUDIT_TABLE",
    "Cluster",
    "Proc",
    "assert_exactly_once",
    "audit_duplicates",
    "db_now",
    "query",
    "slot_holes",
    "unexplained_misses",
    "wait_until",
]

#: Created in each test's database by :meth:`Cluster.create_audit`; no unique key on purpose.
AUDIT_TABLE = """
CREATE TABLE audit (
    task text NOT NULL,
    scheduled_for double precision NOT NULL,
    job_id text NOT NULL,
    worker text NOT NULL,
    pid integer NOT NULL,
    at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp())
)
"""
REPO = Path(__file__).resolve().parents[2]
#: A harness process exits by itself after this long, should a test leave it behind.
MAX_LIFETIME_SECONDS = 240.0

T = TypeVar("T")


# ---------------------------------------------------------------------------------------- the process
def _conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class _Out:
    """Thread-safe JSON lines on stdout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, **message: Any) -> None:
        line = json.dumps(message, default=str)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class _Auditor:
    """Writes audit rows, one autocommit connection per worker thread, retrying through outages."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._local = threading.local()

    def write(self, task: str, scheduled_for: float, job_id: str, worker: str) -> None:
        deadline = time.monotonic() + 60.0
        while True:
            conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
                    self._local.conn = conn
                # A retry after a lost answer must not look like a second run: one row per job id
                # (a slot run by two jobs still shows twice).
                conn.execute(
                    "INSERT INTO audit (task, scheduled_for, job_id, worker, pid) "
                    "SELECT %s, %s, %s, %s, %s WHERE NOT EXISTS (SELECT 1 FROM audit WHERE job_id = %s)",
                    (task, scheduled_for, job_id, worker, os.getpid(), job_id),
                )
                return
            except psycopg.OperationalError:
                # The database went away (a test cuts it off on purpose): try again until it is back.
                if conn is not None:
                    conn.close()
                self._local.conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


class _Clock:
    """The system clock shifted by a fixed number of seconds (a process whose clock is wrong)."""

    def __init__(self, skew: float) -> None:
        from quiv import SystemClock

        class Skewed(SystemClock):
            def now(self) -> datetime:
                return super().now() + timedelta(seconds=skew)

            def timestamp(self) -> float:
                return super().timestamp() + skew

        self.clock = Skewed()


def _read_job(scheduler: Any, job_id: str) -> Any:
    """The job's row, read again through an outage (so a failed read does not fail the job)."""
    from quiv import DatabaseError

    deadline = time.monotonic() + 30.0
    while True:
        try:
            return scheduler.get_job(job_id)
        except DatabaseError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _handler(
    scheduler: Any, auditor: _Auditor, name: str, hold: float
) -> Callable[[str, threading.Event], None]:
    def run(_job_id: str, _stop_event: threading.Event) -> None:
        job = _read_job(scheduler, _job_id)
        auditor.write(name, job.scheduled_for.timestamp(), _job_id, job.worker)
        if hold > 0:
            _stop_event.wait(hold)

    run.__name__ = f"task_{name}"
    return run


def main(argv: Sequence[str]) -> int:
    """Run one worker process until SIGTERM or the end of stdin."""
    from quiv import Event, Quiv, QuivConfig

    url, config = argv[0], json.loads(argv[1])
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s pid=%(process)d %(threadName)s %(levelname)s %(name)s: %(message)s",
    )
    out = _Out()
    # The SIGTERM handler only flips a flag: a handler that set a threading.Event could run while
    # the main thread holds that Event's (non-reentrant) lock, after an earlier signal woke it up,
    # and wait for itself for ever. The main thread looks at the flag a few times a second.
    terminated: list[int] = []
    stop = threading.Event()  # set by the stdin reader when the test goes away
    signal.signal(signal.SIGTERM, lambda sig, _frame: terminated.append(sig))
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks when a stop hangs

    skew = float(config.get("skew", 0.0))
    clock = _Clock(skew).clock if skew else None
    scheduler = Quiv(config=QuivConfig(database_url=url, **config.get("quiv", {})), clock=clock)
    auditor = _Auditor(_conninfo(url))

    def on_job(event: Event, task: Any, job: Any) -> None:
        out(event=event.value, job=job.id, task=task.task_name, status=job.status.value, worker=job.worker)

    for event in (Event.JOB_MISSED, Event.JOB_FAILED, Event.JOB_CANCELLED):
        scheduler.add_listener(event, on_job)

    for spec in config.get("tasks", []):
        options = {k: v for k, v in spec.items() if k not in ("name", "hold")}
        handler = _handler(scheduler, auditor, spec["name"], float(spec.get("hold", 0.0)))
        scheduler.add_task(spec["name"], handler, **options)

    def task_id(name: str) -> str:
        for task in scheduler.get_all_tasks(include_run_once=True):
            if task.task_name == name:
                return str(task.id)
        raise KeyError(name)

    def command(line: str) -> None:
        request = json.loads(line)
        op = request["op"]
        try:
            result: Any = None
            if op == "pause":
                scheduler.pause_task(task_id(request["task"]))
            elif op == "resume":
                scheduler.resume_task(task_id(request["task"]))
            elif op == "pause_all":
                for task in scheduler.get_all_tasks(include_run_once=True):
                    scheduler.pause_task(task.id)
            elif op == "run_now":
                scheduler.run_task_immediately(task_id(request["task"]))
            elif op == "cancel":
                result = scheduler.cancel_job(request["job"])
            else:
                raise ValueError(f"unknown command {op!r}")
            out(reply=op, ok=True, result=result)
        except Exception as exc:
            out(reply=op, ok=False, error=repr(exc))

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip():
                command(line)
        stop.set()  # the test went away

    scheduler.start()
    threading.Thread(target=read_commands, name="commands", daemon=True).start()
    out(ready=scheduler.worker_id, pid=os.getpid())
    give_up = time.monotonic() + MAX_LIFETIME_SECONDS
    while not terminated and not stop.wait(0.1) and time.monotonic() < give_up:
        pass
    scheduler.shutdown(timeout=5.0)
    out(stopped=scheduler.worker_id)
    return 0


# ------------------------------------------------------------------------------------ the test side
def query(conninfo: str, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement in its own short connection and return its rows."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


def db_now(conninfo: str) -> float:
    """The database's clock, in epoch seconds (the clock quiv compares due times with)."""
    return float(query(conninfo, "SELECT extract(epoch FROM clock_timestamp())")[0][0])


def wait_until(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


@dataclass
class Proc:
    """One harness process: its stdout lines (parsed JSON) as they come, its stderr in a file."""

    label: str
    popen: subprocess.Popen[str]
    stderr_path: Path
    stderr_file: IO[str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    _replies: queue.SimpleQueue[dict[str, Any]] = field(default_factory=queue.SimpleQueue)
    _reader: threading.Thread | None = None
    worker: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        stream = self.popen.stdout
        assert stream is not None
        for line in stream:
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = {"text": line}
            self.messages.append(message)
            if "reply" in message:
                self._replies.put(message)

    def wait_ready(self, timeout: float = 60.0) -> str:
        def ready() -> str | None:
            for message in list(self.messages):
                if "ready" in message:
                    return str(message["ready"])
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.label} exited early:\n{self.stderr()}")
            return None

        self.worker = wait_until(ready, timeout, f"{self.label} to start")
        return self.worker

    def send(self, op: str, timeout: float = 15.0, **args: Any) -> dict[str, Any]:
        """Send a command on stdin and return the process's answer (which must say ok)."""
        stdin = self.popen.stdin
        assert stdin is not None
        stdin.write(json.dumps({"op": op, **args}) + "\n")
        stdin.flush()
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.label} did not answer {op!r} within {timeout:g} s") from None
        assert reply["reply"] == op, reply
        assert reply["ok"], f"{self.label} failed {op!r}: {reply.get('error')}"
        return reply

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in list(self.messages) if m.get("event") == name]

    def stderr(self) -> str:
        self.stderr_file.flush()
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self, timeout: float = 30.0, diagnose: Callable[[], str] | None = None) -> int:
        """SIGTERM, then wait for a clean exit (killing the process if it does not come)."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        return self.wait_stopped(timeout, diagnose)

    def wait_stopped(self, timeout: float = 30.0, diagnose: Callable[[], str] | None = None) -> int:
        """Wait for the process to exit after SIGTERM; kill it and fail if it does not.

        A process that hangs is asked for its threads' stacks first, and
        ``diagnose`` (say, the database's sessions) is added to the failure.
        """
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGUSR1)  # the harness dumps every thread's stack to stderr
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(1.0)
            extra = diagnose() if diagnose is not None else ""
            self.kill()
            raise AssertionError(
                f"{self.label} did not stop within {timeout:g} s:\n{self.stderr()}\n"
                f"its last messages: {self.messages[-5:]}\n{extra}"
            ) from None
        if self._reader is not None:
            self._reader.join(5.0)  # every line it printed is read once it has exited
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def close(self) -> None:
        self.kill()
        if self._reader is not None:
            self._reader.join(5.0)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self.stderr_file.close()


class Cluster:
    """The harness processes of one test, all sharing one database."""

    def __init__(self, url: str, conninfo: str, directory: Path) -> None:
        self.url = url
        self.conninfo = conninfo
        self.directory = directory
        self.procs: list[Proc] = []

    def create_audit(self) -> None:
        query(self.conninfo, AUDIT_TABLE)

    def spawn(self, label: str, config: dict[str, Any]) -> Proc:
        """Start one process (without waiting for it to be ready)."""
        number = len(self.procs)
        stderr_path = self.directory / f"{number:02d}-{label}.stderr"
        stderr_file = stderr_path.open("w+")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        env.pop("QUIV_DATABASE_URL", None)
        popen = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), self.url, json.dumps(config)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
            bufsize=1,
        )
        proc = Proc(label, popen, stderr_path, stderr_file)
        proc._reader = threading.Thread(target=proc._read, name=f"read-{label}", daemon=True)
        proc._reader.start()
        self.procs.append(proc)
        return proc

    def start(self, configs: dict[str, dict[str, Any]], timeout: float = 60.0) -> list[Proc]:
        """Start several processes at once and wait until every one is ready."""
        procs = [self.spawn(label, config) for label, config in configs.items()]
        for proc in procs:
            proc.wait_ready(timeout)
        return procs

    def stop_all(self, procs: Sequence[Proc] | None = None) -> None:
        """SIGTERM every live process at once, then wait for each to exit cleanly."""
        chosen = [p for p in (self.procs if procs is None else procs) if p.popen.poll() is None]
        for proc in chosen:
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGTERM)
        for proc in chosen:
            proc.wait_stopped(diagnose=self.sessions)

    def sessions(self) -> str:
        """The database's sessions and what they wait for (shown when a process hangs)."""
        rows = self.rows(
            "SELECT pid, application_name, state, wait_event_type, wait_event, left(query, 200) "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return "\n".join(map(str, rows))

    def by_worker(self, worker: str) -> Proc:
        for proc in self.procs:
            if proc.worker == worker:
                return proc
        raise KeyError(worker)

    def close(self) -> None:
        for proc in self.procs:
            proc.close()

    def logs(self) -> str:
        return "\n".join(f"===== {p.label} (pid {p.pid})\n{p.stderr()}" for p in self.procs)

    # ------------------------------------------------------------------ reading the database
    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        return query(self.conninfo, sql, params)

    def now(self) -> float:
        return db_now(self.conninfo)

    def audit(self, task: str | None = None) -> list[tuple[str, float, str, str, int, float]]:
        """``(task, scheduled_for, job_id, worker, pid, at)`` rows, by task then slot."""
        where, params = ("WHERE task = %s", (task,)) if task is not None else ("", ())
        rows = self.rows(
            f"SELECT task, scheduled_for, job_id, worker, pid, at FROM audit {where} "
            "ORDER BY task, scheduled_for, at",
            params,
        )
        return [(str(a), float(b), str(c), str(d), int(e), float(f)) for a, b, c, d, e, f in rows]

    def jobs(self, task: str | None = None) -> list[dict[str, Any]]:
        """The job rows, by task then slot, as dicts."""
        where, params = ("WHERE task_name = %s", (task,)) if task is not None else ("", ())
        names = (
            "id",
            "task_id",
            "task_name",
            "status",
            "started_at",
            "ended_at",
            "scheduled_for",
            "worker",
            "attempt",
            "error_message",
        )
        rows = self.rows(
            f"SELECT {', '.join(names)} FROM quiv_jobs {where} ORDER BY task_name, scheduled_for", params
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def job(self, job_id: str) -> dict[str, Any] | None:
        for row in self.jobs():
            if row["id"] == job_id:
                return row
        return None

    def ended(self, job_id: str) -> dict[str, Any] | None:
        """The job's row once it is no longer running, else None."""
        row = self.job(job_id)
        return row if row is not None and row["status"] != "running" else None

    def running(self, task: str, other_than: str | None = None) -> dict[str, Any] | None:
        """The task's running job (never more than one), if it is not ``other_than``."""
        running = [j for j in self.jobs(task) if j["status"] == "running"]
        assert len(running) <= 1, f"two jobs of {task} running at once: {running}"
        if running and running[0]["id"] != other_than:
            return running[0]
        return None


def audit_duplicates(audit: Sequence[tuple[str, float, str, str, int, float]]) -> list[tuple[str, float]]:
    """(task, slot) pairs that were run more than once, slots compared to the millisecond."""
    seen: dict[tuple[str, float], int] = {}
    for task, slot, *_ in audit:
        key = (task, round(slot, 3))
        seen[key] = seen.get(key, 0) + 1
    return [key for key, count in seen.items() if count > 1]


def slot_holes(slots: Sequence[float], step: float = 1.0) -> list[tuple[float, float]]:
    """Neighbouring slots (sorted) that are not ``step`` apart: a slot missing, or one slot twice."""
    return [(a, b) for a, b in itertools.pairwise(sorted(slots)) if abs(b - a - step) > 1e-3]


#: The share of a task's slots that may be missed for a reason the history proves (a loaded machine).
MISSED_SHARE = 0.10
OVERLAP = "the previous run of the task was still going"
TOO_LATE = "no process ran it in time"


def unexplained_misses(rows: Sequence[dict[str, Any]], step: float = 1.0) -> list[dict[str, Any]]:
    """The ``missed`` rows of one task (sorted by slot) whose reason its own history does not prove.

    A slot may be missed because the run before it was still going when it
    came due (that run's ``ended_at`` is later than the slot), or because no
    claim came until a later slot was due as well: the claim that recorded it
    (the rows it wrote share their ``started_at``) came a whole step or more
    after the first slot it recorded. Both happen on a machine too busy to
    start a run within a second, or after a downtime; anything else is a fault.
    """
    first_of_claim: dict[float, float] = {}
    for row in rows:
        if row["status"] == "missed" and TOO_LATE in (row["error_message"] or ""):
            claimed = row["started_at"]
            first_of_claim[claimed] = min(first_of_claim.get(claimed, math.inf), row["scheduled_for"])
    unexplained = []
    before: dict[str, Any] | None = None  # the last run (not a missed row) before the row
    for row in rows:
        if row["status"] != "missed":
            before = row
            continue
        reason = row["error_message"] or ""
        slot = row["scheduled_for"]
        overlapped = (
            OVERLAP in reason
            and before is not None
            and before["ended_at"] is not None
            and before["ended_at"] >= slot - 1e-6
        )
        late = TOO_LATE in reason and row["started_at"] >= first_of_claim[row["started_at"]] + step - 1e-3
        if not (overlapped or late):
            unexplained.append(row)
    return unexplained


def assert_exactly_once(cluster: Cluster, every_second: Sequence[str], min_runs: int) -> None:
    """The audit shows each slot run once, by a completed job, and no slot of a 1 s schedule lost.

    ``every_second`` names tasks whose schedule has a point every second
    (interval 1 with fixed_interval, or a cron with a seconds field). Between
    a task's first and last run every slot has exactly one job row: a run
    (completed, with one audit row) or, on an overloaded machine, a
    ``missed`` row whose reason the history proves (see
    :func:`unexplained_misses`), for at most :data:`MISSED_SHARE` of them.
    """
    audit = cluster.audit()
    duplicates = audit_duplicates(audit)
    assert not duplicates, f"slots run more than once: {duplicates[:10]}"
    jobs = {job["id"]: job for job in cluster.jobs()}
    for task, slot, job_id, worker, _pid, _at in audit:
        job = jobs.get(job_id)
        assert job is not None, f"audit row of {task} at {slot} has no job row {job_id}"
        assert job["status"] == "completed", f"audit row of {task} at {slot}: job is {job['status']}: {job}"
        assert abs(job["scheduled_for"] - slot) < 1e-5, (job, slot)
        assert job["worker"] == worker, (job, worker)
    audited = {row[2] for row in audit}
    unaudited = [j for j in jobs.values() if j["status"] == "completed" and j["id"] not in audited]
    assert not unaudited, f"completed jobs whose handler left no audit row: {unaudited[:5]}"
    for name in every_second:
        slots = [row[1] for row in audit if row[0] == name]
        assert len(slots) >= min_runs, f"task {name} ran only {len(slots)} times"
        first, last = min(slots) - 1e-3, max(slots) + 1e-3
        rows = sorted(
            (j for j in jobs.values() if j["task_name"] == name and first <= j["scheduled_for"] <= last),
            key=lambda j: float(j["scheduled_for"]),
        )
        holes = slot_holes([j["scheduled_for"] for j in rows])
        assert not holes, f"task {name}: slots with no job row (or two) between {holes[:5]}: {rows}"
        assert {j["status"] for j in rows} <= {"completed", "missed"}, rows
        unexplained = unexplained_misses(rows)
        assert not unexplained, f"task {name}: slots missed for no reason the history shows: {unexplained}"
        missed = sum(1 for j in rows if j["status"] == "missed")
        share = f"task {name}: {missed} of {len(rows)} slots missed: {rows}"
        assert missed <= MISSED_SHARE * len(rows), share


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
