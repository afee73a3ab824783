"""``next_run_after``: the pure schedule arithmetic, as a table of datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quiv._schedule.triggers import next_run_after


def at(clock: str) -> float:
    """Epoch seconds of ``clock`` (``HH:MM:SS`` or with fractions) on 2024-03-10, UTC."""
    parsed = datetime.strptime(
        f"2024-03-10 {clock}", "%Y-%m-%d %H:%M:%S.%f" if "." in clock else "%Y-%m-%d %H:%M:%S"
    )
    return parsed.replace(tzinfo=timezone.utc).timestamp()


HOUR = 3600.0

# (due, ended, interval, fixed_interval, expected next run)
TABLE: list[tuple[str, str, float, bool, str]] = [
    # fixed_interval=True: the cadence of the due time, missed points skipped
    ("12:00:10", "12:00:15", HOUR, True, "13:00:10"),  # the spec's example
    ("12:00:10", "12:10:10", HOUR, True, "13:00:10"),
    ("12:00:10", "13:00:09", HOUR, True, "13:00:10"),  # ends just before the next point
    ("12:00:10", "13:00:10", HOUR, True, "13:00:10"),  # ends on it: that point is not past yet
    ("12:00:10", "13:00:11", HOUR, True, "14:00:10"),  # ends just after: that point is skipped
    ("12:00:10", "15:30:00", HOUR, True, "16:00:10"),  # several missed points skipped
    ("12:00:00", "12:00:00", 10, True, "12:00:10"),  # instant run
    ("12:00:00", "11:59:59", 10, True, "12:00:10"),  # clock stepped back: still after due
    ("12:00:00", "12:00:25", 10, True, "12:00:30"),
    ("12:00:00", "12:00:00.5", 0.25, True, "12:00:00.5"),
    ("12:00:00", "12:00:00.6", 0.25, True, "12:00:00.75"),
    # fixed_interval=False: interval after the end
    ("12:00:10", "12:10:10", HOUR, False, "13:10:10"),
    ("12:00:00", "12:00:25", 10, False, "12:00:35"),
    ("12:00:00", "12:00:00", 10, False, "12:00:10"),
    ("12:00:00", "15:30:00", HOUR, False, "16:30:00"),
]


@pytest.mark.parametrize(("due", "ended", "interval", "fixed", "expected"), TABLE)
def test_next_run_after_table(due: str, ended: str, interval: float, fixed: bool, expected: str) -> None:
    result = next_run_after(at(due), at(ended), interval, fixed_interval=fixed)
    assert result == pytest.approx(at(expected), abs=1e-6)


def test_fixed_interval_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        next_run_after(0.0, 1.0, 10.0, True)  # type: ignore[call-arg]


def test_float_rounding_never_lands_in_the_past() -> None:
    due = 1_700_000_000.1
    interval = 0.1
    for steps in range(1, 200):
        ended = due + steps * interval
        result = next_run_after(due, ended, interval, fixed_interval=True)
        assert result >= ended
        assert result - ended < interval + 1e-6


@given(
    due=st.floats(min_value=1e9, max_value=2e9),
    run=st.floats(min_value=0, max_value=1e6),
    interval=st.floats(min_value=0.001, max_value=1e5),
)
def test_fixed_interval_properties(due: float, run: float, interval: float) -> None:
    ended = due + run
    result = next_run_after(due, ended, interval, fixed_interval=True)
    assert result > due
    assert result >= ended
    steps = (result - due) / interval
    assert steps == pytest.approx(round(steps), abs=1e-3), "the next run is on the cadence"
    assert result - interval < max(ended, due + interval) + 1e-6 * max(1.0, interval), (
        "no point skipped needlessly"
    )


@given(
    due=st.floats(min_value=1e9, max_value=2e9),
    run=st.floats(min_value=0, max_value=1e6),
    interval=st.floats(min_value=0.001, max_value=1e5),
)
def test_fixed_interval_false_properties(due: float, run: float, interval: float) -> None:
    ended = due + run
    assert next_run_after(due, ended, interval, fixed_interval=False) == ended + interval


def test_works_with_datetimes_from_the_spec_example() -> None:
    start = datetime(2024, 3, 10, 12, 0, 10, tzinfo=timezone.utc)
    ended = start + timedelta(minutes=10)
    result = next_run_after(start.timestamp(), ended.timestamp(), 3600, fixed_interval=True)
    assert datetime.fromtimestamp(result, timezone.utc) == start + timedelta(hours=1)
