"""Which database a scheduler keeps its state in: reading and checking ``database_url``.

No URL means the default: a private temporary SQLite database that
``shutdown()`` deletes. A URL picks a durable store:

* ``sqlite:///path/to/file.db``: durable, one process (a second one is refused);
* ``postgresql+psycopg://user:pass@host:port/db``: shared by any number of
  processes (``postgresql://`` means the same; other drivers are refused).

A URL's password never leaves this module in clear: :attr:`DatabaseTarget.shown`
is what logs, errors, ``repr()`` and the dashboard get.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from quiv._exceptions import ConfigurationError, InvalidArgumentError

__all__ = ["ENV_VAR", "DatabaseTarget", "parse_database_url", "resolve_database_url"]

#: Read when no ``database_url`` is passed.
ENV_VAR = "QUIV_DATABASE_URL"

_SQLITE = {"sqlite", "sqlite+pysqlite"}
_POSTGRES = {"postgresql", "postgresql+psycopg", "postgres"}


@dataclass(frozen=True)
class DatabaseTarget:
    """A checked database URL."""

    kind: Literal["sqlite", "postgresql"]
    #: What SQLAlchemy connects with (holds the password: never log it).
    url: str = field(repr=False)
    #: The URL with its password masked: safe for logs, errors and pages.
    shown: str
    #: SQLite: the database file. PostgreSQL: None.
    path: str | None = None
    host: str | None = None
    port: int | None = None
    database: str | None = None

    def __str__(self) -> str:
        return self.shown

    @property
    def where(self) -> str:
        """``host:port/database`` (PostgreSQL) or the file path (SQLite), for messages."""
        if self.kind == "sqlite":
            return str(self.path)
        return f"{self.host}:{self.port}/{self.database}"


def resolve_database_url(explicit: str | None) -> str | None:
    """The URL to use: the argument when given, else ``$QUIV_DATABASE_URL``, else None (temporary)."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(ENV_VAR, "").strip()
    return from_env or None


def parse_database_url(value: object) -> DatabaseTarget:
    """Check ``value`` and say which store it selects; raise ``ConfigurationError`` naming the problem."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"database_url must be a str, got {type(value).__name__}")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError) as exc:
        # The message of a parse error may quote the URL: say only what kind of thing went wrong.
        raise ConfigurationError(
            "database_url is not a database URL (expected sqlite:///path/to/file.db or "
            f"postgresql+psycopg://user@host:port/database): {type(exc).__name__}"
        ) from None
    shown = url.render_as_string(hide_password=True)
    driver = url.drivername
    if driver in _SQLITE:
        path = url.database
        if not path or path == ":memory:" or url.host:
            raise ConfigurationError(
                f"database_url {shown!r}: a SQLite URL needs a file path, as in sqlite:///path/to/quiv.db "
                "(leave database_url unset for the private temporary database)"
            )
        path = os.path.abspath(os.path.expanduser(path))
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise ConfigurationError(f"database_url {shown!r}: the directory {directory!r} does not exist")
        return DatabaseTarget("sqlite", f"sqlite:///{path}", shown, path=path)
    if driver in _POSTGRES:
        if not url.database:
            raise ConfigurationError(f"database_url {shown!r} names no database (…/dbname at the end)")
        try:
            port = url.port or 5432
        except ValueError:
            raise ConfigurationError(f"database_url {shown!r} has a port that is not a number") from None
        real = url.set(drivername="postgresql+psycopg")
        return DatabaseTarget(
            "postgresql",
            real.render_as_string(hide_password=False),
            real.render_as_string(hide_password=True),
            host=url.host or "localhost",
            port=port,
            database=url.database,
        )
    raise ConfigurationError(
        f"database_url {shown!r}: quiv stores its state in SQLite (sqlite:///path) or in PostgreSQL "
        f"through psycopg 3 (postgresql+psycopg://...), not in {driver!r}"
    )
