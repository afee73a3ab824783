"""Every option of a task, validated in one place for ``add_task``, ``update_task`` and ``@task``."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any, Literal, TypedDict

from quiv._config import resolve_timezone
from quiv._cron import CronSchedule
from quiv._enums import JobStatus
from quiv._exceptions import ConfigurationError, HandlerRegistrationError, InvalidArgumentError
from quiv._policies import Misfire
from quiv._store.base import JobQuery

__all__ = [
    "MisfirePolicy",
    "TaskChanges",
    "TaskSettings",
    "check_job_query",
    "check_seconds",
    "check_task_name",
]

MisfirePolicy = Literal["skip", "run_once"]


class TaskChanges(TypedDict, total=False):
    """What ``update_task`` may change: the options of ``add_task``, each optional."""

    task_name: str
    func: Callable[..., Any]
    interval: float | None
    delay: float
    run_once: bool
    fixed_interval: bool
    args: tuple[Any, ...] | None
    kwargs: dict[str, Any] | None
    progress_callback: Callable[..., Any] | None
    cron: str | None
    cron_timezone: str | tzinfo | None
    run_at: datetime | None
    max_retries: int
    retry_backoff: float
    timeout: float | None
    jitter: float
    misfire: MisfirePolicy
    misfire_grace: float | None


def check_task_name(task_name: object) -> str:
    """Return ``task_name`` if it is a non-blank str, else raise."""
    if not isinstance(task_name, str):
        raise InvalidArgumentError(f"task_name must be a str, got {task_name!r}")
    if not task_name.strip():
        raise ConfigurationError("task_name must not be empty")
    return task_name


def check_seconds(name: str, value: object, *, positive: bool) -> float:
    """``value`` as a finite float of seconds (> 0 or >= 0), else raise naming ``name``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if (number > 0 if positive else number >= 0) and number < math.inf:
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
    return number


def check_job_query(
    status: object,
    task_id: object,
    *,
    newest_first: object = False,
    limit: object = None,
    offset: object = 0,
) -> JobQuery:
    """The arguments of ``get_all_jobs`` and ``count_jobs`` as a store query; raise naming a bad one."""
    if status is None:
        status_value = None
    else:
        try:
            status_value = JobStatus(status).value
        except ValueError:
            valid = ", ".join(s.value for s in JobStatus)
            raise ConfigurationError(f"unknown job status {status!r}; expected one of {valid}") from None
    if task_id is not None and not isinstance(task_id, str):
        raise InvalidArgumentError(f"task_id must be a str or None, got {type(task_id).__name__} {task_id!r}")
    if not isinstance(newest_first, bool):
        raise InvalidArgumentError(f"newest_first must be a bool, got {newest_first!r}")
    return JobQuery(
        task_id=task_id,
        status=status_value,
        newest_first=newest_first,
        limit=None if limit is None else _check_count("limit", limit, "an int >= 0 or None"),
        offset=_check_count("offset", offset, "an int >= 0"),
    )


