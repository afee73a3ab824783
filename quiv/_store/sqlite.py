"""The default store: a private, temporary SQLite database through SQLModel."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    event,
    func,
    select,
)
from sqlalchemy.orm import registry
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel, create_engine

from quiv._exceptions import DatabaseError, DatabaseInitializationError
from quiv._schedule.options import COLUMNS
from quiv._store.base import TASK_IDENTITY, JobQuery, JobRow, TaskRow
from quiv._store.queries import count_statement, page_statement

__all__ = ["JobDB", "SQLiteStore"]

_TERMINAL = ("completed", "cancelled", "failed", "abandoned", "missed")


class _QuivTable(SQLModel, registry=registry()):
    """Base of quiv's tables: its own registry keeps them out of ``SQLModel.metadata``."""


_SQL_TYPES = {float: Float, int: Integer, bool: Boolean, str: String, bytes: LargeBinary}

#: Tasks: identity and state, then one column per stored option (from the option schema).
_task_table = Table(
    "quiv_task",
    _QuivTable.metadata,
    Column("id", String, primary_key=True),
    Column("task_name", String, nullable=False),
    Column("status", String, nullable=False),
    Column("next_run_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    *(Column(c.name, _SQL_TYPES[c.sql], nullable=c.nullable) for c in COLUMNS),
)


class JobDB(_QuivTable, table=True):
    """A persisted job. Times are epoch seconds (UTC).

    Pages of jobs are read in ``(started_at, id)`` order, optionally for one
    task or one status: each of the three indexes below serves one of those
    reads in order, so a page costs its size whatever the history holds.
    """

    __tablename__ = "quiv_job"
    __table_args__ = (
        Index("ix_quiv_job_started", "started_at", "id"),
        Index("ix_quiv_job_task_started", "task_id", "started_at", "id"),
        Index("ix_quiv_job_status_started", "status", "started_at", "id"),
    )

    id: str = Field(primary_key=True)
    task_id: str
    task_name: str
    status: str
    started_at: float
    ended_at: float | None = Field(default=None, index=True)
    duration_seconds: float | None = None
    error_message: str | None = None
    attempt: int = 1
    retry_of: str | None = Field(default=None, index=True)
    scheduled_for: float | None = None
    worker: str | None = None


_job_table = JobDB.__table__  # type: ignore[attr-defined]


def _upsert(table: Any, columns: tuple[str, ...]) -> str:
    assert tuple(c.name for c in table.columns) == columns, "row tuple and table columns disagree"
    return (
        f"INSERT OR REPLACE INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )


_UPSERT_TASK = _upsert(_task_table, (*TASK_IDENTITY, *(c.name for c in COLUMNS)))
_DELETE_TASK = f"DELETE FROM {_task_table.name} WHERE id = ?"
_UPSERT_JOB = _upsert(_job_table, JobRow._fields)


def _create_private_file(path: str) -> None:
    """Create ``path`` as a new 0600 file; refuse to follow or reuse anything already there."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(path, flags, 0o600))


class SQLiteStore:
    """Task and job rows in a SQLite file inside a fresh private temporary directory.

    The directory comes from :func:`tempfile.mkdtemp` (mode 0700, a random
    name created atomically), the file is created with ``O_EXCL`` and mode
    0600 before SQLite opens it, and both are deleted by :meth:`close`.
    One connection serves every thread, guarded by a lock.
    """

    def __init__(self) -> None:
        try:
            self.directory = tempfile.mkdtemp(prefix="quiv-")
            self.path = os.path.join(self.directory, "quiv.sqlite3")
            _create_private_file(self.path)
            self._engine: Engine = create_engine(
                f"sqlite:///{self.path}",
                connect_args={"check_same_thread": False},
                poolclass=StaticPool,
            )
            event.listen(self._engine, "connect", _configure_connection)
            _QuivTable.metadata.create_all(self._engine)
        except Exception as exc:
            self._remove_files()
            raise DatabaseInitializationError(f"could not create quiv's temporary database: {exc}") from exc
        self._lock = threading.Lock()
        self._closed = False

    # --- writes -------------------------------------------------------------
    def write(
        self, tasks: Sequence[TaskRow], deleted_tasks: Iterable[str], jobs: Sequence[tuple[Any, ...]]
    ) -> None:
        deleted = list(deleted_tasks)
        with self._lock, self._guard("write"), self._engine.begin() as conn:
            # Rows are plain tuples in column order: hand them to the driver's
            # executemany directly, which is several times cheaper per row.
            if tasks:
                conn.exec_driver_sql(_UPSERT_TASK, list(tasks))
            if deleted:
                conn.exec_driver_sql(_DELETE_TASK, [(task_id,) for task_id in deleted])
            if jobs:
                conn.exec_driver_sql(_UPSERT_JOB, list(jobs))

    def purge_jobs(self, ended_before: float) -> float | None:
        with self._lock, self._guard("purge"), self._engine.begin() as conn:
            conn.execute(
                delete(_job_table).where(
                    _job_table.c.ended_at < ended_before, _job_table.c.status.in_(_TERMINAL)
                )
            )
            oldest = conn.execute(
                select(func.min(_job_table.c.ended_at)).where(_job_table.c.status.in_(_TERMINAL))
            ).scalar()
        return float(oldest) if oldest is not None else None

    # --- reads --------------------------------------------------------------
    def get_job(self, job_id: str) -> JobRow | None:
        with self._lock, self._guard("read"), self._engine.connect() as conn:
            row = conn.execute(select(_job_table).where(_job_table.c.id == job_id)).first()
        return JobRow(*row) if row is not None else None

    def list_jobs(self, query: JobQuery) -> list[JobRow]:
        statement = page_statement(_job_table, query)
        with self._lock, self._guard("read"), self._engine.connect() as conn:
            return [JobRow(*row) for row in conn.execute(statement)]

    def count_matching(self, query: JobQuery) -> int:
        statement = count_statement(_job_table, query)
        with self._lock, self._guard("read"), self._engine.connect() as conn:
            return int(conn.execute(statement).scalar_one())

    def count_jobs(self) -> dict[str, int]:
        query = select(_job_table.c.status, func.count()).group_by(_job_table.c.status)
        with self._lock, self._guard("read"), self._engine.connect() as conn:
            return {str(status): int(count) for status, count in conn.execute(query)}

    # --- lifecycle ----------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._engine.dispose()
        self._remove_files()

    def _remove_files(self) -> None:
        directory = getattr(self, "directory", None)
        if directory:
            shutil.rmtree(directory, ignore_errors=True)

    def _guard(self, what: str) -> _Guard:
        if self._closed:
            raise DatabaseError(f"cannot {what}: quiv's database was closed by shutdown()")
        return _Guard(what)


class _Guard:
    """Turns a database failure into a ``DatabaseError`` naming the operation."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, DatabaseError) and isinstance(exc, Exception):
            raise DatabaseError(f"quiv's database failed during {self._what}: {exc}") from exc


def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
    # The database is private and temporary: durability buys nothing, speed does.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=MEMORY")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()
