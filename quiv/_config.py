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


@dataclass(frozen=True)
class QuivConfig:
    """Grouped scheduler settings, validated when built."""

    pool_size: int = 10
    history_retention_seconds: float = 86400
    timezone: str | tzinfo = "UTC"

    def __post_init__(self) -> None:
        _check_number("pool_size", self.pool_size, 1, integral=True)
        _check_number("history_retention_seconds", self.history_retention_seconds, 0, integral=False)
        resolve_timezone(self.timezone)
