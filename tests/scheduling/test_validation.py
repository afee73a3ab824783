"""Every scheduling option is checked before anything is stored.

Wrong type: ``InvalidArgumentError`` (a ``ConfigurationError`` that is also a
``TypeError``). Bad value: ``ConfigurationError``. The message names the
value, and the scheduler is left exactly as it was.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import pytest

from quiv import ConfigurationError, Event, InvalidArgumentError, InvalidTimezoneError, QuivError, Task
from quiv.testing import ManualClock

from .support import QuivFactory, at, noop

CRON = "*/5 * * * *"

# (id, options given to add_task, exact error type, text the message must contain)
CASES: list[tuple[str, dict[str, Any], type[QuivError], str]] = [
    # cron
    ("cron-int", {"cron": 5}, InvalidArgumentError, "5"),
    ("cron-list", {"cron": ["*"] * 5}, InvalidArgumentError, "['*', '*', '*', '*', '*']"),
    ("cron-garbage", {"cron": "every monday"}, ConfigurationError, "'every monday'"),
    ("cron-out-of-range", {"cron": "0 24 * * *"}, ConfigurationError, "'0 24 * * *'"),
    ("cron-empty", {"cron": ""}, ConfigurationError, "''"),
    ("cron-never-fires", {"cron": "0 0 30 2 *"}, ConfigurationError, "'0 0 30 2 *'"),
    ("cron-and-interval", {"cron": CRON, "interval": 60}, ConfigurationError, "interval"),
    ("cron-and-run_at", {"cron": CRON, "run_at": at(60)}, ConfigurationError, "run_at"),
    ("cron-and-delay", {"cron": CRON, "delay": 5}, ConfigurationError, "delay"),
    # cron_timezone
    ("tz-unknown", {"cron": CRON, "cron_timezone": "Mars/Base"}, InvalidTimezoneError, "'Mars/Base'"),
    ("tz-int", {"cron": CRON, "cron_timezone": 5}, InvalidArgumentError, "5"),
    ("tz-without-cron", {"interval": 60, "cron_timezone": "UTC"}, ConfigurationError, "cron_timezone"),
    # run_at
    ("run_at-str", {"run_at": "2024-01-01T00:00:00"}, InvalidArgumentError, "'2024-01-01T00:00:00'"),
    ("run_at-epoch", {"run_at": 1704067200}, InvalidArgumentError, "1704067200"),
    ("run_at-date", {"run_at": date(2024, 1, 2)}, InvalidArgumentError, "datetime.date(2024, 1, 2)"),
    ("run_at-and-delay", {"run_at": at(60), "delay": 5}, ConfigurationError, "delay"),
    ("no-schedule", {}, InvalidArgumentError, "schedule"),
    # max_retries
    ("max_retries-float", {"interval": 60, "max_retries": 1.5}, InvalidArgumentError, "1.5"),
    ("max_retries-bool", {"interval": 60, "max_retries": True}, InvalidArgumentError, "True"),
    ("max_retries-str", {"interval": 60, "max_retries": "3"}, InvalidArgumentError, "'3'"),
    ("max_retries-negative", {"interval": 60, "max_retries": -1}, ConfigurationError, "-1"),
    # retry_backoff
    ("retry_backoff-str", {"interval": 60, "retry_backoff": "1"}, InvalidArgumentError, "'1'"),
    ("retry_backoff-negative", {"interval": 60, "retry_backoff": -1}, ConfigurationError, "-1"),
    ("retry_backoff-nan", {"interval": 60, "retry_backoff": math.nan}, ConfigurationError, "nan"),
    ("retry_backoff-inf", {"interval": 60, "retry_backoff": math.inf}, ConfigurationError, "inf"),
    # timeout
    ("timeout-zero", {"interval": 60, "timeout": 0}, ConfigurationError, "0"),
    ("timeout-negative", {"interval": 60, "timeout": -5}, ConfigurationError, "-5"),
    ("timeout-nan", {"interval": 60, "timeout": math.nan}, ConfigurationError, "nan"),
    ("timeout-str", {"interval": 60, "timeout": "10"}, InvalidArgumentError, "'10'"),
    ("timeout-bool", {"interval": 60, "timeout": True}, InvalidArgumentError, "True"),
    # jitter
    ("jitter-negative", {"interval": 60, "jitter": -0.1}, ConfigurationError, "-0.1"),
    ("jitter-inf", {"interval": 60, "jitter": math.inf}, ConfigurationError, "inf"),
    ("jitter-str", {"interval": 60, "jitter": "1"}, InvalidArgumentError, "'1'"),
    ("jitter-none", {"interval": 60, "jitter": None}, InvalidArgumentError, "None"),
    # misfire
    ("misfire-unknown", {"interval": 60, "misfire": "coalesce"}, ConfigurationError, "'coalesce'"),
    ("misfire-case", {"interval": 60, "misfire": "SKIP"}, ConfigurationError, "'SKIP'"),
    ("misfire-int", {"interval": 60, "misfire": 5}, InvalidArgumentError, "5"),
    # misfire_grace
    ("misfire_grace-negative", {"interval": 60, "misfire_grace": -1}, ConfigurationError, "-1"),
    ("misfire_grace-nan", {"interval": 60, "misfire_grace": math.nan}, ConfigurationError, "nan"),
    ("misfire_grace-str", {"interval": 60, "misfire_grace": "5"}, InvalidArgumentError, "'5'"),
]


@pytest.mark.parametrize(
    ("options", "error", "named"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_a_bad_option_is_refused_and_nothing_is_stored(
    make_quiv: QuivFactory,
    clock: ManualClock,
    options: dict[str, Any],
    error: type[QuivError],
    named: str,
) -> None:
    scheduler = make_quiv(clock=clock)
    added: list[Task] = []
    scheduler.add_listener(Event.TASK_ADDED, lambda event, task: added.append(task))
    existing = scheduler.add_task("existing", noop, interval=60)
    added.clear()
    before = scheduler.get_all_tasks(include_run_once=True)
    with pytest.raises(ConfigurationError) as caught:
        scheduler.add_task("bad", noop, **options)
    assert type(caught.value) is error, f"{type(caught.value).__name__}: {caught.value}"
    assert named in str(caught.value)
    assert scheduler.get_all_tasks(include_run_once=True) == before
    assert [task.id for task in before] == [existing]
    assert added == []


@pytest.mark.parametrize(
    "options",
    [
        {"cron": CRON, "cron_timezone": "America/New_York"},
        {"run_at": datetime(2024, 1, 1, 0, 1)},
        {"interval": 60, "run_at": at(30)},
        {"interval": 60, "max_retries": 0, "retry_backoff": 0, "jitter": 0, "misfire_grace": 0},
        {"interval": 60, "timeout": 0.001, "misfire": "run_once"},
        {"interval": 60, "retry_backoff": 2, "jitter": 1.5, "misfire": "skip", "misfire_grace": 30.0},
    ],
    ids=["cron-tz", "one-shot", "interval-run_at", "zeros", "small-timeout", "all"],
)
def test_good_options_are_stored_and_shown(
    make_quiv: QuivFactory, clock: ManualClock, options: dict[str, Any]
) -> None:
    scheduler = make_quiv(clock=clock)
    task = scheduler.get_task(scheduler.add_task("good", noop, **options))
    for name, value in options.items():
        if name == "run_at":
            assert task.next_run_at == (value if value.tzinfo else value.replace(tzinfo=at(0).tzinfo))
        elif name == "interval":
            assert task.interval_seconds == value
        else:
            assert getattr(task, name) == value


def test_defaults_on_the_task_model(make_quiv: QuivFactory, clock: ManualClock) -> None:
    scheduler = make_quiv(clock=clock)
    task = scheduler.get_task(scheduler.add_task("plain", noop, interval=60))
    assert (task.cron, task.cron_timezone) == (None, None)
    assert (task.max_retries, task.retry_backoff, task.timeout) == (0, 1.0, None)
    assert (task.jitter, task.misfire, task.misfire_grace) == (0.0, "skip", None)
