"""The durable store: every statement the durable and shared modes run.

Each method is one short transaction. A task row holds the task's whole
scheduling state, so a method loads it (``FOR UPDATE``), rebuilds a
:class:`~quiv._core.task.TaskState`, calls one transition of the state
machine and writes the result back: the rules of :mod:`quiv._core.task` are
the same in every mode, only where the state lives changes.

Exactly once: a claim takes due rows with ``FOR UPDATE SKIP LOCKED`` (two
processes never hold one row), advances ``next_run_at`` and inserts the job
with ``ON CONFLICT (task_id, scheduled_for) DO NOTHING`` in the same
transaction; the unique key is the backstop. Due times are compared with
the database's clock (``now()``), never a process's.

Fencing: a job's end is written only ``WHERE id AND worker AND attempt AND
status = 'running'``. A process that was presumed dead (its jobs marked
``abandoned``) finds no such row and drops its result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from quiv._core.handlers import injection_plan
from quiv._core.task import DELETE, JobState, Plan, TaskState, TaskView
from quiv._durable import pgfast, schema
from quiv._durable.relay import MAX_PAYLOAD
from quiv._durable.schema import jobs, tasks, workers
from quiv._durable.url import DatabaseTarget
from quiv._enums import JobStatus, TaskStatus
from quiv._exceptions import ConfigurationError, DatabaseError, TaskNotFoundError
from quiv._schedule.options import COLUMNS, TaskSettings
from quiv._schedule.triggers import TOLERANCE, schedule_points
from quiv._store.base import JobQuery, JobRow
from quiv._store.queries import count_statement, page_statement

__all__ = ["Claim", "DurableStore", "Ended", "PresumedDead", "WorkerRow", "definition_hash"]

_OPTION_NAMES = tuple(c.name for c in COLUMNS)
_SCHEDULE_COLUMNS = frozenset({"interval_seconds", "run_once", "fixed_interval", "cron", "cron_timezone"})
_TERMINAL = tuple(s.value for s in JobStatus if s.is_terminal)
_JOB_COLUMNS = tuple(getattr(jobs.c, name) for name in JobRow._fields)
#: At most this many missed slots are recorded one by one per task and per catch-up.
MISSED_LIMIT = 1000
#: The channel of the ends of awaited jobs: ``task_id:job_id`` entries (or a bare task id: removed),
#: comma-separated, for the waiters of other processes (see :meth:`DurableStore.await_task`).
ENDED = "quiv_ended"
#: Sent when a process starts to want the live events of the others (its stream got a client),
#: so that they start relaying at once rather than at their next heartbeat.
WANTED = "quiv_wanted"
#: The end of a run that outlasted its task's next slot wakes the other processes (NOTIFY) at
#: most this often per process: a hint, so that a steady stream of such ends costs little.
WAKE_OTHERS_EVERY = 0.1
MISSED = JobStatus.MISSED.value


def definition_hash(settings: TaskSettings) -> str:
    """A hash of what the code declared for a task: its stored options (arguments included)."""
    digest = hashlib.sha256()
    for name, value in zip(_OPTION_NAMES, settings.columns(), strict=True):
        digest.update(name.encode())
        digest.update(value.hex().encode() if isinstance(value, bytes) else repr(value).encode())
    return digest.hexdigest()[:32]


def _not_declared_here(*_args: Any, **_kwargs: Any) -> None:
    raise RuntimeError("this task is not declared in this process")  # never called: claims filter by name


_ELSEWHERE_PLAN = injection_plan(_not_declared_here)


class PresumedDead(Exception):
    """This process's worker row is gone: the others presumed it dead. Re-register, then go on."""


class Claim(NamedTuple):
    """What one claim transaction did."""

    started: list[JobState]
    #: (task, missed job row) for every slot recorded as missed.
    missed: list[tuple[TaskView, JobRow]]
    #: Seconds (database clock) until the next due row this process could claim; None: none.
    wait: float | None


class Ended(NamedTuple):
    """What writing a job's end did."""

    #: False when the write was fenced off: the job was no longer this worker's.
    accepted: bool
    view: TaskView | None
    missed: list[tuple[TaskView, JobRow]]


class WorkerRow(NamedTuple):
    """A live process, as its row in ``quiv_workers`` shows it."""

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    #: The task names it declares.
    tasks: tuple[str, ...]


@dataclass
class _Local:
    """What this process knows of a task it declared: the handler, its plan and callbacks."""

    state: TaskState
    definition: str
    seen: dict[str, Any] = field(default_factory=dict)


