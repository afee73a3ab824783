"""Bad input at every public entry: the documented error, a message naming the value, no partial state."""

from __future__ import annotations

import logging
import math
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quiv import (
    ConfigurationError,
    Event,
    HandlerNotRegisteredError,
    HandlerRegistrationError,
    InvalidArgumentError,
    InvalidTimezoneError,
    JobNotFoundError,
    Quiv,
    QuivConfig,
    QuivError,
    SchedulerStoppedError,
    TaskNotFoundError,
    TaskNotScheduledError,
    run_on_main,
)

from .conftest import RecordedFactory, join_quiv_threads
from .invariants import check_invariants, quiv_threads, shutdown_and_check, stopped_calls

UNKNOWN = "4b1c7f7e-0000-4000-8000-000000000000"


def _handler(key: str = "", mode: str = "ok") -> None:
    return None


def _needs_one(x: int) -> None:
    return None


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("this object refuses to be pickled")


def _lock_kwargs() -> dict[str, Any]:
    return {"lock": threading.Lock()}


# (id, keyword arguments, error, text the message must contain)
QUIV_CASES: list[tuple[str, dict[str, Any], type[QuivError], str]] = [
    ("config-str", {"config": "fast"}, InvalidArgumentError, "'fast'"),
    ("config-dict", {"config": {"pool_size": 2}}, InvalidArgumentError, "pool_size"),
    ("config-and-pool", {"config": QuivConfig(), "pool_size": 10}, ConfigurationError, "pool_size"),
    ("config-and-tz", {"config": QuivConfig(), "timezone": "UTC"}, ConfigurationError, "timezone"),
    (
        "config-and-retention",
        {"config": QuivConfig(), "history_retention_seconds": 5},
        ConfigurationError,
        "history_retention_seconds",
    ),
    ("pool-zero", {"pool_size": 0}, ConfigurationError, "0"),
    ("pool-negative", {"pool_size": -3}, ConfigurationError, "-3"),
    ("pool-float", {"pool_size": 2.5}, InvalidArgumentError, "2.5"),
    ("pool-str", {"pool_size": "4"}, InvalidArgumentError, "'4'"),
    ("pool-bool", {"pool_size": True}, InvalidArgumentError, "True"),
    ("pool-none", {"pool_size": None}, InvalidArgumentError, "None"),
    ("retention-negative", {"history_retention_seconds": -1}, ConfigurationError, "-1"),
    ("retention-nan", {"history_retention_seconds": math.nan}, ConfigurationError, "nan"),
    ("retention-str", {"history_retention_seconds": "1d"}, InvalidArgumentError, "'1d'"),
    ("tz-unknown", {"timezone": "Mars/Olympus_Mons"}, InvalidTimezoneError, "Mars/Olympus_Mons"),
    ("tz-empty", {"timezone": ""}, InvalidTimezoneError, "''"),
    ("tz-int", {"timezone": 5}, InvalidArgumentError, "5"),  # a wrong type (decisions.md)
    ("logger-str", {"logger": "Quiv"}, InvalidArgumentError, "'Quiv'"),
    ("main-loop-str", {"main_loop": "loop"}, InvalidArgumentError, "'loop'"),
    ("clock-object", {"clock": 12345}, InvalidArgumentError, "12345"),
]


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make quiv create its temporary directory under ``tmp_path`` so leftovers can be seen."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("kwargs", "error", "text"), [c[1:] for c in QUIV_CASES], ids=[c[0] for c in QUIV_CASES]
)
def test_quiv_constructor_rejects(
    kwargs: dict[str, Any], error: type[QuivError], text: str, private_tmp: Path
) -> None:
    before = quiv_threads()
    with pytest.raises(error) as info:
        Quiv(**kwargs)
    assert text in str(info.value), f"message {str(info.value)!r} does not name {text}"
    assert quiv_threads() == before, "a rejected Quiv(...) started threads"
    assert list(private_tmp.iterdir()) == [], "a rejected Quiv(...) created files"


CONFIG_CASES = [c for c in QUIV_CASES if set(c[1]) <= {"pool_size", "history_retention_seconds", "timezone"}]


