"""The statements of the hot path on PostgreSQL, sent straight through psycopg.

A claim and a job's end run a handful of statements each, hundreds of times a
second under load, and on the default machine it was quiv's own CPU, not the
server, that capped the rate: building SQLAlchemy statements, their cache
keys and result objects, and dumping arrays parameter by parameter cost more
than the round trips. So these statements are fixed SQL strings, run on the
psycopg connection under the SQLAlchemy transaction that the store opened (so
commit, rollback and the pool's handling of broken connections are
unchanged). Batches travel as one JSON parameter and are unpacked by the
server (``json_populate_recordset``), and psycopg prepares each statement on
the server once it has been run a few times.

The rules stay where they were: the store decides what to claim and write
with the same state machine; this module only carries rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from quiv._enums import TaskStatus
from quiv._store.base import JobRow

__all__ = [
    "claim_rows",
    "end_jobs",
    "id_array",
    "insert_jobs",
    "save_states",
    "soonest",
]

#: The task columns a claim or a job's end changes (never the options: only ``update_task`` does).
STATE_COLUMNS = (
    "status",
    "next_run_at",
    "nominal",
    "cycle_due",
    "retry_attempt",
    "retry_of",
    "requested_at",
    "requested_forced",
    "manual_due",
    "started_once",
    "running_job",
)
_JOB_COLUMNS = (*JobRow._fields, "cancel_requested")

_SCHEDULED = f"id = ANY(%s::varchar[]) AND (status <> '{TaskStatus.PAUSED.value}' OR manual_due IS NOT NULL)"
_CLAIMABLE = f"{_SCHEDULED} AND running_job IS NULL"
#: Lock this worker's row against a sweep, read the database clock, and take the due rows, in one
#: round trip. No row at all: the worker row is gone. One row of NULLs after ``_now``: nothing is due.
_CLAIM = (
    "WITH w AS (SELECT extract(epoch FROM clock_timestamp()) AS _now FROM quiv_workers"
    " WHERE id = %s FOR KEY SHARE)"
    " SELECT w._now, t.* FROM w LEFT JOIN LATERAL ("
    f"SELECT * FROM quiv_tasks WHERE {_CLAIMABLE} AND next_run_at <= w._now + %s"
    " ORDER BY next_run_at LIMIT %s FOR UPDATE SKIP LOCKED) AS t ON true"
)
#: A running task's next slot (in the future) counts: the claimer wakes for it in case the run ends first.
_SOONEST = (
    f"SELECT min(next_run_at) FROM quiv_tasks WHERE {_SCHEDULED}"
    " AND (running_job IS NULL OR next_run_at > %s)"
)
_INSERT_JOBS = (
    f"INSERT INTO quiv_jobs ({', '.join(_JOB_COLUMNS)})"
    f" SELECT {', '.join(_JOB_COLUMNS)} FROM json_populate_recordset(NULL::quiv_jobs, %s)"
    " ON CONFLICT (task_id, scheduled_for) DO NOTHING RETURNING id"
)
_SAVE_STATES = (
    "UPDATE quiv_tasks AS t SET "
    + ", ".join(f"{name} = v.{name}" for name in STATE_COLUMNS)
    + " FROM json_populate_recordset(NULL::quiv_tasks, %s) AS v WHERE t.id = v.id"
)
#: The fenced end of each job (see the store): only a row still running under this worker and
#: attempt. Each end written comes back with the clock and its task's row, locked (NULLs: removed).
_END_JOBS = (
    "WITH e AS (UPDATE quiv_jobs AS j SET status = v.status, error_message = v.error,"
    " ended_at = greatest(extract(epoch FROM clock_timestamp()), v.started),"
    " duration_seconds = greatest(extract(epoch FROM clock_timestamp()) - v.started, 0)"
    " FROM json_to_recordset(%s)"
    " AS v(id varchar, worker varchar, attempt integer, status varchar, error text, started float8)"
    " WHERE j.id = v.id AND j.worker = v.worker AND j.attempt = v.attempt AND j.status = 'running'"
    " RETURNING j.id AS _job, j.task_id AS _task, extract(epoch FROM clock_timestamp()) AS _now)"
    " SELECT e._job, e._now, t.* FROM e"
    " LEFT JOIN LATERAL (SELECT * FROM quiv_tasks WHERE id = e._task FOR UPDATE) AS t ON true"
)


def id_array(ids: Iterable[str]) -> str:
    """A ``varchar[]`` literal of ``ids``: one text parameter instead of an array dumped item by item."""
    return "{" + ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in ids) + "}"


def _run(conn: Connection, statement: str, params: Sequence[Any], *, dicts: bool = False) -> list[Any]:
    """Run ``statement`` on the transaction's psycopg connection; failures become SQLAlchemy's errors."""
    from psycopg import Error
    from psycopg import OperationalError as DriverOperationalError
    from psycopg.rows import dict_row

    raw = conn.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor(row_factory=dict_row) if dicts else raw.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description is not None else []
    except DriverOperationalError as exc:
        if raw.broken:
            conn.invalidate(exc)  # as SQLAlchemy does for a lost connection: the pool drops it
        raise OperationalError(statement, params, exc) from exc
    except Error as exc:
        raise DBAPIError(statement, params, exc) from exc


def _json(rows: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps(
        [{k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()} for row in rows],
        allow_nan=False,
    )


def claim_rows(
    conn: Connection, worker_id: str, ids: str, tolerance: float, limit: int
) -> tuple[float, list[dict[str, Any]]] | None:
    """Lock the worker row, read the clock, take up to ``limit`` due rows of tasks ``ids``.

    ``ids`` is an :func:`id_array`. Returns ``(the database clock, the rows, locked)``, or None
    if the worker row is gone.
    """
    rows = _run(conn, _CLAIM, (worker_id, ids, tolerance, limit), dicts=True)
    if not rows:
        return None
    now = float(rows[0]["_now"])
    for row in rows:
        del row["_now"]
    return now, [row for row in rows if row["id"] is not None]


def soonest(conn: Connection, ids: str, now: float) -> float | None:
    """The earliest ``next_run_at`` of tasks ``ids`` that could be claimed then (see :data:`_SOONEST`)."""
    value = _run(conn, _SOONEST, (ids, now))[0][0]
    return None if value is None else float(value)


def insert_jobs(conn: Connection, rows: Sequence[JobRow]) -> set[str]:
    """Insert job rows (a slot already taken is skipped); returns the ids inserted."""
    payload = _json({**row._asdict(), "cancel_requested": False} for row in rows)
    return {r[0] for r in _run(conn, _INSERT_JOBS, (payload,))}


def save_states(conn: Connection, states: Sequence[Mapping[str, Any]]) -> None:
    """Write the scheduling state (:data:`STATE_COLUMNS`, keyed by ``id``) of several task rows."""
    _run(conn, _SAVE_STATES, (_json(states),))


def end_jobs(
    conn: Connection, ends: Sequence[Mapping[str, Any]]
) -> list[tuple[str, float, dict[str, Any] | None]]:
    """Write fenced job ends (``id, worker, attempt, status, error, started``).

    Returns, for each end written, ``(job id, the database clock, its task's row locked or None)``.
    """
    return [
        (row.pop("_job"), float(row.pop("_now")), row if row["id"] is not None else None)
        for row in _run(conn, _END_JOBS, (_json(ends),), dicts=True)
    ]
