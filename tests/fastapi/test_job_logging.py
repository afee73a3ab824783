"""``quiv.logging.JobContextFilter``: log records carry the job that wrote them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi_support import JobEvents

from quiv import Event, Quiv
from quiv.logging import JobContextFilter

FORMAT = "%(job_id)s|%(task_id)s|%(task_name)s|%(message)s"


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[ListHandler]:
    handler = ListHandler()
    handler.addFilter(JobContextFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("quiv_test_jobs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv(pool_size=2)


def deep_helper() -> None:
    # Knows nothing about quiv, yet its line is stamped with the job.
    logging.getLogger("quiv_test_jobs.helpers").info("deep inside")


def sync_handler() -> None:
    logging.getLogger("quiv_test_jobs").info("sync job")
    deep_helper()


async def async_handler() -> None:
    await asyncio.sleep(0)

    async def child() -> None:
        logging.getLogger("quiv_test_jobs").info("child task of an async job")

    await asyncio.gather(child())


def test_records_from_sync_and_async_jobs_carry_the_job(scheduler: Quiv, captured: ListHandler) -> None:
    events = JobEvents(scheduler)
    scheduler.start()
    sync_id = scheduler.add_task("sync", sync_handler, interval=60, run_once=True)
    sync_job = events.next(Event.JOB_COMPLETED)
    async_id = scheduler.add_task("async", async_handler, interval=60, run_once=True)
    async_job = events.next(Event.JOB_COMPLETED)
    logging.getLogger("quiv_test_jobs").info("outside")
    assert captured.lines == [
        f"{sync_job.id}|{sync_id}|sync|sync job",
        f"{sync_job.id}|{sync_id}|sync|deep inside",
        f"{async_job.id}|{async_id}|async|child task of an async job",
        "-|-|-|outside",
    ]


def test_default_and_explicit_values(captured: ListHandler) -> None:
    handler = ListHandler()
    handler.addFilter(JobContextFilter(default=""))
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("quiv_test_jobs.defaults")
    logger.addHandler(handler)
    try:
        logger.info("no job")
        logger.info("given", extra={"job_id": "mine"})
    finally:
        logger.removeHandler(handler)
    assert handler.lines == ["|||no job", "mine|||given"]
    # A record is stamped once, by the first filter that sees it (here the child logger's handler).
    assert captured.lines[-1] == "mine|||given"
    assert JobContextFilter().filter(logging.makeLogRecord({"msg": "x"})) is True
