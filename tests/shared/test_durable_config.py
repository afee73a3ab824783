"""Choosing a database: bad URLs and settings are refused early, passwords stay hidden.

Everything a URL can get wrong is caught when ``Quiv(...)`` or
``QuivConfig(...)`` is built, before a file, a thread or a connection exists.
Problems only the server can reveal (it is down, the role may not create
tables) surface at ``start()`` as a ``DatabaseError`` that says where and why,
never with the password in it.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from quiv import ConfigurationError, DatabaseError, InvalidArgumentError, Quiv, QuivConfig

from .conftest import admin_execute
from .durable_support import LogRecords, eventually, private_logger, sql

PASSWORD = "pw-Zq7xK2"

BAD_URLS = [
    pytest.param("not a url at all", "not a database URL", id="malformed"),
    pytest.param("", "not a database URL", id="empty"),
    pytest.param(f"mysql://app:{PASSWORD}@db.example/quiv", "mysql", id="mysql"),
    pytest.param(f"postgresql+psycopg2://app:{PASSWORD}@db.example/quiv", "psycopg2", id="psycopg2"),
    pytest.param(f"postgresql+asyncpg://app:{PASSWORD}@db.example/quiv", "asyncpg", id="asyncpg"),
    pytest.param(f"postgresql+psycopg://app:{PASSWORD}@db.example:port/quiv", "", id="bad-port"),
    pytest.param(f"postgresql+psycopg://app:{PASSWORD}@db.example:5432", "names no database", id="no-db"),
    pytest.param("sqlite://", "needs a file path", id="sqlite-no-path"),
    pytest.param("sqlite:///", "needs a file path", id="sqlite-empty-path"),
    pytest.param("sqlite:///:memory:", "needs a file path", id="sqlite-memory"),
]


def _quiv_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("quiv")}


@pytest.mark.parametrize(("url", "says"), BAD_URLS)
@pytest.mark.parametrize("build", [Quiv, QuivConfig], ids=["Quiv", "QuivConfig"])
def test_a_bad_url_is_refused_when_built(
    url: str, says: str, build: Callable[..., object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bad URL raises ``ConfigurationError`` at construction, names the problem, hides the password."""
    monkeypatch.chdir(tmp_path)  # a relative SQLite path would land here: nothing may appear
    threads = _quiv_threads()
    with pytest.raises(ConfigurationError) as caught:
        build(database_url=url)
    message = str(caught.value)
    assert says in message
    assert PASSWORD not in message
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))
    assert list(tmp_path.iterdir()) == []
    assert _quiv_threads() == threads


def test_a_sqlite_file_in_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """The directory is named in the error and is not created."""
    missing = tmp_path / "nowhere" / "deeper"
    with pytest.raises(ConfigurationError, match="does not exist") as caught:
        Quiv(database_url=f"sqlite:///{missing / 'quiv.db'}")
    assert str(missing) in str(caught.value)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("value", [42, b"sqlite:///x.db", Path("x.db")], ids=["int", "bytes", "path"])
def test_a_url_that_is_not_a_str_is_a_type_error(value: object) -> None:
    """A non-str URL is an ``InvalidArgumentError`` (a ``TypeError`` and a ``ConfigurationError``)."""
    with pytest.raises(InvalidArgumentError, match="database_url must be a str") as caught:
        Quiv(database_url=value)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    with pytest.raises(InvalidArgumentError):
        QuivConfig(database_url=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"heartbeat_seconds": 0}, "heartbeat_seconds"),
        ({"poll_seconds": -1}, "poll_seconds"),
        ({"connect_timeout_seconds": float("inf")}, "connect_timeout_seconds"),
        ({"dead_after_seconds": float("nan")}, "dead_after_seconds"),
        ({"heartbeat_seconds": 5, "dead_after_seconds": 9}, "at least twice"),
    ],
    ids=["heartbeat-zero", "poll-negative", "timeout-infinite", "dead-nan", "dead-too-short"],
)
def test_durable_settings_are_checked(settings: dict[str, float], says: str, sqlite_url: str) -> None:
    """The timing settings must be finite and positive, and a death must outlast two heartbeats."""
    with pytest.raises(ConfigurationError, match=says):
        QuivConfig(database_url=sqlite_url, **settings)  # type: ignore[arg-type]


def test_notify_must_be_a_bool(sqlite_url: str) -> None:
    """``notify="no"`` is a type error, not a truthy value."""
    with pytest.raises(InvalidArgumentError, match="notify"):
        QuivConfig(database_url=sqlite_url, notify="no")  # type: ignore[arg-type]


def test_repr_hides_the_password() -> None:
    """``repr`` of a config and of a scheduler shows the URL with the password masked."""
    url = f"postgresql+psycopg://app:{PASSWORD}@db.example:6543/jobs"
    config = QuivConfig(database_url=url)
    scheduler = Quiv(config=config)
    for shown in (repr(config), repr(scheduler), str(config)):
        assert PASSWORD not in shown
        assert "db.example:6543/jobs" in shown
        assert "***" in shown
    assert PASSWORD not in repr(Quiv(database_url=url))


def test_the_environment_variable_is_used_without_an_argument(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_quiv: Callable[..., Quiv]
) -> None:
    """With no ``database_url``, ``QUIV_DATABASE_URL`` picks the durable file."""
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("QUIV_DATABASE_URL", f"sqlite:///{path}")
    scheduler = make_quiv()
    assert scheduler.worker_id is not None
    assert str(path) in repr(scheduler)
    scheduler.add_task("noop", lambda: None, interval=60)
    assert path.exists()


