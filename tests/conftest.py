"""Fixtures shared by the whole suite: schedulers that are always shut down, a manual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

from quiv import Quiv
from quiv.testing import ManualClock

#: Where ``manual_clock`` starts: a fixed instant, so expected times can be written down.
CLOCK_START = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _default_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without QUIV_DATABASE_URL, so the default mode is what the default tests see."""
    monkeypatch.delenv("QUIV_DATABASE_URL", raising=False)


@pytest.fixture
def make_quiv() -> Iterator[Callable[..., Quiv]]:
    """Build schedulers with ``make_quiv(...)`` (same arguments as ``Quiv``); all are shut down after."""
    created: list[Quiv] = []

    def factory(*args: Any, **kwargs: Any) -> Quiv:
        scheduler = Quiv(*args, **kwargs)
        created.append(scheduler)
        return scheduler

    yield factory
    for scheduler in reversed(created):
        scheduler.shutdown(timeout=5)


@pytest.fixture
def manual_clock() -> ManualClock:
    """A clock that only moves when the test advances it, starting at 2024-01-01 00:00 UTC."""
    return ManualClock(start=CLOCK_START)
