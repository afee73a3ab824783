"""The job reads both SQL stores share: a query's filters, its order and its page, as SQLAlchemy Core.

Jobs are read in ``(started_at, id)`` order (descending with ``newest_first``),
a total order, so pages never overlap or skip; each store has an index that
serves every filter in that order.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func, select

from quiv._store.base import JobQuery, JobRow

__all__ = ["count_statement", "page_statement"]

#: The largest integer SQLite and PostgreSQL take: a larger limit or offset means the same as this one.
_MAX_INTEGER = 2**63 - 1


def _filtered(statement: Select[Any], table: Table, query: JobQuery) -> Select[Any]:
    if query.task_id is not None:
        statement = statement.where(table.c.task_id == query.task_id)
    if query.status is not None:
        statement = statement.where(table.c.status == query.status)
    return statement


def page_statement(table: Table, query: JobQuery) -> Select[Any]:
    """The jobs ``query`` selects, as :class:`JobRow` columns, in its order and cut to its page."""
    columns = table.c
    order: tuple[ColumnElement[Any], ...]
    if query.newest_first:
        order = (columns.started_at.desc(), columns.id.desc())
    else:
        order = (columns.started_at.asc(), columns.id.asc())
    statement = _filtered(select(*(columns[name] for name in JobRow._fields)), table, query).order_by(*order)
    if query.limit is not None:
        statement = statement.limit(min(query.limit, _MAX_INTEGER))
    if query.offset:
        statement = statement.offset(min(query.offset, _MAX_INTEGER))
    return statement


def count_statement(table: Table, query: JobQuery) -> Select[Any]:
    """How many jobs pass the filters of ``query``."""
    return _filtered(select(func.count()).select_from(table), table, query)
