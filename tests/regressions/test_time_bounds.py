"""Seconds beyond 100 years are refused before anything changes; a worker survives a failing wait.

Regression tests for the first two findings of the hardening issue: one
``resume?delay=1e10`` used to freeze every worker (``Condition.wait`` raised
``OverflowError``) and larger values left a task that no read could show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from quiv import ConfigurationError, Quiv, SystemClock
from quiv._schedule.options import MAX_SECONDS

DEADLINE = 5.0
TOO_FAR = [1e10, 3e11, 1e300, MAX_SECONDS * 1.01]


def _noop() -> None: ...


@pytest.mark.parametrize("seconds", TOO_FAR)
def test_resume_with_a_delay_past_the_bound_is_refused_and_changes_nothing(
    make_quiv: Callable[..., Quiv], seconds: float
) -> None:
    scheduler = make_quiv()
    task_id = scheduler.add_task("t", _noop, interval=60, delay=60)
    scheduler.pause_task(task_id)
    before = scheduler.get_task(task_id).model_dump()
    with pytest.raises(ConfigurationError, match="100 years"):
        scheduler.resume_task(task_id, delay=seconds)
    assert scheduler.get_task(task_id).model_dump() == before


@pytest.mark.parametrize(
    "option", ["interval", "delay", "timeout", "retry_backoff", "jitter", "misfire_grace"]
)
def test_every_seconds_option_is_bounded(make_quiv: Callable[..., Quiv], option: str) -> None:
    scheduler = make_quiv()
    options: dict[str, Any] = {"interval": 60, option: 1e10}
    with pytest.raises(ConfigurationError, match=option):
        scheduler.add_task("t", _noop, **options)
    assert scheduler.get_all_tasks(include_run_once=True) == []
    scheduler.add_task("t", _noop, **{**options, option: MAX_SECONDS})  # the bound itself is fine


def test_a_long_but_valid_delay_does_not_stop_other_tasks(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv(pool_size=1)
    scheduler.add_task("far", _noop, interval=MAX_SECONDS, delay=MAX_SECONDS)
    scheduler.start()
    ran = threading.Event()
    scheduler.add_task("soon", ran.set, interval=60)
    assert ran.wait(DEADLINE)
    assert scheduler.get_all_tasks()[0].next_run_at.year > datetime.now().year + 90


class _FailingOnce(SystemClock):
    """A clock whose first ``wait_seconds`` raises, as an out-of-range wait used to."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = threading.Event()

    def wait_seconds(self, deadline: float) -> float | None:
        if not self.failed.is_set():
            self.failed.set()
            raise OverflowError("timestamp out of range for platform time_t")
        return super().wait_seconds(deadline)


def test_a_worker_survives_a_failure_in_its_idle_wait(
    make_quiv: Callable[..., Quiv], caplog: pytest.LogCaptureFixture
) -> None:
    clock = _FailingOnce()
    scheduler = make_quiv(pool_size=1, clock=clock)
    scheduler.add_task("later", _noop, interval=3600, delay=3600)
    scheduler.start()
    assert clock.failed.wait(DEADLINE)
    ran = threading.Event()
    scheduler.add_task("now", ran.set, interval=60)
    assert ran.wait(DEADLINE), "no job ran after the worker's wait failed"
    assert any("worker loop failed" in r.message for r in caplog.records)
    stats = scheduler.stats()
    assert stats.last_job_started_at is not None
