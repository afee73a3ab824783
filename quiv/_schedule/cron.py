"""Cron schedules evaluated in an IANA timezone, with plain wall-clock DST rules.

Parsing and iteration come from croniter (an optional dependency:
``pip install "quiv[cron]"``). quiv adds the daylight-saving rules on top,
working in local wall-clock time:

* a wall-clock time that does not exist (the hour skipped when clocks go
  forward) never fires;
* a wall-clock time that happens twice (the hour repeated when clocks go
  back) fires once, at its first occurrence.

Expressions have five fields (minute hour day month weekday), or six with a
leading seconds field, or are one of the aliases ``@yearly``/``@annually``,
``@monthly``, ``@weekly``, ``@daily``/``@midnight``, ``@hourly``.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Any

from quiv._exceptions import ConfigurationError

__all__ = ["CronSchedule"]

#: Give up looking for the next fire time after this many candidates (an
#: expression like "0 0 30 2 *" never fires).
_MAX_CANDIDATES = 1000


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "cron schedules need the croniter package: pip install 'quiv[cron]'"
        ) from exc
    return croniter


class CronSchedule:
    """A validated cron expression bound to a timezone."""

    __slots__ = ("_croniter", "expression", "second_at_beginning", "tz")

    def __init__(self, expression: str, tz: tzinfo) -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise ConfigurationError(f"cron must be a non-empty cron expression, got {expression!r}")
        croniter = _croniter()
        self.expression = " ".join(expression.split())
        fields = len(self.expression.split())
        self.second_at_beginning = fields == 6
        alias = self.expression.startswith("@") and fields == 1
        if (not alias and fields not in (5, 6)) or not croniter.is_valid(
            self.expression, second_at_beginning=self.second_at_beginning
        ):
            raise ConfigurationError(
                f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday), "
                "6 with a leading seconds field, or an alias such as @hourly"
            )
        self._croniter = croniter
        self.tz = tz
        if self.next_after(datetime.now(timezone.utc).timestamp()) is None:
            raise ConfigurationError(f"cron expression {expression!r} never fires")

    def next_after(self, after: float) -> float | None:
        """The first fire time strictly after ``after`` (epoch seconds), or None if there is none."""
        tz = self.tz
        local = datetime.fromtimestamp(after, timezone.utc).astimezone(tz)
        wall = local.replace(tzinfo=None)
        it = self._croniter(self.expression, wall, second_at_beginning=self.second_at_beginning)
        for _ in range(_MAX_CANDIDATES):
            try:
                candidate: datetime = it.get_next(datetime)
            except Exception:  # croniter gives up on dates that never come
                return None
            first = candidate.replace(tzinfo=tz, fold=0)
            if first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != candidate:
                continue  # skipped by a clock change: this wall time does not exist
            instant = first.timestamp()
            if instant <= after:
                continue  # a repeated wall time whose first occurrence has passed
            return instant
        return None

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r}, {self.tz})"
