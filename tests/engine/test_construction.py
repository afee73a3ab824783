"""Building a scheduler: ``Quiv(...)``, ``QuivConfig`` and what they refuse."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import threading
from datetime import timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from quiv import (
    ConfigurationError,
    DatabaseInitializationError,
    InvalidArgumentError,
    InvalidTimezoneError,
    Quiv,
    QuivConfig,
    QuivError,
)
from quiv.testing import ManualClock

from .support import QuivFactory


def noop() -> None:
    pass


# ------------------------------------------------------------ config + values
@pytest.mark.parametrize(
    ("explicit", "named"),
    [
        ({"pool_size": 4}, "pool_size"),
        ({"history_retention_seconds": 60}, "history_retention_seconds"),
        ({"timezone": "Europe/Paris"}, "timezone"),
        # The same value as the default is refused too: quiv cannot tell which one was meant.
        ({"pool_size": 10}, "pool_size"),
        ({"history_retention_seconds": 86400}, "history_retention_seconds"),
        ({"timezone": "UTC"}, "timezone"),
    ],
)
def test_config_together_with_an_explicit_value_is_refused(explicit: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Quiv(QuivConfig(), **explicit)
    assert named in str(caught.value)


def test_config_with_positional_explicit_value_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="pool_size"):
        Quiv(QuivConfig(pool_size=2), 3)


def test_config_alone_is_used(make_quiv: QuivFactory) -> None:
    scheduler = make_quiv(QuivConfig(pool_size=3, history_retention_seconds=7, timezone="Asia/Tokyo"))
    assert scheduler.config == QuivConfig(pool_size=3, history_retention_seconds=7, timezone="Asia/Tokyo")


def test_quiv_config_is_a_frozen_dataclass_with_the_documented_defaults() -> None:
    config = QuivConfig()
    assert dataclasses.is_dataclass(config)
    assert (config.pool_size, config.history_retention_seconds, config.timezone) == (10, 86400, "UTC")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pool_size = 3  # type: ignore[misc]


# ------------------------------------------------------------------ pool_size
@pytest.mark.parametrize("pool_size", [0, -1, -10])
def test_pool_size_below_one_is_refused(pool_size: int) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Quiv(pool_size=pool_size)
    assert "pool_size" in str(caught.value)
    assert str(pool_size) in str(caught.value)


@pytest.mark.parametrize("pool_size", [0, -3])
def test_pool_size_below_one_is_refused_by_quiv_config(pool_size: int) -> None:
    with pytest.raises(ConfigurationError, match="pool_size"):
        QuivConfig(pool_size=pool_size)


@pytest.mark.parametrize(
    ("option", "value"),
    [("history_retention_seconds", "86400"), ("history_retention_seconds", None), ("timezone", 5)],
)
def test_other_options_of_the_wrong_type_are_invalid_arguments(option: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        Quiv(**{option: value})  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    assert option in str(caught.value) or repr(value) in str(caught.value)


@pytest.mark.parametrize("pool_size", [2.5, "4", None, True])
def test_pool_size_of_the_wrong_type_is_an_invalid_argument(pool_size: object) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        Quiv(pool_size=pool_size)  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    assert "pool_size" in str(caught.value)


# ------------------------------------------------------------------ retention
@pytest.mark.parametrize("retention", [-1, -0.5, -86400])
def test_negative_retention_is_refused(retention: float) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Quiv(history_retention_seconds=retention)  # type: ignore[arg-type]
    assert "history_retention_seconds" in str(caught.value)
    assert str(retention) in str(caught.value)


@pytest.mark.parametrize("retention", [0, 1, 0.5, 86400])
def test_zero_or_positive_retention_is_accepted(make_quiv: QuivFactory, retention: float) -> None:
    make_quiv(history_retention_seconds=retention)


# ------------------------------------------------------------------- timezone
@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "Not a zone", "UTC+25"])
def test_unknown_timezone_is_refused(name: str) -> None:
    with pytest.raises(InvalidTimezoneError) as caught:
        Quiv(timezone=name)
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, ValueError)
    assert name in str(caught.value)


def test_unknown_timezone_is_refused_by_quiv_config() -> None:
    with pytest.raises(InvalidTimezoneError, match="Nowhere/Atlantis"):
        QuivConfig(timezone="Nowhere/Atlantis")


@pytest.mark.parametrize("zone", ["America/New_York", "UTC", ZoneInfo("Asia/Tokyo"), timezone.utc])
def test_iana_names_and_tzinfo_objects_are_accepted(make_quiv: QuivFactory, zone: str | tzinfo) -> None:
    make_quiv(timezone=zone)


# ------------------------------------------------------ no loop, nothing on disk
def test_quiv_can_be_built_with_no_event_loop_running(make_quiv: QuivFactory) -> None:
    assert asyncio._get_running_loop() is None
    scheduler = make_quiv()
    assert scheduler.get_all_tasks() == []


def test_quiv_can_be_built_at_import_time_of_a_module(tmp_path: Path) -> None:
    """The documented layout: ``scheduler = Quiv(...)`` at module level, started later in a loop."""
    module = tmp_path / "myapp_scheduler_module.py"
    module.write_text(
        "from quiv import Quiv\n"
        "scheduler = Quiv(pool_size=4, history_retention_seconds=7200, timezone='America/New_York')\n"
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("myapp_scheduler_module", module)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    scheduler: Quiv = mod.scheduler
    try:
        ran = threading.Event()

        async def lifespan() -> None:
            scheduler.start()
            scheduler.add_task("t", ran.set, interval=60)
            await asyncio.to_thread(ran.wait, 5)

        asyncio.run(lifespan())
        assert ran.is_set()
    finally:
        scheduler.shutdown()


def test_quiv_can_be_built_on_a_thread_that_never_had_a_loop(make_quiv: QuivFactory) -> None:
    box: dict[str, object] = {}

    def build() -> None:
        try:
            box["scheduler"] = make_quiv()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=build)
    thread.start()
    thread.join(5)
    assert "error" not in box
    assert isinstance(box["scheduler"], Quiv)


def test_quiv_creates_nothing_on_disk_until_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_quiv: QuivFactory
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scheduler = make_quiv()
    assert os.listdir(tmp_path) == []
    scheduler.add_task("t", noop, interval=60, delay=60)
    assert len(os.listdir(tmp_path)) == 1
    scheduler.shutdown()
    assert os.listdir(tmp_path) == []


def test_database_that_cannot_be_created_raises_database_initialization_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_quiv: QuivFactory
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_directory))
    scheduler = make_quiv()
    with pytest.raises(DatabaseInitializationError) as caught:
        scheduler.start()
    assert isinstance(caught.value, RuntimeError)
    with pytest.raises(DatabaseInitializationError):
        scheduler.add_task("t", noop, interval=60)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert scheduler.get_all_tasks(include_run_once=True) == []


# -------------------------------------------------------------- other options
def test_main_loop_must_be_an_event_loop() -> None:
    with pytest.raises(QuivError, match="main_loop"):
        Quiv(main_loop="loop")  # type: ignore[arg-type]


def test_clock_is_a_keyword_only_option(make_quiv: QuivFactory) -> None:
    clock = ManualClock()
    scheduler = make_quiv(clock=clock)
    task_id = scheduler.add_task("t", noop, interval=60, delay=30)
    assert scheduler.get_task(task_id).next_run_at.timestamp() == pytest.approx(clock.now().timestamp() + 30)
