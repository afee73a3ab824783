"""The task option schema: every option of a task, declared once.

Two declarations describe each option, both in this module:

* :class:`TaskOptions` (and the ``TypedDict``\\ s around it) give the types
  callers pass. ``add_task``, ``update_task``, ``@scheduler.task`` and
  ``TaskRegistry.task`` take them through ``Unpack[...]``, so mypy checks
  every call without the option list being written out again.
* :class:`TaskSettings` holds the validated values. Each of its fields
  carries the option's default, its checker, its doc line and, for options
  that are stored, its column (the store's column and the public ``Task``
  field of the same name).

Everything else derives from these: the store's task columns
(:data:`COLUMNS`, :meth:`TaskSettings.columns`), the public fields
(:meth:`TaskSettings.public_fields`), the FastAPI schema (from the public
``Task``), and update merging (:meth:`TaskSettings.merge`). Adding an option
means adding it here, using it where it has an effect, and documenting it.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import pickle
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from typing_extensions import TypedDict

from quiv._config import resolve_timezone
from quiv._exceptions import ConfigurationError, HandlerRegistrationError, InvalidArgumentError
from quiv._schedule.cron import CronSchedule
from quiv._schedule.policies import Misfire

__all__ = [
    "COLUMNS",
    "MAX_SECONDS",
    "Column",
    "DeclaredOptions",
    "MisfirePolicy",
    "ScheduleOptions",
    "TaskChanges",
    "TaskOptions",
    "TaskSettings",
    "check_seconds",
    "check_task_name",
    "describe_schedule",
]

MisfirePolicy = Literal["skip", "run_once"]

#: The largest number of seconds quiv accepts anywhere (100 years): every
#: instant it leads to stays a valid datetime, and every wait a valid timeout.
MAX_SECONDS = 100 * 365.25 * 86400.0


# ------------------------------------------------------------ what callers pass
class _LeadingOptions(TypedDict, total=False):
    """The options ``add_task`` also takes positionally, after ``interval`` (in this order)."""

    delay: float
    run_once: bool
    fixed_interval: bool
    args: tuple[Any, ...] | None
    kwargs: dict[str, Any] | None
    progress_callback: Callable[..., Any] | None


class ScheduleOptions(TypedDict, total=False):
    """The keyword-only options of ``add_task``."""

    cron: str | None
    cron_timezone: str | tzinfo | None
    run_at: datetime | None
    max_retries: int
    retry_backoff: float
    timeout: float | None
    jitter: float
    misfire: MisfirePolicy
    misfire_grace: float | None


class DeclaredOptions(_LeadingOptions, ScheduleOptions, total=False):
    """What ``@scheduler.task(interval, ...)`` takes after ``interval``: the options and a name."""

    name: str | None


class TaskOptions(_LeadingOptions, ScheduleOptions, total=False):
    """Every option of a task."""

    interval: float | None


class TaskChanges(TaskOptions, total=False):
    """What ``update_task`` may change: any option, the name and the handler."""

    task_name: str
    func: Callable[..., Any]


#: The positional order of ``add_task``'s options.
POSITIONAL = ("interval", *_LeadingOptions.__annotations__)


# ----------------------------------------------------------------- checkers
def check_task_name(task_name: object) -> str:
    """Return ``task_name`` if it is a non-blank str, else raise."""
    if not isinstance(task_name, str):
        raise InvalidArgumentError(f"task_name must be a str, got {task_name!r}")
    if not task_name.strip():
        raise ConfigurationError("task_name must not be empty")
    return task_name


def check_seconds(name: str, value: object, *, positive: bool) -> float:
    """``value`` as a float of seconds (> 0 or >= 0, at most :data:`MAX_SECONDS`), else raise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if (number > 0 if positive else number >= 0) and number <= MAX_SECONDS:
            return number  # the common case, checked cheaply; NaN fails every comparison
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} must be a number of seconds, got {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if positive and number <= 0:
        raise ConfigurationError(f"{name} must be > 0, got {value!r}")
    if not positive and number < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
    raise ConfigurationError(f"{name} must be at most {MAX_SECONDS:.0f} s (100 years), got {value!r}")


class _Context(NamedTuple):
    task_name: object


def _seconds(positive: bool, optional: bool) -> Callable[[str, object, _Context], Any]:
    def check(name: str, value: object, _ctx: _Context) -> float | None:
        if value is None and optional:
            return None
        return check_seconds(name, value, positive=positive)

    return check


def _flag(name: str, value: object, _ctx: _Context) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be a bool, got {value!r}")
    return value


def _pickled(value: object, name: str) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ConfigurationError(
            f"{name} must be picklable (quiv persists them); pickling failed: {exc}"
        ) from exc


def _args(name: str, value: object, _ctx: _Context) -> bytes:
    if value is None:
        value = ()
    elif not isinstance(value, tuple):
        raise InvalidArgumentError(f"args must be a tuple, got {type(value).__name__} {value!r}")
    return _pickled(value, name)


def _kwargs(name: str, value: object, _ctx: _Context) -> bytes:
    if value is None:
        value = {}
    elif not isinstance(value, dict):
        raise InvalidArgumentError(f"kwargs must be a dict, got {type(value).__name__} {value!r}")
    elif not all(isinstance(key, str) for key in value):
        raise InvalidArgumentError(f"kwargs keys must be str, got {list(value)!r}")
    return _pickled(value, name)


def _callback(name: str, value: object, ctx: _Context) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise HandlerRegistrationError(f"{name} for task {ctx.task_name!r} must be callable, got {value!r}")
    return value


def _cron(name: str, value: object, _ctx: _Context) -> str | None:
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a str cron expression, got {value!r}")
    return value


def _timezone(name: str, value: object, _ctx: _Context) -> tzinfo | None:
    return None if value is None else resolve_timezone(value)


def _instant(name: str, value: object, _ctx: _Context) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{name} must be a datetime, got {value!r}")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    return aware.timestamp()


def _count(name: str, value: object, _ctx: _Context) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
    return value


def _policy(name: str, value: object, _ctx: _Context) -> Misfire:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be 'skip' or 'run_once', got {value!r}")
    try:
        return Misfire(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be 'skip' or 'run_once', got {value!r}") from None


# ----------------------------------------------------------------- the schema
@dataclass(frozen=True, slots=True)
class Column:
    """How a stored option appears in the store and in the public ``Task``."""

    name: str
    sql: type  # the Python type SQLAlchemy maps: float, int, bool, str, bytes
    nullable: bool
    #: The column value, read from the settings (default: the option's value).
    store: Callable[[TaskSettings], Any] | None = None


def _option(
    default: object,
    check: Callable[[str, object, _Context], Any],
    doc: str,
    column: Column | None = None,
) -> Any:
    return field(metadata={"default": default, "check": check, "doc": doc, "column": column})


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """A task's options once validated; each field's metadata is the option's schema.

    ``args``/``kwargs`` are kept pickled only, so the caller's objects are never
    held and every run (and every snapshot) gets its own copy. ``cron`` is the
    parsed expression, read in ``cron_timezone`` (``None``: the scheduler's).
    """

    interval: float | None = _option(
        None,
        _seconds(True, True),
        "Seconds between runs (None for cron and one-shot tasks).",
        Column("interval_seconds", float, True),
    )
    delay: float = _option(0, _seconds(False, False), "Seconds before the first run of an interval task.")
    run_once: bool = _option(
        False,
        _flag,
        "Run a single time, then delete the task.",
        Column("run_once", bool, False, store=lambda s: s.once),
    )
    fixed_interval: bool = _option(
        True,
        _flag,
        "True: runs keep the cadence of their due times; False: the interval counts from the end of a run.",
        Column("fixed_interval", bool, False),
    )
    args: bytes = _option(None, _args, "Positional arguments for the handler.", Column("args", bytes, False))
    kwargs: bytes = _option(
        None, _kwargs, "Keyword arguments for the handler.", Column("kwargs", bytes, False)
    )
    progress_callback: Callable[..., Any] | None = _option(
        None, _callback, "Receives what the handler passes to _progress_hook, on the main loop."
    )
    cron: CronSchedule | None = _option(
        None,
        _cron,
        "A cron expression; replaces interval.",
        Column("cron", str, True, store=lambda s: _expr(s.cron)),
    )
    cron_timezone: tzinfo | None = _option(
        None,
        _timezone,
        "The timezone the cron expression is read in (default: the scheduler's).",
        Column("cron_timezone", str, True, store=lambda s: s.cron_timezone_name),
    )
    run_at: float | None = _option(None, _instant, "When the first (or only) run is due.")
    max_retries: int = _option(
        0, _count, "How many times a failed job is retried.", Column("max_retries", int, False)
    )
    retry_backoff: float = _option(
        1.0,
        _seconds(False, False),
        "Seconds before the first retry; doubles each time.",
        Column("retry_backoff", float, False),
    )
    timeout: float | None = _option(
        None,
        _seconds(True, True),
        "Seconds a job may run before its stop event is set.",
        Column("timeout", float, True),
    )
    jitter: float = _option(
        0.0,
        _seconds(False, False),
        "Up to this many seconds of random delay on each run.",
        Column("jitter", float, False),
    )
    misfire: Misfire = _option(
        "skip",
        _policy,
        "Runs missed while the task could not start: 'skip' or 'run_once'.",
        Column("misfire", str, False, store=lambda s: s.misfire._value_),
    )
    misfire_grace: float | None = _option(
        None,
        _seconds(False, True),
        "A run starting later than this after its due time is skipped.",
        Column("misfire_grace", float, True),
    )

    #: :meth:`columns`, computed once: the writer reads it for every changed task, under the lock.
    _columns: tuple[Any, ...] = field(init=False, repr=False, compare=False, metadata={"internal": True})

    #: The public fields but the arguments, made on the first snapshot (tasks nobody looks at keep none).
    _shown: dict[str, Any] | None = field(
        init=False, default=None, repr=False, compare=False, metadata={"internal": True}
    )

    def __post_init__(self) -> None:
        stored = list(_READ_STORED(self))
        for index, store in _CONVERTED:
            stored[index] = store(self)
        object.__setattr__(self, "_columns", tuple(stored))

    # --- what the schedule is ------------------------------------------------
    @property
    def kind(self) -> Literal["interval", "cron", "once"]:
        if self.cron is not None:
            return "cron"
        return "interval" if self.interval is not None else "once"

    @property
    def once(self) -> bool:
        """True when the task runs a single time (``run_once`` or a bare ``run_at``)."""
        return self.run_once or self.kind == "once"

    @property
    def cron_timezone_name(self) -> str | None:
        return None if self.cron is None else str(self.cron.tz)

    # --- derived views ---------------------------------------------------------
    def identity(self, key_of: Callable[[Any], Hashable]) -> Hashable:
        """Equal for equal options: stored ones by column, callables by ``key_of``."""
        return tuple(
            key_of(value) if callable(value) else value
            for value in (*self.columns(), *(getattr(self, f.name) for f in _UNSTORED))
        )

    def columns(self) -> tuple[Any, ...]:
        """The stored options' values, in :data:`COLUMNS` order."""
        return self._columns

    def arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Fresh copies of the handler's ``args`` and ``kwargs`` (unpickling may raise)."""
        return pickle.loads(self.args), pickle.loads(self.kwargs)

    def shown_fields(self) -> dict[str, Any]:
        """The public ``Task`` fields of the options but the arguments (cached; do not modify)."""
        shown = self._shown
        if shown is None:
            shown = {
                column.name: value
                for column, value in zip(COLUMNS, self.columns(), strict=True)
                if column.name not in ("args", "kwargs")
            }
            object.__setattr__(self, "_shown", shown)
        return shown

    def public_fields(self) -> dict[str, Any]:
        """The stored options as the public ``Task`` shows them, arguments unpickled."""
        args, kwargs = self.arguments()
        return {**self.shown_fields(), "args": args, "kwargs": kwargs}

    def in_timezone(self, tz: tzinfo) -> TaskSettings:
        """These settings with a cron expression that has no timezone of its own read in ``tz``."""
        if self.cron is None or self.cron_timezone is not None:
            return self
        return dataclasses.replace(self, cron=CronSchedule(self.cron.expression, tz))

    # --- building ----------------------------------------------------------------
    @classmethod
    def validate(
        cls, options: Mapping[str, object], *, task_name: object, default_timezone: tzinfo = timezone.utc
    ) -> TaskSettings:
        """Check every option given (the rest take their defaults) and freeze them; nothing is stored."""
        check_task_name(task_name)
        return _DEFAULTS.merge(options, task_name=task_name, default_timezone=default_timezone, fresh=True)

    @classmethod
    def from_columns(
        cls,
        stored: Mapping[str, Any],
        *,
        progress_callback: Callable[..., Any] | None,
        default_timezone: tzinfo,
    ) -> TaskSettings:
        """The settings a stored task row holds (by column name); the inverse of :meth:`columns`.

        What is not stored comes back neutral: no ``delay`` or ``run_at`` (spent
        once a task is scheduled), and the ``progress_callback`` the caller has.
        """
        cron_expr, tz_name = stored["cron"], stored["cron_timezone"]
        tz = ZoneInfo(tz_name) if tz_name else None
        return cls(
            interval=stored["interval_seconds"],
            delay=0.0,
            run_once=bool(stored["run_once"]),
            fixed_interval=bool(stored["fixed_interval"]),
            args=bytes(stored["args"]),
            kwargs=bytes(stored["kwargs"]),
            progress_callback=progress_callback,
            cron=None if cron_expr is None else CronSchedule(cron_expr, tz or default_timezone),
            cron_timezone=tz,
            run_at=None,
            max_retries=int(stored["max_retries"]),
            retry_backoff=float(stored["retry_backoff"]),
            timeout=stored["timeout"],
            jitter=float(stored["jitter"]),
            misfire=Misfire(stored["misfire"]),
            misfire_grace=stored["misfire_grace"],
        )

    def merge(
        self,
        changes: Mapping[str, object],
        *,
        task_name: object,
        default_timezone: tzinfo,
        keep_run_at: float | None = None,
        fresh: bool = False,
    ) -> TaskSettings:
        """These settings with ``changes`` applied and the whole checked again.

        Only the changed options are checked (and pickled) again; the others
        keep their validated value, so arguments stay what was passed at add
        time. ``delay`` and ``run_at`` are spent once a task is scheduled: an
        update starts them from neutral. Giving ``interval`` turns a cron task
        into an interval task and ``cron`` the reverse. ``keep_run_at`` keeps a
        one-shot task's time when the update gives no new schedule.
        """
        ctx = _Context(task_name)
        values: dict[str, Any] = {}
        for name, value in changes.items():
            option = _SCHEMA.get(name)
            if option is None:
                unknown = sorted(name for name in changes if name not in _SCHEMA)
                raise InvalidArgumentError(f"unknown task option(s): {', '.join(unknown)}")
            if fresh and value is DEFAULTS[name]:
                continue  # the default, already checked: nothing to do (add_task's common case)
            values[name] = option["check"](name, value, ctx)
        if fresh:
            merged = dict(_DEFAULT_VALUES)
        else:
            merged = {f.name: getattr(self, f.name) for f in _FIELDS}
            merged["delay"], merged["run_at"] = 0.0, None
            if self.kind == "once" and not {"interval", "cron", "run_at"} & set(changes):
                merged["run_at"] = keep_run_at
            if "interval" in changes and "cron" not in changes:
                merged["cron"] = merged["cron_timezone"] = None
            if "cron" in changes and "interval" not in changes:
                merged["interval"] = None
        cron_expr = values["cron"] if "cron" in values else _expr(merged["cron"])
        merged.update(values)
        return _finish(merged, cron_expr, "cron_timezone" in changes, default_timezone)


def describe_schedule(fields: Mapping[str, Any]) -> str:
    """A task's schedule in a few words (``every 5m``, ``cron 0 3 * * * (UTC)``, ``once``), for listings.

    ``fields`` are the public ``Task``'s fields, by name (``dict(task)``).
    """
    cron, interval = fields.get("cron"), fields.get("interval_seconds")
    if cron is not None:
        zone = fields.get("cron_timezone")
        return f"cron {cron}" + (f" ({zone})" if zone else "")
    if fields.get("run_once") or interval is None:
        return "once"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if interval >= size and interval % size == 0:
            return f"every {int(interval // size)}{unit}"
    return f"every {interval:g}s"


def _expr(cron: CronSchedule | None) -> str | None:
    return None if cron is None else cron.expression


def _finish(
    merged: dict[str, Any], cron_expr: str | None, tz_given: bool, default_timezone: tzinfo
) -> TaskSettings:
    """The checks that involve several options: exactly one kind of schedule, and what goes with it."""
    interval, delay, run_at = merged["interval"], merged["delay"], merged["run_at"]
    tz: tzinfo | None = merged["cron_timezone"]
    if cron_expr is None:
        if tz_given and tz is not None:
            raise ConfigurationError("cron_timezone only applies to cron tasks: pass cron= too")
        merged["cron"] = merged["cron_timezone"] = None
    else:
        if interval is not None:
            raise ConfigurationError("give either interval or cron, not both")
        if run_at is not None or delay:
            raise ConfigurationError("a cron task starts at its first cron time: drop run_at/delay")
        merged["cron"] = CronSchedule(cron_expr, default_timezone if tz is None else tz)
    if run_at is not None and delay:
        raise ConfigurationError("give either delay or run_at, not both")
    if interval is None and cron_expr is None and run_at is None:
        # Like a missing required argument, hence also a TypeError.
        raise InvalidArgumentError("a task needs a schedule: pass interval=, cron= or run_at=")
    return TaskSettings(**merged)


_FIELDS = tuple(f for f in dataclasses.fields(TaskSettings) if "check" in f.metadata)
_SCHEMA: dict[str, Mapping[str, Any]] = {f.name: f.metadata for f in _FIELDS}
_STORED: tuple[tuple[str, Column], ...] = tuple(
    (f.name, f.metadata["column"]) for f in _FIELDS if f.metadata["column"] is not None
)
_UNSTORED = tuple(f for f in _FIELDS if f.metadata["column"] is None)
_READ_STORED = operator.attrgetter(*(name for name, _ in _STORED))
_CONVERTED = tuple((i, c.store) for i, (_, c) in enumerate(_STORED) if c.store is not None)
#: The stored options' columns, in the order :meth:`TaskSettings.columns` gives their values.
COLUMNS: tuple[Column, ...] = tuple(column for _, column in _STORED)
#: The option defaults as callers see them (``None`` for arguments: no arguments).
DEFAULTS: dict[str, Any] = {name: meta["default"] for name, meta in _SCHEMA.items()}
#: One line per option, for docs and error messages.
DOCS: dict[str, str] = {name: meta["doc"] for name, meta in _SCHEMA.items()}
#: The doc line of each stored option, by column (the public ``Task`` field).
COLUMN_DOCS: dict[str, str] = {column.name: DOCS[name] for name, column in _STORED}

assert set(_SCHEMA) == set(TaskOptions.__annotations__), "TaskOptions and TaskSettings disagree"


def _defaults() -> TaskSettings:
    ctx = _Context("(defaults)")
    values = {name: meta["check"](name, meta["default"], ctx) for name, meta in _SCHEMA.items()}
    return TaskSettings(**values)


_DEFAULTS = _defaults()
_DEFAULT_VALUES: dict[str, Any] = {f.name: getattr(_DEFAULTS, f.name) for f in _FIELDS}
