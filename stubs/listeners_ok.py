"""Listeners fit their event group: (event, task) for TASK_*, (event, task, job) for JOB_*."""

from __future__ import annotations

from typing_extensions import assert_type

from quiv import Event, Quiv
from quiv._declare.decorators import JobListenerDecorator, TaskListenerDecorator
from quiv._declare.registry import TaskRegistry
from quiv.models import Job, Task

scheduler = Quiv()
registry = TaskRegistry()

assert_type(scheduler.on(Event.TASK_ADDED), TaskListenerDecorator)
assert_type(scheduler.on(Event.JOB_FAILED, Event.JOB_CANCELLED), JobListenerDecorator)
assert_type(registry.on(Event.TASK_PAUSED, Event.TASK_RESUMED), TaskListenerDecorator)


@scheduler.on(Event.TASK_ADDED, Event.TASK_REMOVED, Event.TASK_UPDATED)
def on_task(event: Event, task: Task) -> None:
    print(event.value, task.task_name)


@registry.on(Event.JOB_COMPLETED, Event.JOB_FAILED)
async def on_job(event: Event, task: Task, job: Job) -> None:
    print(event.value, task.task_name, job.duration_seconds)


@scheduler.on(Event.JOB_STARTED)
def on_anything(*args: object) -> None:
    print(args)


async def call_them(task: Task, job: Job) -> None:
    assert_type(on_task(Event.TASK_ADDED, task), None)
    assert_type(await on_job(Event.JOB_FAILED, task, job), None)
