"""The public surface: exported names, signatures from the spec, enums, the exception tree."""

from __future__ import annotations

import inspect

import pytest

import quiv
from quiv import (
    ConfigurationError,
    DatabaseError,
    DatabaseInitializationError,
    HandlerNotRegisteredError,
    HandlerRegistrationError,
    InvalidArgumentError,
    InvalidTimezoneError,
    JobNotFoundError,
    JobStatus,
    Quiv,
    QuivError,
    SchedulerStoppedError,
    TaskNotFoundError,
    TaskNotScheduledError,
    TaskStatus,
)
from quiv._schedule.options import ScheduleOptions

# The one list to update when a public name is added on purpose (the declarative
# layer will add a few). Keep it sorted.
EXPECTED_ALL = [
    "AmbiguousTaskError",
    "Clock",
    "ConfigurationError",
    "DatabaseError",
    "DatabaseInitializationError",
    "DiscoveryError",
    "Event",
    "HandlerNotRegisteredError",
    "HandlerRegistrationError",
    "InvalidArgumentError",
    "InvalidTimezoneError",
    "Job",
    "JobEvent",
    "JobId",
    "JobListener",
    "JobListenerDecorator",
    "JobNotFoundError",
    "JobStatus",
    "ListenerSpec",
    "ProgressCallback",
    "ProgressHook",
    "ProgressReport",
    "Quiv",
    "QuivConfig",
    "QuivError",
    "SchedulerStats",
    "SchedulerStoppedError",
    "SystemClock",
    "Task",
    "TaskDecorator",
    "TaskEvent",
    "TaskId",
    "TaskListener",
    "TaskListenerDecorator",
    "TaskNotFoundError",
    "TaskNotMaterializedError",
    "TaskNotScheduledError",
    "TaskRegistry",
    "TaskSpec",
    "TaskStatus",
    "get_current_job_id",
    "get_current_task_id",
    "get_current_task_name",
    "run_on_main",
    "run_subprocess",
]


def test_all_is_pinned() -> None:
    assert quiv.__all__ == EXPECTED_ALL


def test_all_is_sorted_and_every_name_exists() -> None:
    assert sorted(quiv.__all__) == quiv.__all__
    for name in quiv.__all__:
        assert hasattr(quiv, name), name


def test_models_module_exports_task_and_job() -> None:
    from quiv import models

    assert models.Task is quiv.Task
    assert models.Job is quiv.Job


def _params(func: object) -> list[tuple[str, object, str]]:
    signature = inspect.signature(func)  # type: ignore[arg-type]
    return [(p.name, p.default, p.kind.name) for p in signature.parameters.values() if p.name != "self"]


def test_constructor_signature_is_the_documented_one() -> None:
    params = _params(Quiv.__init__)
    assert [(name, kind) for name, _, kind in params[:6]] == [
        ("config", "POSITIONAL_OR_KEYWORD"),
        ("pool_size", "POSITIONAL_OR_KEYWORD"),
        ("history_retention_seconds", "POSITIONAL_OR_KEYWORD"),
        ("timezone", "POSITIONAL_OR_KEYWORD"),
        ("logger", "KEYWORD_ONLY"),
        ("main_loop", "KEYWORD_ONLY"),
    ]
    defaults = {name: default for name, default, _ in params}
    assert defaults["config"] is None
    assert defaults["pool_size"] == 10
    assert defaults["history_retention_seconds"] == 86400
    assert defaults["timezone"] == "UTC"
    assert defaults["logger"] is None
    assert defaults["main_loop"] is None
    assert all(kind == "KEYWORD_ONLY" for _, _, kind in params[6:]), "additions are keyword-only"


