"""Fixtures for the durable and shared modes: a fresh PostgreSQL database per test, a SQLite file.

Tests that need PostgreSQL read its URL from ``QUIV_TEST_DATABASE_URL`` (for
example ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``): each test
gets its own database, created from that server and dropped afterwards.
Without the variable they skip, saying how to enable them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from quiv import Quiv, QuivConfig

if TYPE_CHECKING:
    from .procs import Cluster

ENV = "QUIV_TEST_DATABASE_URL"
SKIP_REASON = (
    f"PostgreSQL tests need {ENV}, e.g. {ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/postgres "
    "(any database the user may CREATE DATABASE from); .ci/run sets it"
)


def server_url() -> str:
    url = os.environ.get(ENV, "").strip()
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def _conninfo(url: str, database: str | None = None) -> str:
    """A psycopg connection string for ``url`` (a SQLAlchemy URL), optionally for another database."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def admin_execute(sql: str) -> None:
    """Run one statement outside a transaction on the server's maintenance database."""
    import psycopg

    with psycopg.connect(_conninfo(server_url()), autocommit=True) as conn:
        conn.execute(sql.encode())


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped (with its connections) after the test."""
    from sqlalchemy.engine import make_url

    base = server_url()
    name = f"quiv_test_{uuid.uuid4().hex[:12]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_conninfo(pg_url: str) -> str:
    """The same database as ``pg_url``, as a psycopg connection string (for audit tables and checks)."""
    return _conninfo(pg_url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A durable SQLite file in the test's own directory (not created yet)."""
    return f"sqlite:///{tmp_path / 'quiv.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def durable_url(request: pytest.FixtureRequest) -> str:
    """Each test twice: on PostgreSQL (:func:`pg_url`) and on a SQLite file (:func:`sqlite_url`)."""
    name = "pg_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def cluster(pg_url: str, pg_conninfo: str, tmp_path: Path) -> Iterator[Cluster]:
    """Real quiv processes (``tests/shared/procs.py``) on the test's database, with an audit table.

    Every process still alive when the test ends is killed; their stderr logs
    are kept in the test's directory.
    """
    from .procs import Cluster

    group = Cluster(pg_url, pg_conninfo, tmp_path)
    group.create_audit()
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def pair(pg_url: str) -> Iterator[tuple[Quiv, Quiv]]:
    """Two schedulers on one fresh database, standing for two processes (each its own worker id)."""
    config = QuivConfig(database_url=pg_url, heartbeat_seconds=0.2, dead_after_seconds=5, poll_seconds=0.5)
    first, second = Quiv(config=config), Quiv(config=config)
    try:
        yield first, second
    finally:
        first.shutdown(timeout=5)
        second.shutdown(timeout=5)
