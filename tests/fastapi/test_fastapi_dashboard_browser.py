"""The dashboard in a real headless Chromium, against a real uvicorn server on 127.0.0.1.

Needs Debian's ``chromium`` (or ``QUIV_CHROMIUM=/path/to/chrome``) and the
``playwright`` Python package; Playwright drives the system browser, so no
``playwright install`` download is involved. Set ``QUIV_SCREENSHOT_DIR`` to
keep a screenshot of the page mid-run.

Playwright's sync API keeps an event loop "running" in the test's thread.
quiv adopts the running loop of the first thread that calls it as its main
loop, so each test prepares its scheduler *before* asking for the page.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi_support import DEADLINE, JobEvents, ServerThread, Steps, idle, wait_until
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from quiv import Event, Job, Quiv, Task
from quiv.fastapi import quiv_lifespan, quiv_router

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = DEADLINE * 1000


def find_chromium() -> str | None:
    explicit = os.environ.get("QUIV_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: apt-get install chromium (or set QUIV_CHROMIUM)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        # The browser logs every 4xx answer; the tests that expect one check the page instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("console", on_console)
    yield page
    context.close()
    assert errors == [], errors


@pytest.fixture
def scheduler(make_quiv: Callable[..., Quiv]) -> Quiv:
    return make_quiv(pool_size=4)


def serve(scheduler: Quiv) -> ServerThread:
    app = FastAPI(lifespan=quiv_lifespan(scheduler))
    app.include_router(quiv_router(scheduler, title="quiv test"), prefix="/quiv")
    return ServerThread(app)


def open_dashboard(page: Page, server: ServerThread) -> None:
    page.goto(server.http + "/quiv/dashboard")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")  # the stream said hello


def test_run_now_shows_progress_advancing_and_the_job_finishing(
    scheduler: Quiv, request: pytest.FixtureRequest
) -> None:
    steps = Steps(total=4)
    task_id = scheduler.add_task("nightly-report", steps.handler, interval=3600, delay=3600)
    scheduler.add_task("cleanup", idle, interval=60, delay=3600)
    events = JobEvents(scheduler)
    page: Page = request.getfixturevalue("page")
    with serve(scheduler) as server:
        open_dashboard(page, server)
        row = page.locator(f'#tasks tr[data-task-id="{task_id}"]')
        expect(row.locator('[data-role="status"]')).to_have_text("active")

        row.locator('button[data-action="run"]').click()
        job_id = events.next(Event.JOB_STARTED).id
        expect(row).to_have_attribute("data-status", "running")
        bar = row.locator('[role="progressbar"]')
        expect(bar).to_have_count(1)
        expect(bar).not_to_have_attribute("aria-valuenow", "25")  # no report yet: indeterminate

        for step, percent in ((1, "25"), (2, "50"), (3, "75")):
            steps.release(step)
            expect(bar).to_have_attribute("aria-valuenow", percent)
            expect(row.locator(".plabel")).to_contain_text(f"step {step} of 4")
            if step == 2 and os.environ.get("QUIV_SCREENSHOT_DIR"):
                page.screenshot(path=str(Path(os.environ["QUIV_SCREENSHOT_DIR"]) / "dashboard.png"))

        steps.release(4)
        job_row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
        expect(job_row).to_have_attribute("data-status", "completed")
        expect(job_row.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
        expect(job_row.locator('[data-role="duration"]')).not_to_have_text("\u2013")
        expect(job_row.locator('[data-role="worker"]')).to_have_text("")  # no database_url: no worker id
        expect(row).to_have_attribute("data-status", "active")
        expect(row.locator('[role="progressbar"]')).to_have_count(0)
        assert scheduler.get_job(job_id).status == "completed"


def test_pause_resume_and_cancel_buttons(scheduler: Quiv, request: pytest.FixtureRequest) -> None:
    stop_seen = threading.Event()

    def long_job(_stop_event: threading.Event | None = None) -> None:
        assert _stop_event is not None
        if _stop_event.wait(DEADLINE):
            stop_seen.set()

    task_id = scheduler.add_task("sync-inventory", long_job, interval=60, delay=3600)
    events = JobEvents(scheduler)
    page: Page = request.getfixturevalue("page")
    with serve(scheduler) as server:
        open_dashboard(page, server)
        row = page.locator(f'#tasks tr[data-task-id="{task_id}"]')

        row.locator('button[data-action="pause"]').click()
        expect(row.locator('[data-role="status"]')).to_have_text("paused")
        expect(row.locator('button[data-action="pause"]')).to_be_disabled()
        assert scheduler.get_task(task_id).status == "paused"

        row.locator('button[data-action="resume"]').click()  # resuming without a delay runs it now
        job_id = events.next(Event.JOB_STARTED).id
        expect(row.locator('[data-role="status"]')).to_have_text("running")
        expect(row.locator('button[data-action="pause"]')).to_be_enabled()
        job_row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
        expect(job_row).to_have_attribute("data-status", "running")
        job_row.locator('button[data-action="cancel"]').click()
        assert stop_seen.wait(DEADLINE)
        expect(job_row).to_have_attribute("data-status", "cancelled")
        expect(job_row.locator('button[data-action="cancel"]')).to_have_count(0)
        expect(job_row.locator("td.error")).to_have_text("cancelled by cancel_job()")
        expect(row.locator('[data-role="status"]')).to_have_text("active")


def test_an_error_answer_is_shown(scheduler: Quiv, request: pytest.FixtureRequest) -> None:
    steps = Steps(total=1)
    task_id = scheduler.add_task("once", steps.handler, interval=60, run_once=True)
    page: Page = request.getfixturevalue("page")
    with serve(scheduler) as server:
        assert steps.started.wait(DEADLINE)
        open_dashboard(page, server)
        row = page.locator(f'#tasks tr[data-task-id="{task_id}"]')
        row.locator('button[data-action="run"]').click()  # a run-once task that already started
        expect(page.locator("#toast")).to_contain_text("409")
        expect(page.locator("#toast")).to_contain_text("run-once")
        steps.release()
        expect(row).to_have_count(0)  # gone once its one job ended


def test_with_a_database_jobs_show_their_worker_and_missed_slots(
    make_quiv: Callable[..., Quiv], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'quiv.db'}"
    earlier = make_quiv(database_url=url)  # an earlier run of the application declared a task since dropped
    retired = earlier.add_task("retired", idle, interval=3600, delay=3600)
    earlier.shutdown()
    scheduler = make_quiv(pool_size=2, database_url=url)
    steps = Steps(total=1)
    missed: queue.Queue[Job] = queue.Queue()

    def on_missed(event: Event, task: Task, job: Job) -> None:
        missed.put(job)

    scheduler.add_listener(Event.JOB_MISSED, on_missed)
    task_id = scheduler.add_task("ticker", steps.handler, interval=0.2)
    events = JobEvents(scheduler)
    page: Page = request.getfixturevalue("page")
    with serve(scheduler) as server:
        job = events.next(Event.JOB_STARTED)
        assert job.scheduled_for is not None
        # While the job is held, slots of its 0.2 s schedule go by: they are recorded as missed.
        due = job.scheduled_for + timedelta(seconds=0.5)
        wait_until(lambda: datetime.now(timezone.utc) > due, what="two slots to go by")
        steps.release()
        skipped = missed.get(timeout=DEADLINE)
        scheduler.pause_task(task_id)

        open_dashboard(page, server)
        worker = scheduler.worker_id
        assert worker is not None
        job_row = page.locator(f'#jobs tr[data-job-id="{job.id}"]')
        expect(job_row).to_have_attribute("data-status", "completed")
        expect(job_row.locator('[data-role="worker"]')).to_have_text(worker[:8])
        expect(job_row.locator('[data-role="worker"]')).to_have_attribute("title", worker)
        missed_row = page.locator(f'#jobs tr[data-job-id="{skipped.id}"]')
        expect(missed_row.locator('[data-role="status"]')).to_have_text("missed")
        expect(missed_row.locator('[data-role="worker"]')).to_have_text("")
        expect(missed_row.locator("td.error")).to_contain_text("missed")
        expect(missed_row.locator('[role="progressbar"]')).to_have_count(0)

        note = page.locator(f'#tasks tr[data-task-id="{retired}"] [data-role="task-note"]')
        expect(note).to_contain_text("declared by no process")
        ticker_note = page.locator(f'#tasks tr[data-task-id="{task_id}"] [data-role="task-note"]')
        expect(ticker_note).not_to_contain_text("declared by no process")

        page.locator("#job-filter").select_option("missed")
        expect(job_row).to_have_count(0)
        expect(missed_row).to_have_count(1)
        statuses = page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
        assert set(statuses) == {"missed"}
