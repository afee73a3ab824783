"""The pure decisions behind the options, as tables: backoff, jitter, misfire, grace, first run.

No scheduler and no threads: these call the functions the engine uses with
explicit instants (epoch seconds) and, for jitter, a seeded ``random.Random``.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from quiv._schedule.options import TaskSettings
from quiv._schedule.policies import Misfire, jittered, late_run_decision, retry_delay
from quiv._schedule.triggers import first_run, next_regular_run

#: 2024-01-01 00:00 UTC: an exact number of minutes, so cron rows are easy to read.
T0 = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()
MINUTE = 60.0


def settings(**options: Any) -> TaskSettings:
    """Validated settings of a task with ``options`` (every other option at its default)."""
    return TaskSettings.validate(options, task_name="t")


# ------------------------------------------------------------------ backoff
# (retry_backoff, delays before retries 1, 2, 3, ...)
BACKOFF: list[tuple[float, list[float]]] = [
    (1.0, [1, 2, 4, 8, 16, 32]),  # the default
    (10.0, [10, 20, 40, 80]),
    (0.5, [0.5, 1, 2, 4]),
    (3.0, [3, 6, 12]),
    (0.0, [0, 0, 0]),  # retry at once, every time
]


@pytest.mark.parametrize(("backoff", "delays"), BACKOFF)
def test_backoff_sequence(backoff: float, delays: list[float]) -> None:
    assert [retry_delay(attempt, backoff) for attempt in range(1, len(delays) + 1)] == delays


def test_backoff_is_a_float() -> None:
    assert isinstance(retry_delay(3, 2), float)


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_attempts_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match=str(attempt)):
        retry_delay(attempt, 1.0)


# ------------------------------------------------------------------- jitter
@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize(("due", "jitter"), [(T0, 5.0), (T0 + 0.25, 0.5), (0.0, 3600.0), (0.0, 1e-6)])
def test_jitter_stays_within_bounds(seed: int, due: float, jitter: float) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        value = jittered(due, jitter, rng)
        assert due <= value < due + jitter


def test_jitter_is_reproducible_with_a_seed() -> None:
    first = [jittered(T0, 10.0, random.Random(42)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng_a, rng_b = random.Random(7), random.Random(7)
    assert [jittered(T0, 10.0, rng_a) for _ in range(10)] == [jittered(T0, 10.0, rng_b) for _ in range(10)]


def test_jitter_spreads_over_the_whole_window() -> None:
    rng = random.Random(1234)
    offsets = [jittered(T0, 10.0, rng) - T0 for _ in range(2000)]
    assert min(offsets) < 0.5
    assert max(offsets) > 9.5
    assert 4.5 < sum(offsets) / len(offsets) < 5.5
    # every second of the window is hit: the spread is not clumped
    assert {int(offset) for offset in offsets} == set(range(10))


@pytest.mark.parametrize("jitter", [0.0, -1.0])
def test_no_jitter_leaves_the_due_time_alone(jitter: float) -> None:
    assert jittered(T0, jitter, random.Random(0)) == T0


# ------------------------------------------------------------------ misfire
# (options, due offset, ended offset, expected (nominal, actual) offsets or None): interval tasks of 10 s
MISFIRE_INTERVAL: list[tuple[str, dict[str, Any], float, float, tuple[float, float]]] = [
    # fixed_interval=True, skip (the default): next point of the cadence still ahead
    ("fixed-skip-short", {"misfire": "skip"}, 0, 3, (10, 10)),
    ("fixed-skip-on-point", {"misfire": "skip"}, 0, 10, (10, 10)),  # the point is not past yet
    ("fixed-skip-just-after", {"misfire": "skip"}, 0, 10.5, (20, 20)),
    ("fixed-skip-several", {"misfire": "skip"}, 0, 35, (40, 40)),
    ("fixed-skip-anchor", {"misfire": "skip"}, 100, 135, (140, 140)),
    # fixed_interval=True, run_once: one catch-up run at the end if a point was missed
    ("fixed-once-short", {"misfire": "run_once"}, 0, 3, (10, 10)),
    ("fixed-once-on-point", {"misfire": "run_once"}, 0, 10, (10, 10)),
    # the catch-up runs at the end but keeps its place on the cadence (nominal = last missed point)
    ("fixed-once-just-after", {"misfire": "run_once"}, 0, 10.5, (10, 10.5)),
    ("fixed-once-several", {"misfire": "run_once"}, 0, 35, (30, 35)),
    # fixed_interval=False: the interval counts from the end, so nothing is ever missed
    ("free-skip-short", {"misfire": "skip", "fixed_interval": False}, 0, 3, (13, 13)),
    ("free-skip-long", {"misfire": "skip", "fixed_interval": False}, 0, 35, (45, 45)),
    ("free-once-short", {"misfire": "run_once", "fixed_interval": False}, 0, 3, (13, 13)),
    ("free-once-long", {"misfire": "run_once", "fixed_interval": False}, 0, 35, (45, 45)),
]


@pytest.mark.parametrize(
    ("options", "due", "ended", "expected"),
    [case[1:] for case in MISFIRE_INTERVAL],
    ids=[case[0] for case in MISFIRE_INTERVAL],
)
def test_misfire_decision_for_interval_tasks(
    options: dict[str, Any], due: float, ended: float, expected: tuple[float, float]
) -> None:
    result = next_regular_run(settings(interval=10, **options), T0 + due, T0 + ended)
    assert result == (T0 + expected[0], T0 + expected[1])


# Cron every 10 minutes: (misfire, due minute, ended minute, expected (nominal, actual) minute)
MISFIRE_CRON: list[tuple[str, str, float, float, tuple[float, float]]] = [
    ("skip-short", "skip", 10, 13, (20, 20)),
    ("skip-several", "skip", 10, 35, (40, 40)),
    ("skip-on-point", "skip", 10, 20, (20, 20)),  # like an interval task: a point equal to now is not past
    ("once-short", "run_once", 10, 13, (20, 20)),
    ("once-several", "run_once", 10, 35, (35, 35)),
    ("once-on-point", "run_once", 10, 20, (20, 20)),
    ("once-just-after", "run_once", 10, 20.5, (20.5, 20.5)),
]


@pytest.mark.parametrize(
    ("misfire", "due", "ended", "expected"),
    [case[1:] for case in MISFIRE_CRON],
    ids=[case[0] for case in MISFIRE_CRON],
)
def test_misfire_decision_for_cron_tasks(
    misfire: str, due: float, ended: float, expected: tuple[float, float]
) -> None:
    result = next_regular_run(
        settings(cron="*/10 * * * *", misfire=misfire), T0 + due * MINUTE, T0 + ended * MINUTE
    )
    assert result == (T0 + expected[0] * MINUTE, T0 + expected[1] * MINUTE)


def test_misfire_default_is_skip() -> None:
    assert settings(interval=10).misfire is Misfire.SKIP


@pytest.mark.parametrize("misfire", ["skip", "run_once"])
def test_one_shot_tasks_have_no_next_run(misfire: str) -> None:
    one_shot = settings(run_at=datetime(2024, 1, 1, 0, 5, tzinfo=timezone.utc), misfire=misfire)
    assert next_regular_run(one_shot, T0 + 300, T0 + 900) is None


@pytest.mark.parametrize("seed", range(10))
def test_regular_runs_are_jittered_but_catch_up_runs_are_not(seed: int) -> None:
    jittery = settings(interval=10, jitter=4, misfire="run_once")
    result = next_regular_run(jittery, T0, T0 + 3, random.Random(seed))
    assert result is not None
    nominal, actual = result
    assert nominal == T0 + 10
    assert nominal <= actual < nominal + 4
    # A catch-up is not jittered; its nominal time is the last missed point of the cadence.
    assert next_regular_run(jittery, T0, T0 + 35, random.Random(seed)) == (T0 + 30, T0 + 35)
    cron = settings(cron="*/10 * * * *", jitter=4)
    cron_result = next_regular_run(cron, T0 + 600, T0 + 603, random.Random(seed))
    assert cron_result is not None
    assert cron_result[0] == T0 + 1200
    assert T0 + 1200 <= cron_result[1] < T0 + 1204


# ------------------------------------------------------------ late runs
# (due, now, grace, may still run)
LATE: list[tuple[float, float, float | None, bool]] = [
    (0, 0, None, True),
    (0, 10_000, None, True),  # no grace: never too late
    (0, 0, 0, True),
    (0, 0.001, 0, False),  # grace 0: only exactly on time
    (0, 5, 5, True),  # the boundary is still in the window
    (0, 5.001, 5, False),
    (0, 4.999, 5, True),
    (10, 5, 1, True),  # early (clock moved back): not late at all
    (100, 160, 60, True),
    (100, 161, 60, False),
]


@pytest.mark.parametrize(("due", "now", "grace", "allowed"), LATE)
def test_late_run_decision(due: float, now: float, grace: float | None, allowed: bool) -> None:
    assert late_run_decision(T0 + due, T0 + now, grace) is allowed


# ------------------------------------------------------------ first run
FUTURE = datetime(2024, 1, 1, 0, 5, tzinfo=timezone.utc)  # T0 + 300
PAST = datetime(2023, 12, 31, 23, 0, tzinfo=timezone.utc)  # T0 - 3600

# (name, options, now offset, expected (nominal, actual) offsets, run once?)
FIRST_RUN: list[tuple[str, dict[str, Any], float, tuple[float, float], bool]] = [
    ("interval-at-once", {"interval": 10}, 0, (0, 0), False),
    ("interval-delay", {"interval": 10, "delay": 30}, 0, (30, 30), False),
    ("interval-run-at", {"interval": 10, "run_at": FUTURE}, 0, (300, 300), False),
    ("interval-past-run-at", {"interval": 10, "run_at": PAST}, 0, (0, 0), False),
    ("run-once-interval", {"interval": 10, "delay": 7, "run_once": True}, 0, (7, 7), True),
    ("one-shot", {"run_at": FUTURE}, 0, (300, 300), True),
    ("one-shot-past", {"run_at": PAST}, 0, (0, 0), True),
    ("one-shot-now", {"run_at": FUTURE}, 300, (300, 300), True),
    ("one-shot-naive-is-utc", {"run_at": FUTURE.replace(tzinfo=None)}, 0, (300, 300), True),
    (
        "one-shot-other-zone",
        {"run_at": datetime(2024, 1, 1, 1, 5, tzinfo=ZoneInfo("Europe/Berlin"))},
        0,
        (300, 300),
        True,
    ),
    ("one-shot-ignores-jitter", {"run_at": FUTURE, "jitter": 50}, 0, (300, 300), True),
    ("cron", {"cron": "*/15 * * * *"}, 0, (900, 900), False),
    ("cron-strictly-after", {"cron": "*/15 * * * *"}, 900, (1800, 1800), False),
    (
        "cron-zone",
        {"cron": "0 9 * * *", "cron_timezone": "America/New_York"},
        0,
        (14 * 3600, 14 * 3600),
        False,
    ),
    ("cron-seconds", {"cron": "*/20 * * * * *"}, 5, (20, 20), False),
    ("cron-alias", {"cron": "@hourly"}, 0, (3600, 3600), False),
]


@pytest.mark.parametrize(
    ("options", "now", "expected", "once"),
    [case[1:] for case in FIRST_RUN],
    ids=[case[0] for case in FIRST_RUN],
)
def test_first_run(options: dict[str, Any], now: float, expected: tuple[float, float], once: bool) -> None:
    task = settings(**options)
    assert first_run(task, T0 + now) == (T0 + expected[0], T0 + expected[1])
    assert task.once is once


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 10},
        {"interval": 10, "delay": 30},
        {"interval": 10, "run_at": FUTURE},
        {"cron": "*/15 * * * *"},
    ],
    ids=["interval", "delay", "run-at", "cron"],
)
def test_first_run_of_a_recurring_task_is_jittered_within_bounds(options: dict[str, Any]) -> None:
    task = settings(jitter=8, **options)
    for _ in range(200):
        nominal, actual = first_run(task, T0)
        assert nominal <= actual < nominal + 8
    unjittered = first_run(settings(**options), T0)
    assert nominal == unjittered[0]


def test_cron_uses_the_default_timezone_when_none_is_given() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    task = TaskSettings.validate({"cron": "0 9 * * *"}, task_name="t", default_timezone=berlin)
    assert task.cron_timezone is None  # read in the scheduler's timezone...
    assert task.cron_timezone_name == "Europe/Berlin"  # ...which is what it shows
    assert first_run(task, T0) == (T0 + 8 * 3600, T0 + 8 * 3600)  # 09:00 CET
    start = datetime.fromtimestamp(T0, timezone.utc) + timedelta(days=181)  # 30 June, CEST
    assert first_run(task, start.timestamp())[0] == start.timestamp() + 7 * 3600