@pytest.mark.parametrize(
    ("kwargs", "error", "text"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_quiv_config_rejects(kwargs: dict[str, Any], error: type[QuivError], text: str) -> None:
    with pytest.raises(error) as info:
        QuivConfig(**kwargs)
    assert text in str(info.value)


GOOD_TASK: dict[str, Any] = {"task_name": "t", "func": _handler, "interval": 5}

# (id, overrides of GOOD_TASK, error, text the message must contain)
ADD_TASK_CASES: list[tuple[str, dict[str, Any], type[QuivError], str]] = [
    ("name-none", {"task_name": None}, InvalidArgumentError, "task_name"),
    ("name-int", {"task_name": 7}, InvalidArgumentError, "7"),
    ("name-bytes", {"task_name": b"t"}, InvalidArgumentError, "b't'"),
    ("name-empty", {"task_name": ""}, ConfigurationError, "task_name"),
    ("name-blank", {"task_name": "   "}, ConfigurationError, "task_name"),
    ("func-none", {"func": None}, HandlerRegistrationError, "None"),
    ("func-str", {"func": "print"}, HandlerRegistrationError, "'print'"),
    ("interval-zero", {"interval": 0}, ConfigurationError, "interval"),
    ("interval-negative", {"interval": -5}, ConfigurationError, "-5"),
    ("interval-nan", {"interval": math.nan}, ConfigurationError, "nan"),
    ("interval-inf", {"interval": math.inf}, ConfigurationError, "inf"),
    ("interval-str", {"interval": "5"}, InvalidArgumentError, "'5'"),
    ("interval-none", {"interval": None}, InvalidArgumentError, "interval"),
    ("interval-bool", {"interval": True}, InvalidArgumentError, "True"),
    ("delay-negative", {"delay": -0.5}, ConfigurationError, "-0.5"),
    ("delay-inf", {"delay": math.inf}, ConfigurationError, "inf"),
    ("delay-str", {"delay": "0"}, InvalidArgumentError, "'0'"),
    ("run-once-int", {"run_once": 1}, InvalidArgumentError, "run_once"),
    ("run-once-str", {"run_once": "yes"}, InvalidArgumentError, "'yes'"),
    ("fixed-none", {"fixed_interval": None}, InvalidArgumentError, "fixed_interval"),
    ("args-list", {"args": [1, 2]}, InvalidArgumentError, "[1, 2]"),
    ("args-str", {"args": "ab"}, InvalidArgumentError, "'ab'"),
    ("args-unpicklable", {"args": (_Unpicklable(),)}, ConfigurationError, "refuses to be pickled"),
    ("kwargs-list", {"kwargs": [("a", 1)]}, InvalidArgumentError, "kwargs"),
    ("kwargs-int-key", {"kwargs": {1: "a"}}, InvalidArgumentError, "1"),
    ("kwargs-unpicklable", {"kwargs": _lock_kwargs()}, ConfigurationError, "kwargs"),
    ("progress-int", {"progress_callback": 3}, HandlerRegistrationError, "3"),
]


def _state(scheduler: Quiv) -> tuple[list[Any], list[Any]]:
    return scheduler.get_all_tasks(include_run_once=True), scheduler.get_all_jobs()


@pytest.mark.parametrize(
    ("overrides", "error", "text"), [c[1:] for c in ADD_TASK_CASES], ids=[c[0] for c in ADD_TASK_CASES]
)
def test_add_task_rejects(
    overrides: dict[str, Any], error: type[QuivError], text: str, recorded: RecordedFactory
) -> None:
    scheduler, clock, rec = recorded(pool_size=2)
    keep = scheduler.add_task("keep", rec.handler(), interval=10, kwargs={"key": "keep"})
    clock.advance(0)
    rec.wait_terminal(1)
    before = _state(scheduler)
    added = rec.event_count(Event.TASK_ADDED)
    with pytest.raises(error) as info:
        scheduler.add_task(**{**GOOD_TASK, **overrides})
    assert text in str(info.value), f"message {str(info.value)!r} does not name {text}"
    assert _state(scheduler) == before, "a rejected add_task changed the task or job list"
    assert rec.event_count(Event.TASK_ADDED) == added, "a rejected add_task fired TASK_ADDED"
    clock.advance(10)  # the scheduler still works
    rec.wait_terminal(2)
    check_invariants(rec)
    shutdown_and_check(rec)
    assert keep


def _call(method: str, *args: Any, **kwargs: Any) -> Callable[[Quiv], Any]:
    """``scheduler.<method>(*args, **kwargs)``, untyped on purpose: these are the wrong types."""
    return lambda scheduler: getattr(scheduler, method)(*args, **kwargs)


def _ids_cases() -> list[tuple[str, Callable[[Quiv], Any], type[Exception], str]]:
    """(id, call, error, text) for every call taking an id, with wrong types and unknown ids."""
    cases: list[tuple[str, Callable[[Quiv], Any], type[Exception], str]] = []
    for bad, label in ((5, "int"), (None, "none"), (b"x", "bytes")):
        cases += [
            (f"run-now-{label}", _call("run_task_immediately", bad), InvalidArgumentError, repr(bad)),
            (f"pause-{label}", _call("pause_task", bad), InvalidArgumentError, repr(bad)),
            (f"resume-{label}", _call("resume_task", bad), InvalidArgumentError, repr(bad)),
            (f"remove-{label}", _call("remove_task", bad), InvalidArgumentError, repr(bad)),
            (f"get-task-{label}", _call("get_task", bad), InvalidArgumentError, repr(bad)),
            (f"get-job-{label}", _call("get_job", bad), InvalidArgumentError, repr(bad)),
            (f"cancel-{label}", _call("cancel_job", bad), InvalidArgumentError, repr(bad)),
            (f"wait-{label}", _call("wait_for_job", bad, 1), InvalidArgumentError, repr(bad)),
        ]
    not_callable: Any = 5
    cases += [
        ("run-now-unknown", _call("run_task_immediately", UNKNOWN), HandlerNotRegisteredError, UNKNOWN),
        ("pause-unknown", _call("pause_task", UNKNOWN), TaskNotFoundError, UNKNOWN),
        ("resume-unknown", _call("resume_task", UNKNOWN), TaskNotFoundError, UNKNOWN),
        ("remove-unknown", _call("remove_task", UNKNOWN), TaskNotFoundError, UNKNOWN),
        ("get-task-unknown", _call("get_task", UNKNOWN), TaskNotFoundError, UNKNOWN),
        ("get-job-unknown", _call("get_job", UNKNOWN), JobNotFoundError, UNKNOWN),
        ("wait-unknown", _call("wait_for_job", UNKNOWN, 1), JobNotFoundError, UNKNOWN),
        ("resume-delay-negative", _call("resume_task", UNKNOWN, -1), ConfigurationError, "-1"),
        ("resume-delay-nan", _call("resume_task", UNKNOWN, math.nan), ConfigurationError, "nan"),
        ("resume-delay-str", _call("resume_task", UNKNOWN, "1"), InvalidArgumentError, "'1'"),
        ("wait-timeout-negative", _call("wait_for_job", UNKNOWN, -1), ConfigurationError, "-1"),
        ("wait-timeout-str", _call("wait_for_job", UNKNOWN, "1"), InvalidArgumentError, "'1'"),
        ("all-tasks-str", _call("get_all_tasks", "yes"), InvalidArgumentError, "'yes'"),
        ("all-tasks-int", _call("get_all_tasks", 1), InvalidArgumentError, "1"),
        ("all-jobs-unknown", _call("get_all_jobs", "done"), ConfigurationError, "'done'"),
        ("all-jobs-int", _call("get_all_jobs", 3), ConfigurationError, "3"),
        ("all-jobs-list", _call("get_all_jobs", []), ConfigurationError, "[]"),
        (
            "listener-event-str",
            _call("add_listener", "task_added", _handler),
            ConfigurationError,
            "task_added",
        ),
        ("listener-event-none", _call("add_listener", None, _handler), ConfigurationError, "None"),
        ("listener-callback", _call("add_listener", Event.TASK_ADDED, 5), HandlerRegistrationError, "5"),
        (
            "unlisten-event-str",
            _call("remove_listener", "job_failed", _handler),
            ConfigurationError,
            "job_failed",
        ),
        ("shutdown-timeout-negative", _call("shutdown", timeout=-1), ConfigurationError, "-1"),
        ("shutdown-timeout-str", _call("shutdown", timeout="10"), InvalidArgumentError, "'10'"),
        ("run-on-main-int", lambda _: run_on_main(not_callable), InvalidArgumentError, "5"),
    ]
    return cases


ID_CASES = _ids_cases()


@pytest.mark.parametrize(("call", "error", "text"), [c[1:] for c in ID_CASES], ids=[c[0] for c in ID_CASES])
@pytest.mark.parametrize("started", [True, False], ids=["started", "before-start"])
def test_public_calls_reject(
    call: Callable[[Quiv], Any],
    error: type[Exception],
    text: str,
    started: bool,
    recorded: RecordedFactory,
) -> None:
    scheduler, clock, rec = recorded(pool_size=2, start=started)
    scheduler.add_task("keep", rec.handler(), interval=10, kwargs={"key": "keep"})
    if started:
        clock.advance(0)
        rec.wait_terminal(1)
    before = _state(scheduler)
    events = rec.mark()
    with pytest.raises(error) as info:
        call(scheduler)
    assert isinstance(info.value, QuivError), f"{info.value!r} is not a QuivError"
    assert text in str(info.value), f"message {str(info.value)!r} does not name {text}"
    assert _state(scheduler) == before, "a rejected call changed the task or job list"
    assert rec.mark() == events + 1, "a rejected call fired an event"
    if not started:
        scheduler.start()
    clock.advance(10)
    rec.wait_terminal(2 if started else 1)
    check_invariants(rec)
    shutdown_and_check(rec)


def test_listener_registration_is_idempotent_and_forgiving(recorded: RecordedFactory) -> None:
    scheduler, _clock, rec = recorded()
    seen: list[str] = []

    def listener(event: Event, task: Any) -> None:
        seen.append(task.id)

    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.add_listener(Event.TASK_ADDED, listener)
    scheduler.remove_listener(Event.TASK_PAUSED, listener)  # never added there: ignored
    scheduler.remove_listener(Event.TASK_ADDED, _handler)  # never added: ignored
    task_id = scheduler.add_task("t", rec.handler(), interval=5, kwargs={"key": "t"})
    assert seen == [task_id]
    scheduler.remove_listener(Event.TASK_ADDED, listener)
    scheduler.add_task("u", rec.handler(), interval=5, kwargs={"key": "u"})
    assert seen == [task_id]
    check_invariants(rec)
    shutdown_and_check(rec)


def test_run_once_task_cannot_run_again(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded()
    task_id = scheduler.add_task(
        "once", rec.handler(), interval=5, run_once=True, kwargs={"key": "o", "mode": "gate"}
    )
    clock.advance(0)
    (job_id,) = rec.wait_entered(1)
    before = _state(scheduler)
    with pytest.raises(TaskNotScheduledError, match=task_id):
        scheduler.run_task_immediately(task_id)
    assert _state(scheduler) == before
    rec.release(job_id)
    assert scheduler.wait_for_job(job_id, timeout=5).status.is_terminal
    with pytest.raises(HandlerNotRegisteredError, match=task_id):
        scheduler.run_task_immediately(task_id)
    check_invariants(rec)
    shutdown_and_check(rec)


def test_wait_for_job_times_out_cleanly(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded()
    scheduler.add_task("slow", rec.handler(), interval=5, kwargs={"key": "s", "mode": "gate"})
    clock.advance(0)
    (job_id,) = rec.wait_entered(1)
    with pytest.raises(TimeoutError, match=job_id):
        scheduler.wait_for_job(job_id, timeout=0)
    rec.release(job_id)
    assert scheduler.wait_for_job(job_id, timeout=5).status.value == "completed"
    check_invariants(rec)
    shutdown_and_check(rec)


def test_cancel_job_unknown_and_finished_return_false(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded()
    scheduler.add_task("t", rec.handler(), interval=5, kwargs={"key": "t"})
    clock.advance(0)
    rec.wait_terminal(1)
    (job_id,) = rec.terminals
    assert scheduler.cancel_job(UNKNOWN) is False
    assert scheduler.cancel_job(job_id) is False
    check_invariants(rec)
    shutdown_and_check(rec)


def test_unknown_ids_after_shutdown_raise_scheduler_stopped(recorded: RecordedFactory) -> None:
    """decisions.md: after shutdown every call that reads or changes state raises SchedulerStoppedError."""
    scheduler, _clock, rec = recorded()
    shutdown_and_check(rec)
    for name, call, expected in stopped_calls(scheduler, UNKNOWN, UNKNOWN):
        if isinstance(expected, type):
            with pytest.raises(expected, match="shut down"):
                call()
        else:
            assert call() == expected, name


def test_shutdown_before_start_is_clean(private_tmp: Path) -> None:
    scheduler = Quiv()
    assert list(private_tmp.iterdir()) == [], "Quiv() must create nothing on disk"
    scheduler.shutdown()
    with pytest.raises(SchedulerStoppedError):
        scheduler.start()
    with pytest.raises(SchedulerStoppedError):
        scheduler.add_task("late", _handler, interval=1)
    assert list(private_tmp.iterdir()) == []
    join_quiv_threads()


def test_bad_logger_or_handler_signature_rejected_before_anything_is_stored(
    recorded: RecordedFactory,
) -> None:
    scheduler, _clock, rec = recorded()

    def positional_only(_stop_event: threading.Event, /) -> None:
        return None

    before = _state(scheduler)
    with pytest.raises(HandlerRegistrationError, match="_stop_event"):
        scheduler.add_task("bad", positional_only, interval=5)
    assert _state(scheduler) == before
    with pytest.raises(InvalidArgumentError, match="logger"):
        Quiv(logger=logging.getLogger("x").handlers)  # type: ignore[arg-type]
    shutdown_and_check(rec)