class DurableStore:
    """Tasks, jobs and workers in a durable database; see the module docstring."""

    def __init__(
        self,
        target: DatabaseTarget,
        *,
        clock_now: Callable[[], float],
        default_timezone: tzinfo,
        connect_timeout: float,
        dead_after: float,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        late_window: float = 2.0,
        pool_size: int = 10,
        prepared_statements: bool = True,
    ) -> None:
        self.target = target
        self.postgres = target.kind == "postgresql"
        #: A slot that passed less than this long ago is a late claim, not downtime: it still runs.
        self.late_window = late_window
        self._clock_now = clock_now
        self._tz = default_timezone
        self._logger = logger
        self._closed = False
        self._lockfile: int | None = None
        self._prepared = False
        self._preparing = threading.Lock()
        #: SQLite has one connection, shared by every thread under this lock.
        self._serial = threading.RLock() if not self.postgres else None
        #: The ids of the last claim and their array literal (PostgreSQL), made again when they change.
        self._ids: tuple[tuple[str, ...], str] = ((), "{}")
        self._woke_others = -WAKE_OTHERS_EVERY
        if self.postgres:
            self._insert = _pg_insert
            idle_ms = max(1000, int(dead_after * 1000))
            connect_args = {
                "connect_timeout": max(1, round(connect_timeout)),
                "application_name": "quiv",
                # A process frozen inside a transaction must not hold its row locks forever.
                "options": f"-c idle_in_transaction_session_timeout={idle_ms}",
                # psycopg prepares a statement on the server after a few runs (None: never).
                "prepare_threshold": 5 if prepared_statements else None,
            }
            # One connection per worker thread, the claimer and readers, kept open. The pre-ping costs a
            # round trip per transaction, but a connection the server dropped is then replaced before use
            # instead of failing a claim or a job's end (and logging a new outage per stale connection).
            self.engine: Engine = create_engine(
                target.url,
                pool_size=pool_size + 2,
                max_overflow=4,
                pool_pre_ping=True,
                pool_timeout=connect_timeout,
                connect_args=connect_args,
            )
            #: The heartbeat's own connection: a full pool must not silence it.
            self.beat_engine: Engine = create_engine(
                target.url, pool_size=1, max_overflow=1, pool_pre_ping=True, connect_args=connect_args
            )
        else:
            self._insert = _sqlite_insert
            self.engine = create_engine(
                target.url,
                connect_args={"check_same_thread": False, "timeout": 30},
                poolclass=StaticPool,
            )
            event.listen(self.engine, "connect", _configure_sqlite)
            self.beat_engine = self.engine

    # ------------------------------------------------------------ plumbing
    def _lock_file(self, path: str) -> None:
        """Create the file 0600 if new and lock it: a second process gets a ``ConfigurationError``."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise ConfigurationError(f"cannot open the database file {path!r}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigurationError(
                f"the database file {path!r} is in use by another process: a SQLite database serves "
                "one process (use PostgreSQL to share a schedule between processes)"
            ) from None
        self._lockfile = fd

    @contextlib.contextmanager
    def _tx(
        self, what: str, engine: Engine | None = None, *, preparing: bool = False
    ) -> Iterator[Connection]:
        """One transaction; database failures become ``DatabaseError`` naming ``what`` and the server.

        The first one prepares the store (see :meth:`prepare`), so no operation can skip it.
        """
        if self._closed:
            raise DatabaseError(f"cannot {what}: the scheduler has shut down")
        if not (preparing or self._prepared):
            self.prepare()
        serial = self._serial
        if serial is not None:
            serial.acquire()
        try:
            with (engine or self.engine).begin() as conn:
                yield conn
        except (ConfigurationError, DatabaseError, TaskNotFoundError):
            raise
        except OperationalError as exc:
            raise DatabaseError(self._describe(what, exc)) from None
        except SQLAlchemyError as exc:
            raise DatabaseError(self._describe(what, exc)) from None
        finally:
            if serial is not None:
                serial.release()

    def _describe(self, what: str, exc: SQLAlchemyError) -> str:
        reason = str(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
        reason = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
        password = _password(self.target.url)
        if password:
            reason = reason.replace(password, "***")
        where = (
            f"PostgreSQL at {self.target.where}" if self.postgres else f"the SQLite file {self.target.path}"
        )
        return f"quiv could not {what} ({where}): {reason}"

    def now(self, conn: Connection) -> float:
        """The database's clock (PostgreSQL), or the scheduler's clock (SQLite: one process)."""
        if self.postgres:
            return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
        return self._clock_now()

    def notify(self, conn: Connection, channel: str, payload: str = "") -> None:
        """Wake the other processes when this transaction commits (PostgreSQL only)."""
        if self.postgres:
            conn.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
            )

    # ------------------------------------------------------------- set-up
    def prepare(self) -> None:
        """Connect, then create or upgrade the tables, once (whoever else starts now).

        Called by the first transaction of every operation, started scheduler or
        not: a SQLite file is locked first, so every operation is refused with
        a ``ConfigurationError`` while another process holds the file.
        """
        if self._prepared:
            return
        with self._preparing:  # two threads must not both lock the file: the second would be refused
            if not self._prepared:
                self._prepare_once()
                self._prepared = True

    def _prepare_once(self) -> None:
        if not self.postgres and self._lockfile is None:
            assert self.target.path is not None
            self._lock_file(self.target.path)
        try:
            with self._tx("create its tables", preparing=True) as conn:
                schema.prepare(conn, postgres=self.postgres)
        except DatabaseError as exc:
            if "permission denied" in str(exc):
                raise DatabaseError(
                    f"{exc}. The database user needs the right to create tables in its schema "
                    "(GRANT CREATE ON SCHEMA ... TO ...), or the tables must be created once by a user "
                    "who has it"
                ) from None
            raise

    def notify_many(self, channel: str, payloads: Sequence[str]) -> None:
        """Send ``payloads`` on ``channel``, in order, in one transaction."""
        with self._tx("relay events") as conn:
            conn.execute(
                text("SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"),
                {"channel": channel, "payloads": list(payloads)},
            )

    def set_wants_events(self, worker_id: str, wanted: bool) -> None:
        with self._tx("record this process's interest in events") as conn:
            conn.execute(update(workers).where(workers.c.id == worker_id).values(wants_events=wanted))
            if wanted:
                self.notify(conn, WANTED)

    def events_wanted(self) -> bool:
        """True if some live process serves a live stream (so events should be relayed)."""
        with self._tx("read the live processes", self.beat_engine) as conn:
            return bool(conn.execute(select(func.count()).where(workers.c.wants_events.is_(True))).scalar())

    def register_worker(self, worker_id: str, names: Sequence[str], *, wants_events: bool = False) -> None:
        with self._tx("register this process") as conn:
            now = self.now(conn)
            conn.execute(
                self._insert(workers).values(
                    id=worker_id,
                    started_at=now,
                    heartbeat_at=now,
                    host=os.uname().nodename,
                    pid=os.getpid(),
                    tasks="\n".join(sorted(names)),
                    wants_events=wants_events,
                )
            )

    def set_worker_tasks(self, worker_id: str, names: Sequence[str]) -> None:
        with self._tx("record this process's tasks") as conn:
            conn.execute(
                update(workers).where(workers.c.id == worker_id).values(tasks="\n".join(sorted(names)))
            )

    def heartbeat(self, worker_id: str) -> bool:
        """Record that this process lives; False if it was presumed dead (its row is gone)."""
        with self._tx("send a heartbeat", self.beat_engine) as conn:
            now = self.now(conn)
            result = conn.execute(update(workers).where(workers.c.id == worker_id).values(heartbeat_at=now))
            return bool(result.rowcount)

    def missing_tasks(self, ids: Sequence[str]) -> set[str]:
        """Which of these task ids have no row any more (removed, or a run-once task that ran)."""
        if not ids:
            return set()
        with self._tx("look up tasks", self.beat_engine) as conn:
            found = {r[0] for r in conn.execute(select(tasks.c.id).where(tasks.c.id.in_(list(ids))))}
        return set(ids) - found

    def worker_gone(self, worker_id: str) -> bool:
        with self._tx("look up this process") as conn:
            return conn.execute(select(workers.c.id).where(workers.c.id == worker_id)).first() is None

    def unregister_worker(self, worker_id: str) -> None:
        with self._tx("unregister this process") as conn:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

    # -------------------------------------------------------- hydration
    def _settings(self, m: Mapping[Any, Any], local: _Local | None) -> TaskSettings:
        values = tuple(m[name] for name in _OPTION_NAMES)
        if local is not None and local.state.settings.columns() == values:
            return local.state.settings
        cached = local.seen.get("settings") if local is not None else None
        if cached is not None and cached.columns() == values:
            return cached  # type: ignore[no-any-return]
        settings = TaskSettings.from_columns(
            dict(zip(_OPTION_NAMES, values, strict=True)),
            progress_callback=None if local is None else local.state.settings.progress_callback,
            default_timezone=self._tz,
        )
        if local is not None:
            local.seen["settings"] = settings
        return settings

    def hydrate(self, m: Mapping[Any, Any], local: _Local | None) -> TaskState:
        """A TaskState holding what a task row holds (the handler comes from ``local``, if declared here)."""
        base = local.state if local is not None else None
        state = TaskState(
            id=m["id"],
            name=m["task_name"],
            func=base.func if base is not None else _not_declared_here,
            plan=base.plan if base is not None else _ELSEWHERE_PLAN,
            settings=self._settings(m, local),
            created=m["created_at"],
            progress_is_async=base.progress_is_async if base is not None else False,
            status=TaskStatus(m["status"]),
            next_run=m["next_run_at"],
            requested=m["requested_at"],
            requested_forced=bool(m["requested_forced"]),
            manual_due=m["manual_due"],
            started_once=bool(m["started_once"]),
            retry=None if m["retry_attempt"] is None else (m["retry_attempt"], m["retry_of"]),
            cycle_due=m["cycle_due"],
            nominal=m["nominal"],
            origin=base.origin if base is not None else None,
        )
        running = m["running_job"]
        if running is not None:
            # Transitions only ask whether a job runs; the job itself lives in its own process.
            state.running = JobState(id=running, task=state, task_name=state.name, due=0.0, started=0.0)
        return state

    @classmethod
    def _values(cls, state: TaskState) -> dict[str, Any]:
        """Every column of the task's row but ``id``, ``created_at`` and ``definition``."""
        values = cls._state_values(state)
        del values["id"]
        values["task_name"] = state.name
        values.update(zip(_OPTION_NAMES, state.settings.columns(), strict=True))
        return values

    def _save(self, conn: Connection, state: TaskState, plan: Plan) -> None:
        if plan is DELETE or state.removed:
            conn.execute(delete(tasks).where(tasks.c.id == state.id))
        else:
            # One statement built once, executed with the values: building it each time was most of a claim.
            conn.execute(_SAVE_TASK, {"_id": state.id, **self._values(state)})

    def _record_missed(
        self, conn: Connection, state: TaskState, slots: Sequence[float], now: float, why: str
    ) -> list[tuple[TaskView, JobRow]]:
        """A ``missed`` job row per slot not run; the unique key drops slots already recorded."""
        if not slots:
            return []
        from quiv._core.ids import new_id

        rows = [
            JobRow(new_id(), state.id, state.name, MISSED, now, now, 0.0, why, 1, None, slot, None)
            for slot in slots
        ]
        statement = self._insert(jobs).on_conflict_do_nothing(index_elements=["task_id", "scheduled_for"])
        conn.execute(statement, [r._asdict() for r in rows])
        view = state.view()
        return [(view, row) for row in rows]

    # ---------------------------------------------------------- adoption
    def adopt(self, local: _Local) -> tuple[TaskState, str]:
        """Match a task declared here to the stored one of its name: ``(state, "added"|"adopted"|"updated")``.

        A new name is inserted. A row whose stored definition hash equals the
        declared one is adopted as it is (id, next run, pause, runtime updates
        kept). A changed definition replaces the stored options; a changed
        schedule starts again from now.
        """
        declared = local.state
        with self._tx(f"load the task {declared.name!r}") as conn:
            now = self.now(conn)
            row = self._row_by_name(conn, declared.name)
            if row is None:
                declared.created = now
                declared.add(now)
                values = {"id": declared.id, "created_at": now, "definition": local.definition}
                values.update(self._values(declared))
                inserted = conn.execute(
                    self._insert(tasks)
                    .values(**values)
                    .on_conflict_do_nothing(index_elements=["task_name"])
                    .returning(tasks.c.id)
                ).first()
                if inserted is not None:
                    return declared, "added"
                row = self._row_by_name(conn, declared.name)  # another process inserted it meanwhile
                assert row is not None
            state = self.hydrate(row._mapping, local)
            if row._mapping["definition"] == local.definition:
                return state, "adopted"
            before = dict(zip(_OPTION_NAMES, state.settings.columns(), strict=True))
            after = dict(zip(_OPTION_NAMES, declared.settings.columns(), strict=True))
            reschedule = any(before[name] != after[name] for name in _SCHEDULE_COLUMNS)
            plan = state.update(declared.settings, now, reschedule=reschedule)
            self._save(conn, state, plan)
            conn.execute(update(tasks).where(tasks.c.id == state.id).values(definition=local.definition))
            self.notify(conn, "quiv_wake")
            return state, "updated"

    def _row_by_name(self, conn: Connection, name: str) -> Row[Any] | None:
        return conn.execute(select(tasks).where(tasks.c.task_name == name).with_for_update()).first()

    # ------------------------------------------------- hot-path statements
    # A claim and a job's end go through these: psycopg directly on PostgreSQL (see pgfast),
    # SQLAlchemy Core on SQLite. The rules around them are the same for both.
    def _take_due(
        self, conn: Connection, worker_id: str, ids: Sequence[str], limit: int
    ) -> tuple[float, Sequence[Mapping[Any, Any]]]:
        """Lock this worker's row (a sweep waits; a process presumed dead claims nothing), read the
        clock, and take up to ``limit`` due rows of the tasks ``ids``, locked ``SKIP LOCKED``.

        Raises ``PresumedDead`` if the worker row is gone.
        """
        if self.postgres:
            found = pgfast.claim_rows(conn, worker_id, self._id_array(ids), TOLERANCE, limit)
            if found is None:
                raise PresumedDead(worker_id)
            return found
        if conn.execute(select(workers.c.id).where(workers.c.id == worker_id)).first() is None:
            raise PresumedDead(worker_id)
        now = self._clock_now()
        statement = (
            select(tasks)
            .where(self._claimable(ids), tasks.c.next_run_at <= now + TOLERANCE)
            .order_by(tasks.c.next_run_at)
            .limit(limit)
        )
        return now, [row._mapping for row in conn.execute(statement)]

    @staticmethod
    def _unpaused() -> Any:
        """Not paused, or paused with a run asked for by hand."""
        return or_(tasks.c.status != TaskStatus.PAUSED.value, tasks.c.manual_due.is_not(None))

    @classmethod
    def _claimable(cls, ids: Sequence[str]) -> Any:
        return and_(tasks.c.id.in_(ids), tasks.c.running_job.is_(None), cls._unpaused())

    def _id_array(self, ids: Sequence[str]) -> str:
        key = tuple(ids)
        if self._ids[0] != key:
            self._ids = (key, pgfast.id_array(key))
        return self._ids[1]

    def _soonest(self, conn: Connection, ids: Sequence[str], now: float) -> float | None:
        """When the next row of tasks ``ids`` may be claimed: the earliest due time among those not
        running, and the next slot (if still ahead) of those running, which may end before it."""
        if self.postgres:
            return pgfast.soonest(conn, self._id_array(ids), now)
        scheduled = and_(tasks.c.id.in_(ids), self._unpaused())
        waiting = or_(tasks.c.running_job.is_(None), tasks.c.next_run_at > now)
        value = conn.execute(select(func.min(tasks.c.next_run_at)).where(scheduled, waiting)).scalar()
        return None if value is None else float(value)

    def _insert_rows(self, conn: Connection, rows: Sequence[JobRow]) -> set[str]:
        if self.postgres:
            return pgfast.insert_jobs(conn, rows)
        statement = (
            self._insert(jobs)
            .on_conflict_do_nothing(index_elements=["task_id", "scheduled_for"])
            .returning(jobs.c.id)
        )
        inserted = (conn.execute(statement.values(**row._asdict())).scalar() for row in rows)
        return {job_id for job_id in inserted if job_id is not None}

    def _save_states(self, conn: Connection, saves: Sequence[dict[str, Any]]) -> None:
        if not saves:
            return
        if self.postgres:
            pgfast.save_states(conn, saves)
        else:
            conn.execute(_SAVE_STATE, [{"_id": v["id"], **v} for v in saves])

    def _end_rows(
        self, conn: Connection, batch: Sequence[JobState]
    ) -> tuple[dict[str, float], dict[str, Mapping[Any, Any]]]:
        """Write the fenced ends of ``batch`` and lock the tasks of those written.

        Returns ``({job id: end time} of the ends written, {task id: its row} of their tasks still there)``.
        """
        ends: list[dict[str, Any]] = [
            {
                "id": job.id,
                "worker": job.worker,
                "attempt": job.attempt,
                "status": job.status.value,
                "error": job.error,
                "started": job.started,
            }
            for job in batch
        ]
        if self.postgres:  # the end time is the database's clock
            found = pgfast.end_jobs(conn, ends)
            return {job_id: now for job_id, now, _ in found}, {row["id"]: row for _, _, row in found if row}
        now = self._clock_now()
        written = {e["id"]: now for e in ends if conn.execute(_END_JOB_SQLITE, {**e, "now": now}).first()}
        task_ids = sorted({job.task.id for job in batch if job.id in written})
        rows = conn.execute(select(tasks).where(tasks.c.id.in_(task_ids))).all() if task_ids else []
        return written, {row._mapping["id"]: row._mapping for row in rows}

    @staticmethod
    def _state_values(state: TaskState) -> dict[str, Any]:
        """The task's scheduling state (what a claim or an end changes), keyed by column."""
        retry = state.retry
        return {
            "id": state.id,
            "status": state.status.value,
            "next_run_at": state.next_run,
            "nominal": state.nominal,
            "cycle_due": state.cycle_due,
            "retry_attempt": None if retry is None else retry[0],
            "retry_of": None if retry is None else retry[1],
            "requested_at": state.requested,
            "requested_forced": state.requested_forced,
            "manual_due": state.manual_due,
            "started_once": state.started_once,
            "running_job": None if state.running is None else state.running.id,
        }

    # -------------------------------------------------------------- claim
    def claim(self, worker_id: str, local: dict[str, _Local], limit: int) -> Claim:
        """Start up to ``limit`` due runs of the tasks declared here, each exactly once."""
        started: list[JobState] = []
        missed: list[tuple[TaskView, JobRow]] = []
        # By id, not name: a row removed elsewhere and added again under the name is another task.
        ids = [entry.state.id for entry in local.values()]
        with self._tx("claim due runs") as conn:
            now, due = self._take_due(conn, worker_id, ids, max(0, limit) if ids else 0)
            if due:
                saves: list[dict[str, Any]] = []
                pending: list[tuple[TaskState, JobState]] = []
                for row in due:
                    state, job, plan = self._claim_row(
                        conn, row, local[row["task_name"]], worker_id, now, missed
                    )
                    if job is None:
                        self._stage(conn, state, plan, saves)
                    else:
                        pending.append((state, job))
                started = self._insert_jobs(conn, pending, now, saves)
                self._save_states(conn, saves)
            wait = None
            if ids and len(started) < limit:  # a full pool waits for a job's end, not for a due time
                soonest = self._soonest(conn, ids, now)
                if soonest is not None:
                    wait = max(0.0, soonest - now)
        return Claim(started, missed, wait)

    def _claim_row(
        self,
        conn: Connection,
        row: Mapping[Any, Any],
        local: _Local,
        worker_id: str,
        now: float,
        missed: list[tuple[TaskView, JobRow]],
    ) -> tuple[TaskState, JobState | None, Plan]:
        """Apply the claim's transitions to one due row: ``(state, the job to insert or None, plan)``."""
        state = self.hydrate(row, local)
        due = state.next_run
        forced = state.status is TaskStatus.PAUSED
        start, plan = True, None
        if not forced:
            slots, start, plan = state.catch_up(now, MISSED_LIMIT, self.late_window)
            if slots:
                missed += self._record_missed(conn, state, slots, now, "missed: no process ran it in time")
            due = state.next_run
        if start:
            start, plan = state.take(due, forced, now)
            if not start and plan is not None:
                missed += self._record_missed(
                    conn, state, [due], now, "missed: it would have started later than misfire_grace"
                )
        if not start:
            return state, None, plan
        job = state.start_job(due, now)
        job.worker = worker_id
        return state, job, None

    def _insert_jobs(
        self,
        conn: Connection,
        pending: list[tuple[TaskState, JobState]],
        now: float,
        saves: list[dict[str, Any]],
    ) -> list[JobState]:
        """Insert the claimed jobs in one statement; returns those inserted (the others' slots were taken)."""
        if not pending:
            return []
        inserted = self._insert_rows(conn, [JobRow(*job.row()) for _, job in pending])
        started = []
        for state, job in pending:
            if job.id in inserted:
                started.append(job)
                self._stage(conn, state, None, saves)
                continue
            # The backstop: this slot already has a job. Never run it twice; move on.
            self._logger.error(
                "task %r: the slot due at %.6f already has a job; not running it again", state.name, job.due
            )
            state.running = None
            self._stage(conn, state, state.end_job(_ended_copy(job), now), saves)
        return started

    def _stage(self, conn: Connection, state: TaskState, plan: Plan, saves: list[dict[str, Any]]) -> None:
        """Delete a task now if it goes away, else queue its state for one batched write."""
        if plan is DELETE or state.removed:
            self._save(conn, state, plan)
        else:
            saves.append(self._state_values(state))

    # ---------------------------------------------------------------- end
    def finish_many(self, batch: Sequence[tuple[JobState, _Local | None]]) -> list[Ended]:
        """Write the ends of several jobs in one transaction (group commit).

        Each end is fenced on its own: written only ``WHERE id AND worker AND
        attempt AND status = 'running'``. The ends go in one statement, the
        task rows are then locked in one (in id order) and their next steps
        written in one, so the cost of a transaction is shared by the jobs that
        ended while the previous one was in flight.
        """
        what = (
            f"record the end of job {batch[0][0].id}" if len(batch) == 1 else f"record {len(batch)} job ends"
        )
        with self._tx(what) as conn:
            written, rows = self._end_rows(conn, [job for job, _ in batch])
            results: dict[str, Ended] = {}
            refused = [job.id for job, _ in batch if job.id not in written]
            if refused:
                stored = {
                    r[0]: (r[1], r[2])
                    for r in conn.execute(
                        select(jobs.c.id, jobs.c.status, jobs.c.worker).where(jobs.c.id.in_(refused))
                    )
                }
                for job, _ in batch:
                    if job.id not in written:
                        # Accepted when an earlier try committed this very end before its connection broke.
                        same = stored.get(job.id) == (job.status.value, job.worker)
                        results[job.id] = Ended(same, None, [])
            ended_here = [(job, local) for job, local in batch if job.id in written]
            saves: list[dict[str, Any]] = []
            overran = False
            awaited: list[str] = []
            for job, local in ended_here:
                now = written[job.id]
                job.ended = max(now, job.started)
                row = rows.get(job.task.id)
                if row is None or row["running_job"] != job.id:
                    results[job.id] = Ended(True, None, [])  # removed meanwhile
                    continue
                overran = overran or row["next_run_at"] <= now
                if row["awaited_until"] > now:
                    awaited.append(f"{job.task.id}:{job.id}")
                state = self.hydrate(row, local)
                state.running = job
                plan = state.end_job(job, now)
                missed = self._record_overlap(conn, state, job, plan, now)
                self._stage(conn, state, plan, saves)
                results[job.id] = Ended(True, state.view(), missed)
            self._save_states(conn, saves)
            if overran:
                self._wake_others(conn)
            self._tell_ended(conn, awaited)
        return [results[job.id] for job, _ in batch]

    def _tell_ended(self, conn: Connection, entries: Sequence[str]) -> None:
        """Send ``entries`` on :data:`ENDED` when this transaction commits, in payloads under the limit."""
        payload = ""
        for entry in entries:
            if payload and len(payload) + 1 + len(entry) > MAX_PAYLOAD:
                self.notify(conn, ENDED, payload)
                payload = ""
            payload = f"{payload},{entry}" if payload else entry
        if payload:
            self.notify(conn, ENDED, payload)

    def await_task(self, task_id: str, seconds: float) -> bool:
        """Ask for :data:`ENDED` notifications of this task's job ends for the next ``seconds``.

        False if the task is gone. Several waiters may ask at once: the latest deadline wins.
        """
        with self._tx("wait for a job's end") as conn:
            now = self.now(conn)
            latest = func.greatest if self.postgres else func.max  # SQLite's two-argument max
            until = latest(tasks.c.awaited_until, now + seconds)
            result = conn.execute(update(tasks).where(tasks.c.id == task_id).values(awaited_until=until))
            return bool(result.rowcount)

    def _wake_others(self, conn: Connection) -> None:
        """A run outlasted its task's next slot: wake the other processes (see :data:`WAKE_OTHERS_EVERY`).

        While it ran, a claim elsewhere found the task running and already due, so
        had no due time to wake for: that process sleeps its poll interval, and
        would leave the task's next slots to this one.
        """
        now = time.monotonic()
        if now - self._woke_others >= WAKE_OTHERS_EVERY:
            self._woke_others = now
            self.notify(conn, "quiv_wake")

    def _record_overlap(
        self, conn: Connection, state: TaskState, job: JobState, plan: Plan, now: float
    ) -> list[tuple[TaskView, JobRow]]:
        """Record as missed the slots that came due while ``job`` (which just ended) was running."""
        if job.attempt != 1 or state.retry is not None or plan is DELETE or plan is None:
            return []
        slots = schedule_points(
            state.settings,
            job.cycle_due,
            max(job.cycle_due, job.started),
            state.nominal - TOLERANCE,
            MISSED_LIMIT,
        )
        return self._record_missed(
            conn, state, slots, now, "missed: the previous run of the task was still going"
        )

    def sweep(
        self, dead_after: float
    ) -> tuple[list[tuple[TaskView, JobRow]], list[str], list[tuple[TaskView, JobRow]]]:
        """End the runs of processes silent for ``dead_after`` s as ``abandoned``.

        Returns the ended jobs (with their tasks), the ids of the workers presumed
        dead, and the slots recorded as missed because an abandoned run still
        held its task when they came due (as when a run ends late in ``finish``).
        """
        out: list[tuple[TaskView, JobRow]] = []
        missed: list[tuple[TaskView, JobRow]] = []
        with self._tx("look for dead processes", self.beat_engine) as conn:
            now = self.now(conn)
            dead = [
                r[0]
                for r in conn.execute(
                    select(workers.c.id, workers.c.heartbeat_at).where(
                        workers.c.heartbeat_at < now - dead_after
                    )
                )
            ]
            if dead:
                conn.execute(delete(workers).where(workers.c.id.in_(dead)))
            orphans = conn.execute(
                select(*_JOB_COLUMNS)
                .where(
                    jobs.c.status == JobStatus.RUNNING.value,
                    or_(jobs.c.worker.is_(None), jobs.c.worker.not_in(select(workers.c.id))),
                )
                .with_for_update(skip_locked=True)
            ).all()
            for orphan in orphans:
                found = JobRow(*orphan)
                why = (
                    f"abandoned: its process (worker {found.worker}) stopped sending heartbeats "
                    f"for more than {dead_after:g} s"
                )
                self._abandon(conn, found, now, why, out, missed)
            if out:
                self.notify(conn, "quiv_wake")
                self._tell_ended(conn, [f"{row.task_id}:{row.id}" for _, row in out])
        return out, dead, missed

    def _abandon(
        self,
        conn: Connection,
        found: JobRow,
        now: float,
        why: str,
        out: list[tuple[TaskView, JobRow]],
        missed: list[tuple[TaskView, JobRow]],
    ) -> None:
        """End a running job nobody will finish as ``abandoned`` and plan its task's next step."""
        conn.execute(
            update(jobs)
            .where(jobs.c.id == found.id, jobs.c.status == JobStatus.RUNNING.value)
            .values(
                status=JobStatus.ABANDONED.value,
                ended_at=max(now, found.started_at),
                duration_seconds=max(0.0, now - found.started_at),
                error_message=why,
            )
        )
        ended = found._replace(
            status=JobStatus.ABANDONED.value,
            ended_at=max(now, found.started_at),
            duration_seconds=max(0.0, now - found.started_at),
            error_message=why,
        )
        row = conn.execute(select(tasks).where(tasks.c.id == found.task_id).with_for_update()).first()
        if row is None:
            out.append((_orphan_view(found), ended))
            return
        state = self.hydrate(row._mapping, None)
        if row._mapping["running_job"] == found.id:
            job = JobState(
                id=found.id,
                task=state,
                task_name=found.task_name,
                due=found.scheduled_for or found.started_at,
                started=found.started_at,
                cycle_due=state.cycle_due if state.cycle_due is not None else found.started_at,
                status=JobStatus.ABANDONED,
                attempt=found.attempt,
                retry_of=found.retry_of,
            )
            state.running = job
            plan = state.end_job(job, now)
            missed += self._record_overlap(conn, state, job, plan, now)
            self._save(conn, state, plan)
        out.append((state.view(), ended))

    def abandon_unowned(
        self, worker_id: str, live: set[str]
    ) -> tuple[list[tuple[TaskView, JobRow]], list[tuple[TaskView, JobRow]]]:
        """End as ``abandoned`` the jobs running under ``worker_id`` that this process does not run.

        After a transaction failed without an answer, its claim may have been
        committed all the same: the job then runs nowhere while this worker's
        heartbeat keeps the sweep away. The same holds for a job whose end
        could not be written. The caller passes the ids it does run.
        Returns ``(ended jobs, slots recorded as missed)`` like :meth:`sweep`.
        """
        out: list[tuple[TaskView, JobRow]] = []
        missed: list[tuple[TaskView, JobRow]] = []
        with self._tx("look for runs this process lost track of") as conn:
            now = self.now(conn)
            strays = conn.execute(
                select(*_JOB_COLUMNS)
                .where(jobs.c.status == JobStatus.RUNNING.value, jobs.c.worker == worker_id)
                .with_for_update(skip_locked=True)
            ).all()
            for stray in strays:
                found = JobRow(*stray)
                if found.id in live:
                    continue
                why = (
                    "abandoned: its process lost the database's answer while claiming or ending it, "
                    "so it never ran it to the end"
                )
                self._abandon(conn, found, now, why, out, missed)
            if out:
                self.notify(conn, "quiv_wake")
                self._tell_ended(conn, [f"{row.task_id}:{row.id}" for _, row in out])
        return out, missed

    # ------------------------------------------------------------ control
    def transition(
        self, task_id: str, what: str, step: Callable[[TaskState, float], Plan], local: dict[str, _Local]
    ) -> TaskView:
        """Load a task, apply ``step`` (a transition), save it and wake the other processes."""
        with self._tx(what) as conn:
            now = self.now(conn)
            row = conn.execute(select(tasks).where(tasks.c.id == task_id).with_for_update()).first()
            if row is None:
                raise TaskNotFoundError(f"no task with id {task_id!r}")
            state = self.hydrate(row._mapping, local.get(row._mapping["task_name"]))
            plan = step(state, now)
            self._save(conn, state, plan)
            self.notify(conn, "quiv_wake")
            return state.view()

    def remove(self, task_id: str) -> tuple[TaskView, str | None]:
        """Delete a task row: ``(its last view, the id of a job of it still running)``."""
        with self._tx("remove a task") as conn:
            row = conn.execute(select(tasks).where(tasks.c.id == task_id).with_for_update()).first()
            if row is None:
                raise TaskNotFoundError(f"no task with id {task_id!r}")
            state = self.hydrate(row._mapping, None)
            conn.execute(delete(tasks).where(tasks.c.id == task_id))
            running = row._mapping["running_job"]
            if running is not None:
                conn.execute(update(jobs).where(jobs.c.id == running).values(cancel_requested=True))
                self.notify(conn, "quiv_cancel", running)
            self.notify(conn, "quiv_wake")
            if row._mapping["awaited_until"] > 0:  # a mark that has expired costs one spare NOTIFY
                self._tell_ended(conn, [task_id])
            return state.view(), running

    def request_cancel(self, job_id: str) -> bool:
        """Ask the process running ``job_id`` to set its stop event.

        False if it is not running, or was asked already.
        """
        with self._tx("cancel a job") as conn:
            result = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.status == JobStatus.RUNNING.value,
                    jobs.c.cancel_requested.is_(False),
                )
                .values(cancel_requested=True)
            )
            if result.rowcount:
                self.notify(conn, "quiv_cancel", job_id)
            return bool(result.rowcount)

    def cancel_requests(self, worker_id: str) -> list[str]:
        """Running jobs of this worker that someone asked to cancel (the polling floor under NOTIFY)."""
        with self._tx("read cancel requests") as conn:
            return [
                r[0]
                for r in conn.execute(
                    select(jobs.c.id).where(
                        jobs.c.worker == worker_id,
                        jobs.c.status == JobStatus.RUNNING.value,
                        jobs.c.cancel_requested.is_(True),
                    )
                )
            ]

    # -------------------------------------------------------------- reads
    def task_view(self, task_id: str, local: dict[str, _Local]) -> TaskView:
        with self._tx("read a task") as conn:
            row = conn.execute(select(tasks).where(tasks.c.id == task_id)).first()
            declared = self._declared(conn) if row is not None else set()
        if row is None:
            raise TaskNotFoundError(f"no task with id {task_id!r}")
        name = row._mapping["task_name"]
        return self.hydrate(row._mapping, local.get(name)).view()._replace(declared=name in declared)

    def task_views(self, local: dict[str, _Local], include_run_once: bool) -> list[TaskView]:
        statement = select(tasks).order_by(tasks.c.created_at, tasks.c.id)
        if not include_run_once:
            statement = statement.where(tasks.c.run_once.is_(False))
        with self._tx("read the tasks") as conn:
            rows = conn.execute(statement).all()
            declared = self._declared(conn)
        views = []
        for row in rows:
            name = row._mapping["task_name"]
            views.append(
                self.hydrate(row._mapping, local.get(name)).view()._replace(declared=name in declared)
            )
        return views

    @staticmethod
    def _declared(conn: Connection) -> set[str]:
        """The task names some live process declares."""
        rows = conn.execute(select(workers.c.tasks)).all()
        return {name for (names,) in rows for name in names.split("\n") if name}

    def list_workers(self) -> tuple[float, list[WorkerRow]]:
        """``(now, the processes registered)``, oldest first; ``now`` on the clock heartbeats use."""
        with self._tx("read the live processes") as conn:
            now = self.now(conn)
            rows = conn.execute(
                select(
                    workers.c.id,
                    workers.c.host,
                    workers.c.pid,
                    workers.c.started_at,
                    workers.c.heartbeat_at,
                    workers.c.tasks,
                ).order_by(workers.c.started_at, workers.c.id)
            ).all()
        return now, [
            WorkerRow(id_, host, pid, started, beat, tuple(n for n in names.split("\n") if n))
            for id_, host, pid, started, beat, names in rows
        ]

    def task_counts(self) -> dict[str, int]:
        with self._tx("count the tasks") as conn:
            rows = conn.execute(select(tasks.c.status, func.count()).group_by(tasks.c.status)).all()
        return {str(status): int(count) for status, count in rows}

    def get_job(self, job_id: str) -> JobRow | None:
        with self._tx("read a job") as conn:
            row = conn.execute(select(*_JOB_COLUMNS).where(jobs.c.id == job_id)).first()
        return None if row is None else JobRow(*row)

    def list_jobs(self, query: JobQuery) -> list[JobRow]:
        with self._tx("read jobs") as conn:
            return [JobRow(*row) for row in conn.execute(page_statement(jobs, query))]

    def count_matching(self, query: JobQuery) -> int:
        with self._tx("count jobs") as conn:
            return int(conn.execute(count_statement(jobs, query)).scalar_one())

    def count_jobs(self) -> dict[str, int]:
        with self._tx("count jobs") as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        return {str(status): int(count) for status, count in rows}

    def purge_older_than(self, retention: float) -> None:
        """Delete finished jobs that ended more than ``retention`` s ago (database clock)."""
        with self._tx("purge old jobs", self.beat_engine) as conn:
            now = self.now(conn)
            conn.execute(delete(jobs).where(jobs.c.ended_at < now - retention, jobs.c.status.in_(_TERMINAL)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.engine.dispose()
        if self.beat_engine is not self.engine:
            self.beat_engine.dispose()
        if self._lockfile is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lockfile, fcntl.LOCK_UN)
                os.close(self._lockfile)
            self._lockfile = None


_SAVE_TASK = (
    update(tasks)
    .where(tasks.c.id == bindparam("_id"))
    .values(
        {
            c.name: bindparam(c.name)
            for c in tasks.c
            if c.name not in ("id", "created_at", "definition", "awaited_until")
        }
    )
)
_SAVE_STATE = (
    update(tasks)
    .where(tasks.c.id == bindparam("_id"))
    .values({name: bindparam(name) for name in pgfast.STATE_COLUMNS})
)
_END_JOB_SQLITE = text(
    "UPDATE quiv_jobs SET status = :status, error_message = :error,"
    " ended_at = max(:now, :started), duration_seconds = max(:now - :started, 0)"
    " WHERE id = :id AND worker = :worker AND attempt = :attempt AND status = 'running'"
    " RETURNING :now"
)


def _ended_copy(job: JobState) -> JobState:
    """The job as if it ended at once (for the backstop: its slot is taken)."""
    job.status = JobStatus.CANCELLED
    job.cancel_reason = "its slot already had a job"
    return job


def _orphan_view(found: JobRow) -> TaskView:
    from quiv._schedule.options import TaskSettings as _Settings

    settings = _Settings.validate({"interval": 1.0}, task_name=found.task_name)
    return TaskView(found.task_id, found.task_name, TaskStatus.ACTIVE, found.started_at, settings)


def _password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
        return None if password is None else str(password)
    except Exception:
        return None


def _pg_insert(table: Any) -> Any:
    from sqlalchemy.dialects.postgresql import insert

    return insert(table)


def _sqlite_insert(table: Any) -> Any:
    from sqlalchemy.dialects.sqlite import insert

    return insert(table)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