def test_add_task_signature_is_the_documented_one() -> None:
    params = _params(Quiv.add_task)
    assert [name for name, _, _ in params[:3]] == ["task_name", "func", "interval"]
    assert [(name, default) for name, default, _ in params[:2]] == [
        ("task_name", inspect.Parameter.empty),
        ("func", inspect.Parameter.empty),
    ]
    assert all(kind == "POSITIONAL_OR_KEYWORD" for _, _, kind in params[:9])
    # Additions are keyword-only: typed by the option schema's ScheduleOptions.
    assert [(name, kind) for name, _, kind in params[9:]] == [("options", "VAR_KEYWORD")]
    assert list(ScheduleOptions.__annotations__) == [
        "cron",
        "cron_timezone",
        "run_at",
        "max_retries",
        "retry_backoff",
        "timeout",
        "jitter",
        "misfire",
        "misfire_grace",
    ]
    assert [(name, default) for name, default, _ in params[3:9]] == [
        ("delay", 0),
        ("run_once", False),
        ("fixed_interval", True),
        ("args", None),
        ("kwargs", None),
        ("progress_callback", None),
    ]


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("start", []),
        ("startup", []),
        ("run_task_immediately", ["task_id"]),
        ("pause_task", ["task_id"]),
        ("resume_task", ["task_id", "delay"]),
        ("cancel_job", ["job_id"]),
        ("get_task", ["task_id"]),
        ("get_job", ["job_id"]),
        ("get_all_tasks", ["include_run_once"]),
        ("get_all_jobs", ["status", "task_id", "limit", "offset", "newest_first"]),
        ("count_jobs", ["status", "task_id"]),
        ("remove_task", ["task_id"]),
        ("add_listener", ["event", "callback"]),
        ("remove_listener", ["event", "callback"]),
    ],
)
def test_method_parameters_are_the_documented_ones(method: str, params: list[str]) -> None:
    assert [name for name, _, _ in _params(getattr(Quiv, method))][: len(params)] == params


def test_documented_defaults_of_methods() -> None:
    assert {n: d for n, d, _ in _params(Quiv.resume_task)}["delay"] == 0
    assert {n: d for n, d, _ in _params(Quiv.get_all_tasks)}["include_run_once"] is False
    assert {n: d for n, d, _ in _params(Quiv.get_all_jobs)}["status"] is None


def test_shutdown_and_stop_take_no_required_arguments() -> None:
    for method in (Quiv.shutdown, Quiv.stop):
        required = [
            name
            for name, default, kind in _params(method)
            if default is inspect.Parameter.empty and kind not in ("VAR_POSITIONAL", "VAR_KEYWORD")
        ]
        assert required == []


def test_status_values_are_the_documented_strings() -> None:
    assert [s.value for s in TaskStatus] == ["active", "running", "paused"]
    assert [s.value for s in JobStatus] == [
        "scheduled",
        "running",
        "completed",
        "cancelled",
        "failed",
        "abandoned",
        "missed",
    ]
    assert isinstance(TaskStatus.ACTIVE, str)
    assert isinstance(JobStatus.FAILED, str)
    assert JobStatus("failed") is JobStatus.FAILED


@pytest.mark.parametrize(
    ("error", "parents"),
    [
        (ConfigurationError, (QuivError, ValueError)),
        (InvalidTimezoneError, (ConfigurationError, ValueError)),
        (InvalidArgumentError, (ConfigurationError, TypeError)),
        (HandlerRegistrationError, (ConfigurationError, TypeError)),
        (DatabaseInitializationError, (QuivError, RuntimeError)),
        (DatabaseError, (QuivError, RuntimeError)),
        (SchedulerStoppedError, (QuivError, RuntimeError)),
        (TaskNotFoundError, (QuivError, LookupError)),
        (HandlerNotRegisteredError, (TaskNotFoundError, LookupError)),
        (TaskNotScheduledError, (TaskNotFoundError, LookupError)),
        (JobNotFoundError, (QuivError, LookupError)),
    ],
)
def test_exception_tree(error: type[Exception], parents: tuple[type[Exception], ...]) -> None:
    for parent in parents:
        assert issubclass(error, parent), f"{error.__name__} should subclass {parent.__name__}"
    assert issubclass(QuivError, Exception)


def test_public_names_report_the_package_as_their_module() -> None:
    for name in ("Quiv", "QuivConfig", "QuivError", "TaskNotFoundError", "Event", "run_on_main"):
        assert getattr(quiv, name).__module__ == "quiv", name