def test_an_explicit_argument_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, make_quiv: Callable[..., Quiv]
) -> None:
    """An explicit URL is used even when the variable names another (here, an unusable) one."""
    monkeypatch.setenv("QUIV_DATABASE_URL", f"mysql://app:{PASSWORD}@db.example/quiv")
    chosen = tmp_path / "explicit.db"
    scheduler = make_quiv(database_url=f"sqlite:///{chosen}")
    assert str(chosen) in repr(scheduler)
    scheduler.add_task("noop", lambda: None, interval=60)
    assert chosen.exists()


def test_a_bad_environment_variable_is_refused_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad ``QUIV_DATABASE_URL`` fails ``Quiv()`` the same way a bad argument does."""
    monkeypatch.setenv("QUIV_DATABASE_URL", f"mysql://app:{PASSWORD}@db.example/quiv")
    with pytest.raises(ConfigurationError, match="mysql") as caught:
        Quiv()
    assert PASSWORD not in str(caught.value)


def test_config_and_database_url_together_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    """``config=`` holds every setting: a ``database_url=`` beside it is refused, not merged."""
    with pytest.raises(ConfigurationError, match="database_url"):
        Quiv(config=QuivConfig(), database_url=sqlite_url)
    with pytest.raises(ConfigurationError, match="database_url"):
        Quiv(config=QuivConfig(database_url=sqlite_url), database_url=sqlite_url)
    assert not (tmp_path / "quiv.db").exists()


def test_building_a_sqlite_scheduler_creates_nothing(sqlite_url: str, tmp_path: Path) -> None:
    """The file appears on first use, not when the scheduler is built."""
    scheduler = Quiv(database_url=sqlite_url)
    try:
        assert list(tmp_path.iterdir()) == []
    finally:
        scheduler.shutdown()


def test_without_psycopg_a_postgresql_url_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """With psycopg not importable, ``Quiv(...)`` names the extra to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigurationError, match=r"quiv\[postgres\]"):
        Quiv(database_url="postgresql+psycopg://app@db.example/quiv")


@pytest.mark.parametrize(
    ("host", "port"),
    [("127.0.0.1", 1), ("10.255.255.1", 5432)],
    ids=["refused", "no-answer"],
)
def test_an_unreachable_server_fails_start_within_the_timeout(host: str, port: int) -> None:
    """``start()`` raises ``DatabaseError`` naming host and port (not the password) within the timeout."""
    logger = private_logger()
    records = LogRecords(logger)
    url = f"postgresql+psycopg://postgres:{PASSWORD}@{host}:{port}/x"
    scheduler = Quiv(config=QuivConfig(database_url=url, connect_timeout_seconds=2), logger=logger)
    began = time.monotonic()
    with pytest.raises(DatabaseError) as caught:
        scheduler.start()
    elapsed = time.monotonic() - began
    assert elapsed < 2 + 2.5, f"start() took {elapsed:.1f} s with connect_timeout_seconds=2"
    message = str(caught.value)
    assert f"{host}:{port}" in message
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))
    assert all(PASSWORD not in line for line in records.messages())
    assert scheduler.stopped
    scheduler.shutdown()


def test_logs_never_show_the_password(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """A whole run (start, a job, a missing task, shutdown) logs the URL without its password."""
    url = make_url(pg_url).set(password=PASSWORD).render_as_string(hide_password=False)
    logger = private_logger()
    records = LogRecords(logger)
    scheduler = make_quiv(config=QuivConfig(database_url=url, poll_seconds=0.5), logger=logger)
    done = threading.Event()
    task_id = scheduler.add_task("tick", done.set, interval=60)
    scheduler.start()
    scheduler.run_task_immediately(task_id)
    assert done.wait(10)
    assert PASSWORD not in repr(scheduler)
    scheduler.shutdown()
    messages = records.messages()
    assert any("quiv runs as worker" in m for m in messages)
    assert all(PASSWORD not in m for m in messages)


@pytest.fixture
def noperm_url(pg_url: str, pg_conninfo: str) -> Iterator[tuple[str, str]]:
    """A login role that may connect to the test database but not create anything: (url, role)."""
    role = f"quiv_noperm_{uuid.uuid4().hex[:8]}"
    admin_execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    try:
        url = make_url(pg_url).set(username=role, password=PASSWORD).render_as_string(hide_password=False)
        yield url, role
    finally:
        sql(pg_conninfo, f"DROP OWNED BY {role}")
        admin_execute(f"DROP ROLE IF EXISTS {role}")


def test_a_role_without_create_gets_a_clear_error(
    noperm_url: tuple[str, str], make_quiv: Callable[..., Quiv]
) -> None:
    """The error says permission was denied and what grant is missing, without the password."""
    url, _role = noperm_url
    scheduler = make_quiv(config=QuivConfig(database_url=url, connect_timeout_seconds=5))
    with pytest.raises(DatabaseError) as caught:
        scheduler.start()
    message = str(caught.value)
    assert "permission denied" in message
    assert "GRANT CREATE" in message
    assert PASSWORD not in message


def test_a_role_without_create_works_once_the_tables_exist(
    noperm_url: tuple[str, str], pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """The documented way out: an owner creates the tables once, the limited role then runs tasks."""
    url, role = noperm_url
    owner = make_quiv(database_url=pg_url)
    owner.start()
    owner.shutdown()
    sql(pg_conninfo, f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    limited = make_quiv(config=QuivConfig(database_url=url, poll_seconds=0.5))
    done = threading.Event()
    task_id = limited.add_task("tick", done.set, interval=60, delay=60)
    limited.start()
    limited.run_task_immediately(task_id)
    assert done.wait(10)
    assert eventually(lambda: limited.count_jobs("completed", task_id=task_id) == 1)