def _check_count(name: str, value: object, expected: str) -> int:
    """``value`` if it is an int >= 0 (not a bool), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value!r}")
    return value


def _optional_seconds(name: str, value: object, *, positive: bool) -> float | None:
    return None if value is None else check_seconds(name, value, positive=positive)


def _pickle(name: str, value: object) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ConfigurationError(
            f"{name} must be picklable (quiv persists them); pickling failed: {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """A task's options once validated. ``args_blob``/``kwargs_blob`` are the pickled arguments."""

    interval: float | None
    delay: float
    run_once: bool
    fixed_interval: bool
    args_blob: bytes
    kwargs_blob: bytes
    progress_callback: Callable[..., Any] | None
    cron: CronSchedule | None
    cron_timezone: str | None
    run_at: float | None
    max_retries: int
    retry_backoff: float
    timeout: float | None
    jitter: float
    misfire: Misfire
    misfire_grace: float | None
    args: tuple[Any, ...] = field(default=(), compare=False)
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def kind(self) -> Literal["interval", "cron", "once"]:
        if self.cron is not None:
            return "cron"
        return "interval" if self.interval is not None else "once"

    @property
    def once(self) -> bool:
        """True when the task runs a single time (``run_once`` or a bare ``run_at``)."""
        return self.run_once or self.kind == "once"

    def options(self) -> dict[str, Any]:
        """The ``add_task`` options (bar the name) that validate back to these settings.

        First-run options are neutral (``delay=0``, ``run_at=None``): they are
        spent once the task is scheduled. ``update_task`` starts from this.
        """
        return {
            "interval": self.interval,
            "delay": 0,
            "run_once": self.run_once,
            "fixed_interval": self.fixed_interval,
            "args": self.args,
            "kwargs": self.kwargs,
            "progress_callback": self.progress_callback,
            "cron": None if self.cron is None else self.cron.expression,
            "cron_timezone": None if self.cron is None else self.cron.tz,
            "run_at": None,
            "max_retries": self.max_retries,
            "retry_backoff": self.retry_backoff,
            "timeout": self.timeout,
            "jitter": self.jitter,
            "misfire": self.misfire.value,
            "misfire_grace": self.misfire_grace,
        }

    @classmethod
    def validate(
        cls,
        *,
        task_name: object,
        interval: object,
        delay: object,
        run_once: object,
        fixed_interval: object,
        args: object,
        kwargs: object,
        progress_callback: object,
        cron: object = None,
        cron_timezone: object = None,
        run_at: object = None,
        max_retries: object = 0,
        retry_backoff: object = 1.0,
        timeout: object = None,
        jitter: object = 0.0,
        misfire: object = "skip",
        misfire_grace: object = None,
        default_timezone: tzinfo = timezone.utc,
    ) -> TaskSettings:
        """Check every option of a task (not the handler) and freeze them; nothing is stored."""
        check_task_name(task_name)
        interval_s = _optional_seconds("interval", interval, positive=True)
        delay_s = check_seconds("delay", delay, positive=False)
        if not isinstance(run_once, bool):
            raise InvalidArgumentError(f"run_once must be a bool, got {run_once!r}")
        if not isinstance(fixed_interval, bool):
            raise InvalidArgumentError(f"fixed_interval must be a bool, got {fixed_interval!r}")
        if args is None:
            args = ()
        elif not isinstance(args, tuple):
            raise InvalidArgumentError(f"args must be a tuple, got {type(args).__name__} {args!r}")
        if kwargs is None:
            kwargs = {}
        elif not isinstance(kwargs, dict):
            raise InvalidArgumentError(f"kwargs must be a dict, got {type(kwargs).__name__} {kwargs!r}")
        elif not all(isinstance(key, str) for key in kwargs):
            raise InvalidArgumentError(f"kwargs keys must be str, got {list(kwargs)!r}")
        if progress_callback is not None and not callable(progress_callback):
            raise HandlerRegistrationError(
                f"progress_callback for task {task_name!r} must be callable, got {progress_callback!r}"
            )

        # --- what kind of schedule: exactly one of interval / cron / run_at alone
        tz_name: str | None = None
        schedule: CronSchedule | None = None
        if cron_timezone is not None and cron is None:
            raise ConfigurationError("cron_timezone only applies to cron tasks: pass cron= too")
        if cron is not None:
            if interval_s is not None:
                raise ConfigurationError("give either interval or cron, not both")
            if run_at is not None or delay_s:
                raise ConfigurationError("a cron task starts at its first cron time: drop run_at/delay")
            if not isinstance(cron, str):
                raise InvalidArgumentError(f"cron must be a str cron expression, got {cron!r}")
            tz = resolve_timezone(cron_timezone) if cron_timezone is not None else default_timezone
            tz_name = cron_timezone if isinstance(cron_timezone, str) else str(tz)
            schedule = CronSchedule(cron, tz)
        run_at_ts: float | None = None
        if run_at is not None:
            if not isinstance(run_at, datetime):
                raise InvalidArgumentError(f"run_at must be a datetime, got {run_at!r}")
            if delay_s:
                raise ConfigurationError("give either delay or run_at, not both")
            aware = run_at if run_at.tzinfo is not None else run_at.replace(tzinfo=timezone.utc)
            run_at_ts = aware.timestamp()
        if interval_s is None and schedule is None and run_at_ts is None:
            # Like a missing required argument, hence also a TypeError.
            raise InvalidArgumentError("a task needs a schedule: pass interval=, cron= or run_at=")

        # --- reliability options
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise InvalidArgumentError(f"max_retries must be an int, got {max_retries!r}")
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must be >= 0, got {max_retries!r}")
        backoff = check_seconds("retry_backoff", retry_backoff, positive=False)
        timeout_s = _optional_seconds("timeout", timeout, positive=True)
        jitter_s = check_seconds("jitter", jitter, positive=False)
        if not isinstance(misfire, str):
            raise InvalidArgumentError(f"misfire must be 'skip' or 'run_once', got {misfire!r}")
        try:
            policy = Misfire(misfire)
        except ValueError:
            raise ConfigurationError(f"misfire must be 'skip' or 'run_once', got {misfire!r}") from None
        grace = _optional_seconds("misfire_grace", misfire_grace, positive=False)
        return cls(
            interval=interval_s,
            delay=delay_s,
            run_once=run_once,
            fixed_interval=fixed_interval,
            args_blob=_pickle("args", args),
            kwargs_blob=_pickle("kwargs", kwargs),
            progress_callback=progress_callback,
            cron=schedule,
            cron_timezone=tz_name,
            run_at=run_at_ts,
            max_retries=max_retries,
            retry_backoff=backoff,
            timeout=timeout_s,
            jitter=jitter_s,
            misfire=policy,
            misfire_grace=grace,
            args=args,
            kwargs=kwargs,
        )
