"""Scheduler configuration and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from quiv._exceptions import ConfigurationError, InvalidArgumentError, InvalidTimezoneError

__all__ = ["QuivConfig", "resolve_timezone"]


class _DefaultInt(int):
    """An int default whose identity tells "not passed" from "passed the same value"."""


class _DefaultStr(str):
    """A str default whose identity tells "not passed" from "passed the same value"."""


DEFAULT_POOL_SIZE: int = _DefaultInt(10)
DEFAULT_RETENTION: int = _DefaultInt(86400)
DEFAULT_TIMEZONE: str = _DefaultStr("UTC")
#: How long shutdown() waits for running jobs to notice their stop event, by default.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0


def resolve_timezone(value: object) -> tzinfo:
    """Turn an IANA name or a ``tzinfo`` into a ``tzinfo``, or raise ``InvalidTimezoneError``."""
    if isinstance(value, tzinfo):
        return value
    if not isinstance(value, str):
        raise InvalidArgumentError(f"timezone must be an IANA name or a tzinfo, got {value!r}")
    if not value:
        raise InvalidTimezoneError(f"timezone must be an IANA name or a tzinfo, got {value!r}")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimezoneError(f"unknown timezone {value!r}") from exc


def _check_number(name: str, value: object, minimum: int, *, integral: bool) -> None:
    kinds: tuple[type, ...] = (int,) if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidArgumentError(f"{name} must be {'an int' if integral else 'a number'}, got {value!r}")
    assert isinstance(value, (int, float))
    if value != value:  # NaN
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum}, got {value!r}")


@dataclass(frozen=True, repr=False)
class QuivConfig:
    """Grouped scheduler settings, validated when built.

    ``database_url`` picks where state lives: unset (and no ``QUIV_DATABASE_URL``)
    is the private temporary SQLite database; ``sqlite:///file`` is durable for
    one process; ``postgresql+psycopg://...`` is shared by many. The other
    settings tune the durable modes (see docs/multiple-processes.md).
    """

    pool_size: int = 10
    history_retention_seconds: float = 86400
    timezone: str | tzinfo = "UTC"
    database_url: str | None = None
    #: How often each process records that it lives.
    heartbeat_seconds: float = 5.0
    #: A process silent this long is presumed dead; its running jobs end ``abandoned``.
    dead_after_seconds: float = 30.0
    #: The longest a process goes without looking for due runs (the floor under NOTIFY).
    poll_seconds: float = 2.0
    #: PostgreSQL: wake the other processes with LISTEN/NOTIFY (False behind pgbouncer in transaction mode).
    notify: bool = True
    #: How long connecting to the database may take before start() fails.
    connect_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        _check_number("pool_size", self.pool_size, 1, integral=True)
        _check_number("history_retention_seconds", self.history_retention_seconds, 0, integral=False)
        resolve_timezone(self.timezone)
        if self.database_url is not None:
            from quiv._durable.url import parse_database_url

            parse_database_url(self.database_url)
        for name in ("heartbeat_seconds", "dead_after_seconds", "poll_seconds", "connect_timeout_seconds"):
            value = getattr(self, name)
            _check_number(name, value, 0, integral=False)
            if value <= 0 or value == float("inf"):
                raise ConfigurationError(f"{name} must be a finite number > 0, got {value!r}")
        if self.dead_after_seconds < 2 * self.heartbeat_seconds:
            raise ConfigurationError(
                f"dead_after_seconds ({self.dead_after_seconds:g}) must be at least twice "
                f"heartbeat_seconds ({self.heartbeat_seconds:g}), or a slow heartbeat looks like a death"
            )
        if not isinstance(self.notify, bool):
            raise InvalidArgumentError(f"notify must be a bool, got {self.notify!r}")

    def __repr__(self) -> str:
        shown = None
        if self.database_url is not None:
            from quiv._durable.url import parse_database_url

            shown = parse_database_url(self.database_url).shown
        return (
            f"QuivConfig(pool_size={self.pool_size!r}, history_retention_seconds="
            f"{self.history_retention_seconds!r}, timezone={self.timezone!r}, database_url={shown!r}, "
            f"heartbeat_seconds={self.heartbeat_seconds!r}, dead_after_seconds={self.dead_after_seconds!r}, "
            f"poll_seconds={self.poll_seconds!r}, notify={self.notify!r}, "
            f"connect_timeout_seconds={self.connect_timeout_seconds!r})"
        )
