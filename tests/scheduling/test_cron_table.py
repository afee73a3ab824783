"""Cron next-fire times as tables: plain expressions, seconds, aliases, and the DST rules.

Every row is (timezone, expression, after, expected next fire), all instants
written in UTC with the local wall time in the comment. The DST rules are:
a local time that does not exist (clocks go forward) never fires; a local
time that happens twice (clocks go back) fires once, at its first occurrence.

2024 transitions: America/New_York springs forward on 10 March at 02:00 EST
(07:00 UTC) and falls back on 3 November at 02:00 EDT (06:00 UTC);
Europe/Berlin springs forward on 31 March at 02:00 CET (01:00 UTC) and falls
back on 27 October at 03:00 CEST (01:00 UTC).
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from quiv import ConfigurationError
from quiv._schedule.cron import CronSchedule

NY = "America/New_York"
BERLIN = "Europe/Berlin"
UTC = "UTC"


def utc(text: str) -> float:
    """Epoch seconds of ``YYYY-MM-DD HH:MM[:SS]`` read as UTC."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()


def show(epoch: float | None) -> str:
    return (
        "never"
        if epoch is None
        else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    )


def fire_times(tz: str, expression: str, after: str, count: int) -> list[str]:
    schedule = CronSchedule(expression, ZoneInfo(tz))
    times: list[str] = []
    current: float | None = utc(after)
    for _ in range(count):
        assert current is not None
        current = schedule.next_after(current)
        times.append(show(current))
    return times


