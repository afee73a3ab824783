"""The durable tables, their version, and creating or upgrading them once.

Four tables, all named ``quiv_*``:

* ``quiv_tasks``: one row per task, keyed by id and unique by name. Beside the
  options' columns (from the option schema) it holds the task's whole
  scheduling state, so any process can load it, apply a transition of the
  state machine and write it back.
* ``quiv_jobs``: one row per run, and one per slot nobody ran (``missed``).
  ``UNIQUE (task_id, scheduled_for)`` makes a second run of a slot impossible.
* ``quiv_workers``: one row per live process, with its heartbeat.
* ``quiv_meta``: the schema version.

:func:`prepare` creates what is missing and upgrades an older schema in one
transaction under an advisory lock (PostgreSQL), so processes starting
together do it once; a newer schema than this code knows is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    text,
    update,
)

from quiv._exceptions import ConfigurationError
from quiv._schedule.options import COLUMNS

__all__ = ["SCHEMA_VERSION", "jobs", "metadata", "prepare", "tasks", "workers"]

#: The version this code writes and reads. Bump it with an entry in ``_UPGRADES``.
SCHEMA_VERSION = 2
#: ``pg_advisory_xact_lock`` key for schema changes (any fixed number; "quiv" in ASCII).
_LOCK_KEY = 0x71756976

metadata = MetaData()

_TIME = Float(53)
_SQL_TYPES: dict[type, Any] = {float: _TIME, int: Integer, bool: Boolean, str: String, bytes: LargeBinary}

tasks = Table(
    "quiv_tasks",
    metadata,
    Column("id", String, primary_key=True),
    Column("task_name", String, nullable=False, unique=True),
    Column("status", String, nullable=False),
    Column("next_run_at", _TIME, nullable=False),
    Column("created_at", _TIME, nullable=False),
    *(Column(c.name, _SQL_TYPES[c.sql], nullable=c.nullable) for c in COLUMNS),
    # A hash of the definition the code declared: a restart with the same one adopts the row as it is.
    Column("definition", String, nullable=False),
    # The rest of the state machine (quiv._core.task.TaskState).
    Column("nominal", _TIME, nullable=False),
    Column("cycle_due", _TIME),
    Column("retry_attempt", Integer),
    Column("retry_of", String),
    Column("requested_at", _TIME),
    Column("requested_forced", Boolean, nullable=False, default=False),
    Column("manual_due", _TIME),
    Column("started_once", Boolean, nullable=False, default=False),
    Column("running_job", String),
    # Until when (database clock) some process waits for a job of this task to end
    # (wait_for_job, wait_for_task): such an end sends NOTIFY quiv_ended. Added in version 2.
    Column("awaited_until", _TIME, nullable=False, default=0.0, server_default=text("0")),
    Index("ix_quiv_tasks_due", "next_run_at"),
)

jobs = Table(
    "quiv_jobs",
    metadata,
    Column("id", String, primary_key=True),
    Column("task_id", String, nullable=False),
    Column("task_name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("started_at", _TIME, nullable=False),
    Column("ended_at", _TIME),
    Column("duration_seconds", _TIME),
    Column("error_message", Text),
    Column("attempt", Integer, nullable=False),
    Column("retry_of", String),
    Column("scheduled_for", _TIME, nullable=False),
    Column("worker", String),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    UniqueConstraint("task_id", "scheduled_for", name="uq_quiv_jobs_slot"),
    Index("ix_quiv_jobs_started", "started_at", "id"),
    Index("ix_quiv_jobs_task_started", "task_id", "started_at", "id"),
    Index("ix_quiv_jobs_status_started", "status", "started_at", "id"),
    Index("ix_quiv_jobs_worker_status", "worker", "status"),
    Index("ix_quiv_jobs_ended", "ended_at"),
)

workers = Table(
    "quiv_workers",
    metadata,
    Column("id", String, primary_key=True),
    Column("started_at", _TIME, nullable=False),
    Column("heartbeat_at", _TIME, nullable=False),
    Column("host", String, nullable=False),
    Column("pid", Integer, nullable=False),
    # The task names this process can run, one per line.
    Column("tasks", Text, nullable=False, default=""),
    # True while this process's live stream has clients: the others relay their events to it.
    Column("wants_events", Boolean, nullable=False, default=False),
)

meta = Table(
    "quiv_meta",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", String, nullable=False),
)


def _add_awaited_until(conn: Connection) -> None:
    """Version 1 to 2: the tasks' ``awaited_until`` column."""
    kind = "double precision" if conn.dialect.name == "postgresql" else "REAL"
    conn.execute(text(f"ALTER TABLE quiv_tasks ADD COLUMN awaited_until {kind} NOT NULL DEFAULT 0"))


#: ``_UPGRADES[n]`` takes a schema from version ``n`` to ``n + 1``.
_UPGRADES: dict[int, Callable[[Connection], None]] = {1: _add_awaited_until}


def prepare(conn: Connection, *, postgres: bool) -> int:
    """Create or upgrade the tables inside the caller's transaction; return the version found (0: new).

    Raises ``ConfigurationError`` for a schema newer than this code.
    """
    if postgres:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    metadata.create_all(conn, checkfirst=True)
    found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    if found is None:
        conn.execute(insert(meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
        return 0
    version = int(found)
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"quiv's tables are at schema version {version}, newer than this quiv understands "
            f"({SCHEMA_VERSION}): upgrade quiv in this process, or point it at another database"
        )
    for step in range(version, SCHEMA_VERSION):
        _UPGRADES[step](conn)
    if version < SCHEMA_VERSION:
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
    return version
