"""Listeners that do not fit their event group, and mixed groups, are type errors."""

from __future__ import annotations

from quiv import Event, Quiv
from quiv._declare.registry import TaskRegistry
from quiv.models import Job, Task

scheduler = Quiv()
registry = TaskRegistry()


@scheduler.on(Event.TASK_ADDED)  # type: ignore[type-var]
def task_listener_wanting_a_job(event: Event, task: Task, job: Job) -> None:
    pass


@scheduler.on(Event.JOB_FAILED)  # type: ignore[type-var]
def job_listener_missing_the_job(event: Event, task: Task) -> None:
    pass


@registry.on(Event.JOB_COMPLETED)  # type: ignore[type-var]
def job_listener_with_wrong_types(event: Event, task: Job, job: Task) -> None:
    pass


@scheduler.on(Event.TASK_ADDED, Event.JOB_FAILED)  # type: ignore[call-overload, untyped-decorator]
def mixed_groups(event: Event, task: Task) -> None:
    pass


scheduler.on("job_failed")  # type: ignore[call-overload]