# (timezone, expression, after (UTC), expected next fire (UTC))
NEXT_FIRE: list[tuple[str, str, str, str]] = [
    # --- plain five-field expressions
    (UTC, "*/15 * * * *", "2024-01-01 00:00", "2024-01-01 00:15"),  # strictly after
    (UTC, "*/15 * * * *", "2024-01-01 00:14:59", "2024-01-01 00:15"),
    (UTC, "0 9 * * *", "2024-01-01 09:00", "2024-01-02 09:00"),
    (UTC, "*/5 9-17 * * mon-fri", "2024-01-05 17:55", "2024-01-08 09:00"),  # Friday evening -> Monday
    (UTC, "*/5 9-17 * * mon-fri", "2024-01-08 12:02", "2024-01-08 12:05"),
    (UTC, "0 0 29 2 *", "2024-03-01 00:00", "2028-02-29 00:00"),  # leap days only
    (NY, "0 9 * * *", "2024-01-01 00:00", "2024-01-01 14:00"),  # 09:00 EST
    (NY, "0 9 * * *", "2024-07-01 00:00", "2024-07-01 13:00"),  # 09:00 EDT
    (BERLIN, "0 9 * * *", "2024-01-01 00:00", "2024-01-01 08:00"),  # 09:00 CET
    (BERLIN, "0 9 * * *", "2024-07-01 00:00", "2024-07-01 07:00"),  # 09:00 CEST
    # --- spring forward: the skipped local hour never fires
    (NY, "30 2 * * *", "2024-03-10 05:00", "2024-03-11 06:30"),  # 02:30 does not exist on 10 March
    (NY, "0 2 * * *", "2024-03-09 08:00", "2024-03-11 06:00"),  # not on 10 March either
    (NY, "0 * * * *", "2024-03-10 06:00", "2024-03-10 07:00"),  # 01:00 EST -> 03:00 EDT
    (NY, "30 2 10 3 *", "2024-01-01 00:00", "2025-03-10 06:30"),  # its one 2024 time does not exist
    (NY, "30 3 * * *", "2024-03-10 05:00", "2024-03-10 07:30"),  # 03:30 EDT exists
    (BERLIN, "30 2 * * *", "2024-03-30 23:00", "2024-04-01 00:30"),  # 02:30 does not exist on 31 March
    (BERLIN, "0 * * * *", "2024-03-31 00:00", "2024-03-31 01:00"),  # 01:00 CET -> 03:00 CEST
    # --- fall back: the repeated local hour fires once, at its first occurrence
    (NY, "30 1 * * *", "2024-11-03 04:00", "2024-11-03 05:30"),  # 01:30 EDT
    (NY, "30 1 * * *", "2024-11-03 05:30", "2024-11-04 06:30"),  # not 01:30 EST again
    (NY, "30 1 * * *", "2024-11-03 06:10", "2024-11-04 06:30"),  # during the repeat: already fired
    (NY, "0 * * * *", "2024-11-03 05:00", "2024-11-03 07:00"),  # 01:00 EDT -> 02:00 EST
    (NY, "30 2 * * *", "2024-11-03 04:00", "2024-11-03 07:30"),  # 02:30 EST happens once
    (BERLIN, "30 2 * * *", "2024-10-26 22:00", "2024-10-27 00:30"),  # 02:30 CEST
    (BERLIN, "30 2 * * *", "2024-10-27 00:30", "2024-10-28 01:30"),  # not 02:30 CET again
    (BERLIN, "0 3 * * *", "2024-10-27 00:30", "2024-10-27 02:00"),  # 03:00 CET happens once
    # --- six fields: a leading seconds field
    (UTC, "*/15 * * * * *", "2024-01-01 00:00:00", "2024-01-01 00:00:15"),
    (UTC, "30 0 * * * *", "2024-01-01 00:00:30", "2024-01-01 01:00:30"),  # second 30 of minute 0
    (UTC, "10 20 3 * * *", "2024-01-01 00:00:00", "2024-01-01 03:20:10"),  # seconds first, not last
    (NY, "15 30 2 * * *", "2024-03-10 05:00", "2024-03-11 06:30:15"),  # DST rules apply to seconds too
    (NY, "15 30 1 * * *", "2024-11-03 05:30:15", "2024-11-04 06:30:15"),
    # --- aliases (1 January 2024 is a Monday)
    (UTC, "@hourly", "2024-01-01 00:00", "2024-01-01 01:00"),
    (UTC, "@daily", "2024-01-01 00:00", "2024-01-02 00:00"),
    (UTC, "@midnight", "2024-01-01 00:00", "2024-01-02 00:00"),
    (UTC, "@weekly", "2024-01-01 00:00", "2024-01-07 00:00"),  # Sunday
    (UTC, "@monthly", "2024-01-01 00:00", "2024-02-01 00:00"),
    (UTC, "@yearly", "2024-01-01 00:00", "2025-01-01 00:00"),
    (UTC, "@annually", "2024-01-01 00:00", "2025-01-01 00:00"),
    (NY, "@daily", "2024-01-01 00:00", "2024-01-01 05:00"),  # midnight EST
    (NY, "@daily", "2024-03-10 05:00", "2024-03-11 04:00"),  # midnight EDT
    (NY, "@hourly", "2024-11-03 05:00", "2024-11-03 07:00"),  # the repeated 01:00 fires once
]


@pytest.mark.parametrize(("tz", "expression", "after", "expected"), NEXT_FIRE)
def test_next_fire_time(tz: str, expression: str, after: str, expected: str) -> None:
    assert show(CronSchedule(expression, ZoneInfo(tz)).next_after(utc(after))) == show(utc(expected))


