"""The typing cases in ``stubs/`` type-check cleanly, and each rejection says what it should.

``stubs/`` marks every expected error with ``# type: ignore[code]`` and runs
with ``warn_unused_ignores``: a check that stops firing fails here.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "stubs" / "mypy.ini"


def _mypy(monkeypatch: pytest.MonkeyPatch, *targets: str) -> tuple[str, int]:
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # so mypy can import the quiv.mypy plugin
    args = ["--config-file", str(CONFIG), "--warn-unused-ignores", "--no-error-summary", *targets]
    stdout, stderr, status = api.run(args)
    return stdout + stderr, status


def test_the_typing_cases_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "stubs").glob("*.py"))
    assert len(cases) >= 5
    output, status = _mypy(monkeypatch, *cases)
    assert (output, status) == ("", 0)


BAD = """\
from __future__ import annotations

import threading
from collections.abc import Callable

from quiv import Event, Quiv
from quiv.models import Job, Task

scheduler = Quiv()


@scheduler.on(Event.TASK_ADDED)
def wants_job(event: Event, task: Task, job: Job) -> None: ...


@scheduler.on(Event.TASK_ADDED, Event.JOB_FAILED)
def mixed(event: Event, task: Task) -> None: ...


@scheduler.task(60)
def cleanup(days: int, _job_id: str | None = None) -> None: ...


cleanup("thirty")


@scheduler.task(60)
def stop_flag(_stop_event: bool = False) -> None: ...


@scheduler.task(60)
def numbered(_job_id: int) -> None: ...


@scheduler.task(60)
def counting(_progress_hook: Callable[..., int] | None = None) -> None: ...


@scheduler.task(60)
def spread(*_stop_event: threading.Event) -> None: ...
"""

EXPECTED = [
    'bad.py:12: error: Value of type variable "_TL" of "__call__" of "TaskListenerDecorator" cannot be '
    '"Callable[[Event, Task, Job], None]"  [type-var]',
    'bad.py:16: error: No overload variant of "on" of "Quiv" matches argument types '
    '"Event", "Event"  [call-overload]',
    'bad.py:24: error: Argument 1 to "cleanup" has incompatible type "str"; expected "int"  [arg-type]',
    'bad.py:27: error: Task handler "stop_flag" annotates "_stop_event" as "bool", which cannot accept '
    "a threading.Event that quiv injects  [quiv-injection]",
    'bad.py:31: error: Task handler "numbered" annotates "_job_id" as "int", which cannot accept '
    "the job id (a str) that quiv injects  [quiv-injection]",
    'bad.py:35: error: Task handler "counting" annotates "_progress_hook" as "Callable[..., int] | None", '
    "which cannot accept a quiv.types.ProgressHook that quiv injects  [quiv-injection]",
    'bad.py:39: error: Task handler "spread" declares "_stop_event" as a variadic parameter; '
    "quiv passes it by keyword  [quiv-injection]",
]


def test_each_rejection_has_its_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    output, status = _mypy(monkeypatch, "--hide-error-context", str(tmp_path / "bad.py"))
    errors = [re.sub(r"^.*bad\.py:", "bad.py:", line) for line in output.splitlines() if ": error:" in line]
    assert status == 1
    for expected in EXPECTED:
        assert expected in errors
    unexpected = [e for e in errors if e not in EXPECTED and "untyped-decorator" not in e]
    assert unexpected == []
