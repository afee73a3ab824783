"""The option schema is the one place a task option is declared; everything else derives from it."""

from __future__ import annotations

import dataclasses
import io
import pathlib
import tokenize
from datetime import timezone
from typing import Any

import pytest

import quiv
from quiv._schedule.options import (
    COLUMNS,
    DEFAULTS,
    DeclaredOptions,
    ScheduleOptions,
    TaskChanges,
    TaskOptions,
    TaskSettings,
)
from quiv._store.base import TASK_IDENTITY
from quiv.fastapi import QuivTask
from quiv.models import Task

PACKAGE = pathlib.Path(quiv.__file__).parent
#: Options whose names are also ordinary parameter names elsewhere (``*args``,
#: ``**kwargs``, ``shutdown(timeout=)``, ``wait_for_job(timeout=)``): not counted.
GENERIC = {"args", "kwargs", "timeout"}


def _files_naming(name: str) -> set[str]:
    """Files under quiv/ whose code uses ``name`` as an identifier (comments and strings aside)."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        if any(t.type == tokenize.NAME and t.string == name for t in tokens):
            found.add(str(path.relative_to(PACKAGE)))
    return found


@pytest.mark.parametrize("option", sorted(set(TaskOptions.__annotations__) - GENERIC))
def test_each_option_is_named_in_at_most_four_files(option: str) -> None:
    files = _files_naming(option)
    assert "_schedule/options.py" in files
    assert len(files) <= 4, f"{option} is spelled out in {len(files)} files: {sorted(files)}"


def test_the_typed_options_and_the_settings_declare_the_same_options() -> None:
    fields = [f.name for f in dataclasses.fields(TaskSettings) if f.init]
    assert set(fields) == set(TaskOptions.__annotations__)
    assert set(DEFAULTS) == set(fields)
    assert set(TaskChanges.__annotations__) == {*fields, "task_name", "func"}
    assert set(DeclaredOptions.__annotations__) == {*fields, "name"} - {"interval"}
    assert set(ScheduleOptions.__annotations__) < set(fields)


def test_every_stored_option_is_a_field_of_the_public_task_and_of_quiv_task() -> None:
    columns = {c.name for c in COLUMNS}
    assert columns | {"id", "task_name", "status", "next_run_at", "declared"} == set(Task.model_fields)
    assert set(QuivTask.model_fields) == set(Task.model_fields)
    for column in COLUMNS:
        # Descriptions are the schema's doc lines, not written again.
        assert Task.model_fields[column.name].description
        assert QuivTask.model_fields[column.name].description is not None


def test_the_store_row_is_identity_then_the_option_columns() -> None:
    settings = TaskSettings.validate({"interval": 5, "max_retries": 2}, task_name="t")
    row = (*("id", "name", "active", 1.0, 0.0), *settings.columns())
    assert len(row) == len(TASK_IDENTITY) + len(COLUMNS)
    by_column = dict(zip((c.name for c in COLUMNS), settings.columns(), strict=True))
    assert by_column["interval_seconds"] == 5.0
    assert by_column["max_retries"] == 2


def test_an_update_keeps_the_pickled_arguments_and_checks_only_what_changed() -> None:
    kwargs = {"region": "eu"}
    settings = TaskSettings.validate({"interval": 5, "kwargs": kwargs}, task_name="t")
    kwargs["region"] = "us"
    updated = settings.merge({"max_retries": 2}, task_name="t", default_timezone=timezone.utc)
    assert updated.kwargs == settings.kwargs  # the same pickled bytes
    assert updated.public_fields()["kwargs"] == {"region": "eu"}


def test_trusted_snapshots_equal_what_model_construct_builds() -> None:
    from datetime import datetime

    from quiv._enums import JobStatus
    from quiv.models import Job, trusted

    values: dict[str, Any] = {
        "id": "j",
        "task_id": "t",
        "task_name": "n",
        "status": JobStatus.COMPLETED,
        "started_at": datetime(2024, 1, 1, tzinfo=timezone.utc),
        "ended_at": None,
        "duration_seconds": None,
        "error_message": None,
        "attempt": 1,
        "retry_of": None,
        "scheduled_for": datetime(2024, 1, 1, tzinfo=timezone.utc),
        "worker": None,
    }
    assert set(values) == set(Job.model_fields), "trusted() needs every field"
    fast, slow = trusted(Job, dict(values)), Job.model_construct(**values)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    assert repr(fast) == repr(slow)