# (timezone, start (UTC), fire times of "*/30 * * * *" after it (UTC))
EVERY_HALF_HOUR: list[tuple[str, str, list[str]]] = [
    # New York, spring: 01:00, 01:30 EST, then 03:00, 03:30 EDT
    (
        NY,
        "2024-03-10 05:45",
        ["2024-03-10 06:00:00", "2024-03-10 06:30:00", "2024-03-10 07:00:00", "2024-03-10 07:30:00"],
    ),
    # New York, autumn: 00:30, 01:00, 01:30 EDT, then 02:00, 02:30 EST (01:00/01:30 EST skipped)
    (
        NY,
        "2024-11-03 04:00",
        [
            "2024-11-03 04:30:00",
            "2024-11-03 05:00:00",
            "2024-11-03 05:30:00",
            "2024-11-03 07:00:00",
            "2024-11-03 07:30:00",
        ],
    ),
    # Berlin, spring: 01:30 CET, then 03:00, 03:30 CEST
    (BERLIN, "2024-03-31 00:00", ["2024-03-31 00:30:00", "2024-03-31 01:00:00", "2024-03-31 01:30:00"]),
    # Berlin, autumn: 02:30 CEST, then 03:00 CET (02:00/02:30 CET skipped)
    (BERLIN, "2024-10-27 00:00", ["2024-10-27 00:30:00", "2024-10-27 02:00:00", "2024-10-27 02:30:00"]),
]


@pytest.mark.parametrize(("tz", "start", "expected"), EVERY_HALF_HOUR)
def test_every_half_hour_across_dst_transitions(tz: str, start: str, expected: list[str]) -> None:
    assert fire_times(tz, "*/30 * * * *", start, len(expected)) == expected


# (timezone, local date of a transition, local wall times of that day that do not exist)
TRANSITION_DAYS: list[tuple[str, str, set[str]]] = [
    (NY, "2024-03-10", {"02:00", "02:30"}),
    (NY, "2024-11-03", set()),
    (BERLIN, "2024-03-31", {"02:00", "02:30"}),
    (BERLIN, "2024-10-27", set()),
]


@pytest.mark.parametrize(("tz", "day", "missing"), TRANSITION_DAYS)
def test_every_existing_wall_time_of_a_transition_day_fires_exactly_once(
    tz: str, day: str, missing: set[str]
) -> None:
    """``*/30 * * * *`` through a whole transition day: one fire per wall time, none for missing ones."""
    zone = ZoneInfo(tz)
    schedule = CronSchedule("*/30 * * * *", zone)
    midnight = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=zone).timestamp()
    walls: list[str] = []
    current: float | None = midnight - 1
    while True:
        assert current is not None
        following = schedule.next_after(current)
        assert following is not None
        assert following > current
        local = datetime.fromtimestamp(following, zone)
        if local.strftime("%Y-%m-%d") != day:
            break
        walls.append(local.strftime("%H:%M"))
        current = following
    every_slot = [f"{hour:02d}:{minute:02d}" for hour in range(24) for minute in (0, 30)]
    assert walls == [slot for slot in every_slot if slot not in missing]


def test_normalises_whitespace_in_the_expression() -> None:
    assert CronSchedule("  */5   *  * * *  ", ZoneInfo(UTC)).expression == "*/5 * * * *"


# (expression, text the error must contain)
INVALID: list[tuple[str, str]] = [
    ("61 * * * *", "'61 * * * *'"),
    ("* * 32 * *", "'* * 32 * *'"),
    ("0 25 * * *", "'0 25 * * *'"),
    ("* * *", "'* * *'"),
    ("not a cron", "'not a cron'"),
    ("@reboot", "'@reboot'"),
    ("@every 5m", "'@every 5m'"),
    ("0 0 * * 8", "'0 0 * * 8'"),
    ("", "''"),
    ("   ", "'   '"),
    ("0 0 1 1 * 0 2030", "'0 0 1 1 * 0 2030'"),  # seven fields: not one of the documented forms
    ("* * * * * * *", "'* * * * * * *'"),
]


@pytest.mark.parametrize(("expression", "named"), INVALID)
def test_invalid_expression_is_a_configuration_error_naming_it(expression: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        CronSchedule(expression, ZoneInfo(UTC))
    assert named in str(caught.value)


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 11 *", "0 0 0 30 2 *"])
def test_an_expression_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(ConfigurationError, match="never fires") as caught:
        CronSchedule(expression, ZoneInfo(UTC))
    assert repr(expression) in str(caught.value)
