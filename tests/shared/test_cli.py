"""The ``quiv`` command line, run the way a user runs it: another process, on a real database.

Each test builds state with a ``Quiv(database_url=...)`` (tasks added, jobs run,
then shut down, or left running where the command must reach a live
scheduler), then runs ``python -m quiv ...`` in a subprocess and reads its
output and exit code. Most tests run twice: on a durable SQLite file and on
PostgreSQL (skipped without ``QUIV_TEST_DATABASE_URL``). One test runs the
installed ``quiv`` console script itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import quiv
from quiv import JobStatus, Quiv, QuivConfig, TaskStatus
from quiv.models import Task

ROOT = Path(quiv.__file__).resolve().parent.parent
DEADLINE = 20.0
PASSWORD = "n0t-a-real-s3cret"
TASK_HEADER = ["NAME", "ID", "STATUS", "NEXT RUN (UTC)", "SCHEDULE", "DECLARED"]
JOB_HEADER = ["ID", "STARTED (UTC)", "TASK", "STATUS", "DURATION", "WORKER", "ERROR"]


# ------------------------------------------------------------------- helpers
def cli(
    *args: str, url: str | None = None, env_url: str | None = None, command: Sequence[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command line in a new process (this checkout's quiv); no QUIV_DATABASE_URL unless given."""
    env = {k: v for k, v in os.environ.items() if k != "QUIV_DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    if env_url is not None:
        env["QUIV_DATABASE_URL"] = env_url
    argv = [*(command or (sys.executable, "-m", "quiv")), *args]
    if url is not None:
        argv += ["--database-url", url]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return result.stdout


def table(output: str) -> tuple[list[str], list[list[str]]]:
    """A printed table as (header, rows), cells split on runs of two spaces or more."""
    lines = output.splitlines()
    return re.split(r" {2,}", lines[0].rstrip()), [re.split(r" {2,}", line.rstrip()) for line in lines[1:]]


def shown(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%d %H:%M:%S"))


@contextlib.contextmanager
def client(url: str) -> Iterator[Quiv]:
    """A scheduler that is never started, to read what the command did (shut down before the next one)."""
    scheduler = Quiv(database_url=url)
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def hello() -> None:
    pass


def boom() -> None:
    raise ZeroDivisionError("division by zero")


def seed(url: str) -> dict[str, str]:
    """Four tasks and two finished jobs (hello completed, then boom failed); returns the tasks' ids."""
    app = Quiv(config=QuivConfig(database_url=url, poll_seconds=0.2))
    try:
        app.add_task("hello", hello, interval=3600, delay=3600)
        app.add_task("boom", boom, interval=3600, delay=3600)
        app.add_task("nightly", hello, cron="0 3 * * *", cron_timezone="Europe/Paris")
        app.add_task("later", hello, run_once=True, interval=600, delay=600)
        app.start()
        ids = {t.task_name: t.id for t in app.get_all_tasks(include_run_once=True)}
        app.run_task_immediately(ids["hello"])
        wait_until(lambda: app.count_jobs(JobStatus.COMPLETED) == 1, "hello ran")
        app.run_task_immediately(ids["boom"])
        wait_until(lambda: app.count_jobs(JobStatus.FAILED) == 1, "boom failed")
    finally:
        app.shutdown()
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    """A durable SQLite file, then a fresh PostgreSQL database."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def seeded(url: str) -> tuple[str, dict[str, str]]:
    return url, seed(url)


def live_app(url: str, **settings: Any) -> Quiv:
    config = QuivConfig(database_url=url, heartbeat_seconds=0.2, dead_after_seconds=5, **settings)
    return Quiv(config=config)


def wait_for_listen(pg_conninfo: str) -> None:
    """Until the scheduler's LISTEN connection is up: a NOTIFY sent before would be lost."""
    import psycopg

    from quiv._durable.store import ENDED

    def listening() -> bool:  # the listener's last LISTEN is the one on ENDED
        with psycopg.connect(pg_conninfo) as conn:
            rows = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
                (f"LISTEN {ENDED}",),
            ).fetchone()
        return rows is not None and rows[0] > 0

    wait_until(listening, "the scheduler listens")


# -------------------------------------------------------------------- tasks
def test_tasks_prints_every_task_as_a_table_and_as_json(seeded: tuple[str, dict[str, str]]) -> None:
    url, ids = seeded
    header, rows = table(ok(cli("tasks", url=url)))
    with client(url) as reader:
        tasks = reader.get_all_tasks(include_run_once=True)
        expected_json = [t.model_dump(mode="json") for t in tasks]
    assert header == TASK_HEADER
    by_name = {t.task_name: t for t in tasks}
    schedules = {
        "hello": "every 1h",
        "boom": "every 1h",
        "nightly": "cron 0 3 * * * (Europe/Paris)",
        "later": "once",
    }
    assert rows == [
        [name, ids[name], "active", shown(by_name[name].next_run_at), schedules[name], "no"]
        for name in ("hello", "boom", "nightly", "later")
    ]
    assert json.loads(ok(cli("tasks", "--json", url=url))) == expected_json


def test_options_go_before_or_after_the_command(sqlite_url: str) -> None:
    seed(sqlite_url)
    before = ok(cli("--database-url", sqlite_url, "--json", "tasks"))
    after = ok(cli("tasks", "--json", url=sqlite_url))
    assert json.loads(before) == json.loads(after)
    assert len(json.loads(before)) == 4


def test_the_database_may_come_from_quiv_database_url(sqlite_url: str) -> None:
    ids = seed(sqlite_url)
    _, rows = table(ok(cli("tasks", env_url=sqlite_url)))
    assert [row[1] for row in rows] == [ids[name] for name in ("hello", "boom", "nightly", "later")]


# --------------------------------------------------------------------- jobs
def test_jobs_lists_the_newest_first_with_filters_and_json(seeded: tuple[str, dict[str, str]]) -> None:
    url, ids = seeded
    with client(url) as reader:
        jobs = reader.get_all_jobs(newest_first=True)
    failed, completed = jobs
    assert (failed.task_name, completed.task_name) == ("boom", "hello")
    assert failed.worker is not None
    assert completed.worker is not None

    header, rows = table(ok(cli("jobs", url=url)))
    assert header == JOB_HEADER
    assert [row[:4] for row in rows] == [
        [failed.id, shown(failed.started_at), "boom", "failed"],
        [completed.id, shown(completed.started_at), "hello", "completed"],
    ]
    assert rows[0][5:] == [failed.worker[:8], "ZeroDivisionError: division by zero"]
    assert rows[1][5:] == [completed.worker[:8]]
    assert re.fullmatch(r"\d+\.\d{3}s", rows[0][4])

    assert [row[0] for row in table(ok(cli("jobs", "--task", "boom", url=url)))[1]] == [failed.id]
    assert [row[0] for row in table(ok(cli("jobs", "--task", ids["hello"], url=url)))[1]] == [completed.id]
    assert [row[0] for row in table(ok(cli("jobs", "--status", "completed", url=url)))[1]] == [completed.id]
    assert ok(cli("jobs", "--status", "running", url=url)) == "no jobs\n"
    limited = cli("jobs", "--limit", "1", url=url)
    assert [row[0] for row in table(ok(limited))[1]] == [failed.id]
    assert "the newest 1 of 2 jobs" in limited.stderr
    assert [row[0] for row in table(ok(cli("jobs", "--limit", "0", url=url)))[1]] == [failed.id, completed.id]
    assert json.loads(ok(cli("jobs", "--json", url=url))) == [j.model_dump(mode="json") for j in jobs]
    assert json.loads(ok(cli("jobs", "--json", "--task", "nightly", url=url))) == []

    missing = cli("jobs", "--task", "nope", url=url)
    assert missing.returncode == 1
    assert missing.stderr == "quiv: no task named 'nope' (nor with that id)\n"

    # The jobs of a removed task stay in the history, found by the task's id (its name is gone).
    ok(cli("remove", "boom", url=url))
    assert [row[0] for row in table(ok(cli("jobs", "--task", ids["boom"], url=url)))[1]] == [failed.id]
    assert cli("jobs", "--task", "boom", url=url).returncode == 1


# ------------------------------------------------------------------ control
def test_pause_resume_run_and_remove_change_the_shared_state_and_run_nothing(
    seeded: tuple[str, dict[str, str]],
) -> None:
    url, ids = seeded
    paused = cli("pause", "hello", url=url)
    assert ok(paused) == f"paused task 'hello' ({ids['hello']})\n"
    as_json = json.loads(ok(cli("pause", ids["boom"], "--json", url=url)))  # by id
    assert (as_json["id"], as_json["status"]) == (ids["boom"], "paused")
    with client(url) as reader:
        assert reader.get_task(ids["hello"]).status is TaskStatus.PAUSED
        assert reader.get_task(ids["boom"]).status is TaskStatus.PAUSED

    before = time.time()
    resumed = ok(cli("resume", "hello", "--delay", "600", url=url))
    assert resumed.startswith(f"resumed task 'hello' ({ids['hello']}): next run ")
    with client(url) as reader:
        hello_task = reader.get_task(ids["hello"])
    assert hello_task.status is TaskStatus.ACTIVE
    assert before + 590 <= hello_task.next_run_at.timestamp() <= time.time() + 610
    again = ok(cli("resume", "hello", url=url))
    assert again == f"task 'hello' ({ids['hello']}) is not paused (active): left as it is\n"
    with client(url) as reader:
        assert reader.get_task(ids["hello"]).next_run_at == hello_task.next_run_at

    before = time.time()
    run = cli("run", "nightly", url=url)
    assert ok(run) == f"task 'nightly' ({ids['nightly']}) runs now\n"
    assert "no running process declares task 'nightly'" in run.stderr
    removed = json.loads(ok(cli("remove", "later", "--json", url=url)))
    assert (removed["id"], removed["task_name"]) == (ids["later"], "later")
    with client(url) as reader:
        nightly = reader.get_task(ids["nightly"])
        assert before - 1 <= nightly.next_run_at.timestamp() <= time.time() + 1
        assert [t.task_name for t in reader.get_all_tasks(include_run_once=True)] == [
            "hello",
            "boom",
            "nightly",
        ]
        assert reader.count_jobs() == 2, "the command line must not run anything itself"

    gone = cli("remove", "later", url=url)
    assert gone.returncode == 1
    assert gone.stdout == ""
    assert gone.stderr == "quiv: no task named 'later' (nor with that id)\n"
    for command in ("pause", "resume", "run"):
        assert cli(command, "nope", url=url).returncode == 1

    # The run asked for while no process was up happens as soon as one that declares the task starts.
    app = live_app(url, poll_seconds=0.2)
    ran = threading.Event()
    app.add_task("nightly", lambda: ran.set(), cron="0 3 * * *", cron_timezone="Europe/Paris")
    try:
        app.start()
        assert ran.wait(DEADLINE)
    finally:
        app.shutdown()


def test_run_and_resume_wake_a_running_scheduler_on_postgresql(pg_url: str, pg_conninfo: str) -> None:
    """The scheduler polls every 30 s here: only the NOTIFY sent with the change can start the run in time."""
    app = live_app(pg_url, poll_seconds=30)
    ran = {"now": threading.Event(), "resumed": threading.Event()}
    app.add_task("now", lambda: ran["now"].set(), interval=3600, delay=3600)
    resumed_id = app.add_task("resumed", lambda: ran["resumed"].set(), interval=3600, delay=3600)
    try:
        app.pause_task(resumed_id)
        app.start()
        wait_for_listen(pg_conninfo)
        ok(cli("run", "now", url=pg_url))
        assert ran["now"].wait(10)
        ok(cli("resume", "resumed", url=pg_url))
        assert ran["resumed"].wait(10)
        assert app.get_task(resumed_id).status is not TaskStatus.PAUSED
    finally:
        app.shutdown()


def test_cancel_stops_a_job_running_in_a_live_scheduler(pg_url: str, pg_conninfo: str) -> None:
    import psycopg

    app = live_app(pg_url)
    started = threading.Event()
    saw_stop: list[bool] = []
    release = threading.Event()

    def slow(_stop_event: threading.Event) -> None:
        started.set()
        saw_stop.append(_stop_event.wait(DEADLINE))

    def stubborn() -> None:  # ignores its stop event
        started.set()
        release.wait(DEADLINE)

    slow_id = app.add_task("slow", slow, interval=3600, delay=3600)
    stubborn_id = app.add_task("stubborn", stubborn, interval=3600, delay=3600)

    def start_job(task_id: str) -> str:
        started.clear()
        app.run_task_immediately(task_id)
        assert started.wait(DEADLINE)
        (job,) = app.get_all_jobs(JobStatus.RUNNING)
        return job.id

    try:
        app.start()
        wait_for_listen(pg_conninfo)
        job_id = start_job(slow_id)
        asked = ok(cli("cancel", job_id, url=pg_url))
        assert asked == f"asked job {job_id} of task 'slow' to stop (worker {app.worker_id})\n"
        ended = app.wait_for_job(job_id, timeout=DEADLINE)
        assert ended.status is JobStatus.CANCELLED
        assert ended.error_message == "cancelled by cancel_job() in another process"
        assert saw_stop == [True]

        again = cli("cancel", job_id, url=pg_url)
        assert again.returncode == 3
        assert again.stderr == f"quiv: job {job_id} of task 'slow' is not running: it ended cancelled\n"
        unknown = cli("cancel", "no-such-job", url=pg_url)
        assert unknown.returncode == 1
        assert unknown.stderr == "quiv: no job with id 'no-such-job'\n"

        job_id = start_job(slow_id)
        waited = json.loads(ok(cli("cancel", job_id, "--wait", str(DEADLINE), "--json", url=pg_url)))
        assert (waited["id"], waited["status"], waited["worker"]) == (job_id, "cancelled", app.worker_id)

        job_id = start_job(stubborn_id)
        late = cli("cancel", job_id, "--wait", "0.5", url=pg_url)
        assert late.returncode == 3
        assert f"job {job_id} was asked to stop but is still running after 0.5 s" in late.stderr
        release.set()
        assert app.wait_for_job(job_id, timeout=DEADLINE).status is JobStatus.CANCELLED

        with psycopg.connect(pg_conninfo) as conn:
            workers = [row[0] for row in conn.execute("SELECT id FROM quiv_workers")]
            runners = {row[0] for row in conn.execute("SELECT worker FROM quiv_jobs")}
        assert workers == [app.worker_id], "the command line must not register as a worker"
        assert runners == {app.worker_id}
    finally:
        release.set()
        app.shutdown()


def test_running_a_run_once_task_whose_run_has_started_exits_3(pg_url: str) -> None:
    app = live_app(pg_url)
    started = threading.Event()

    def once(_stop_event: threading.Event) -> None:
        started.set()
        _stop_event.wait(DEADLINE)

    task_id = app.add_task("once", once, run_once=True, interval=3600, delay=3600)
    try:
        app.start()
        app.run_task_immediately(task_id)
        assert started.wait(DEADLINE)
        refused = cli("run", "once", url=pg_url)
        assert refused.returncode == 3
        assert refused.stderr == (
            f"quiv: task {task_id!r} is a run-once task that has already started; it cannot run again\n"
        )
    finally:
        app.shutdown()


# -------------------------------------------------------------------- stats
def test_stats_counts_tasks_and_jobs(seeded: tuple[str, dict[str, str]]) -> None:
    url, _ = seeded
    lines = ok(cli("stats", url=url)).splitlines()
    assert lines[1] == "tasks     4 active, 0 running, 0 paused"
    assert lines[2] == (
        "jobs      0 scheduled, 0 running, 1 completed, 0 cancelled, 1 failed, 0 abandoned, 0 missed"
    )
    assert lines[3:] == ["processes 0 live"]
    report = json.loads(ok(cli("stats", "--json", url=url)))
    assert report["tasks_by_status"] == {"active": 4, "running": 0, "paused": 0}
    assert report["jobs_by_status"]["completed"] == report["jobs_by_status"]["failed"] == 1
    assert (report["running_jobs"], report["oldest_running_job"], report["workers"]) == (0, None, [])


def test_stats_shows_the_running_job_and_the_live_processes_on_postgresql(pg_url: str) -> None:
    app = live_app(pg_url)
    started = threading.Event()

    def slow(_stop_event: threading.Event) -> None:
        started.set()
        _stop_event.wait(DEADLINE)

    task_id = app.add_task("slow", slow, interval=3600, delay=3600)
    app.add_task("idle", hello, interval=3600, delay=3600)
    try:
        app.start()
        app.run_task_immediately(task_id)
        assert started.wait(DEADLINE)
        (job,) = app.get_all_jobs(JobStatus.RUNNING)
        report = json.loads(ok(cli("stats", "--json", url=pg_url)))
        assert report["running_jobs"] == 1
        assert report["oldest_running_job"] == job.model_dump(mode="json")
        (worker,) = report["workers"]
        assert (worker["id"], worker["pid"], worker["tasks"]) == (
            app.worker_id,
            os.getpid(),
            ["idle", "slow"],
        )
        assert 0 <= worker["heartbeat_age_seconds"] < 5
        text = ok(cli("stats", url=pg_url))
        assert f"oldest running job  {job.id} of task 'slow'" in text
        assert "processes 1 live" in text
        header, rows = table(text.split("processes 1 live\n", 1)[1])
        assert header == ["WORKER", "HOST", "PID", "STARTED (UTC)", "HEARTBEAT", "TASKS"]
        assert rows[0][0] == app.worker_id
        assert rows[0][5] == "idle, slow"
        listed = [Task.model_validate(t) for t in json.loads(ok(cli("tasks", "--json", url=pg_url)))]
        assert {t.task_name: t.declared for t in listed} == {"slow": True, "idle": True}
    finally:
        app.shutdown()


# ----------------------------------------------------------- refusals, errors
def test_a_sqlite_file_held_by_a_running_scheduler_is_refused_with_exit_2(sqlite_url: str) -> None:
    app = Quiv(database_url=sqlite_url)
    app.add_task("hello", hello, interval=3600, delay=3600)
    app.start()
    try:
        for argv in (["tasks"], ["jobs"], ["stats"], ["pause", "hello"], ["cancel", "some-job"]):
            refused = cli(*argv, url=sqlite_url)
            assert refused.returncode == 2, argv
            assert refused.stdout == ""
            assert refused.stderr.startswith("quiv: the database file ")
            assert "is in use by another process" in refused.stderr
            assert "Traceback" not in refused.stderr
        assert app.get_all_tasks()[0].status is TaskStatus.ACTIVE
    finally:
        app.shutdown()
    assert "hello" in ok(cli("tasks", url=sqlite_url))


def test_without_a_database_url_the_command_explains_the_private_database() -> None:
    for result in (cli("tasks"), cli("tasks", env_url="  ")):
        assert result.returncode == 2
        assert result.stdout == ""
        assert "--database-url" in result.stderr
        assert "QUIV_DATABASE_URL" in result.stderr
        assert "private temporary database that no other process can see" in result.stderr


def test_a_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    result = cli("tasks", url=f"sqlite:///{path}")
    assert result.returncode == 2
    assert f"there is no database file at {str(path)!r}" in result.stderr
    assert not path.exists()


def test_a_url_quiv_cannot_use_is_a_usage_error_and_hides_its_password() -> None:
    result = cli("tasks", url=f"mysql://user:{PASSWORD}@db.example/app")
    assert result.returncode == 2
    assert "quiv stores its state in SQLite" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_an_unreachable_database_exits_4_and_hides_its_password() -> None:
    url = f"postgresql+psycopg://quiv:{PASSWORD}@127.0.0.1:1/nowhere"
    result = cli("tasks", "--connect-timeout", "2", url=url)
    assert result.returncode == 4
    assert result.stderr.startswith("quiv: quiv could not ")
    assert "PostgreSQL at 127.0.0.1:1/nowhere" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_the_password_of_a_working_url_is_never_printed(pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(pg_url)
    if parsed.password is not None:
        pytest.skip("the test server's URL has a password of its own")
    url = parsed.set(password=PASSWORD).render_as_string(hide_password=False)  # trust auth ignores it
    seed(url)
    outputs = [
        cli(*argv, url=url) for argv in (["stats"], ["stats", "--json"], ["tasks", "--json"], ["jobs"])
    ]
    for result in outputs:
        assert PASSWORD not in ok(result) + result.stderr
    masked = parsed.set(drivername="postgresql+psycopg", password=PASSWORD).render_as_string(
        hide_password=True
    )
    assert json.loads(outputs[1].stdout)["database"] == masked
    assert "***" in masked


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["jobs", "--limit", "-1"],
        ["jobs", "--limit", "many"],
        ["jobs", "--status", "bogus"],
        ["pause"],
        ["resume", "hello", "--delay", "soon"],
        ["cancel", "some-job", "--wait", "nan"],
        ["tasks", "--connect-timeout", "0"],
    ],
)
def test_a_bad_command_line_exits_2_with_the_usage(argv: list[str]) -> None:
    result = cli(*argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: quiv" in result.stderr


def test_help_names_every_command_and_the_exit_codes() -> None:
    text = ok(cli("--help"))
    for command in ("tasks", "jobs", "pause", "resume", "run", "remove", "cancel", "stats"):
        assert re.search(rf"^    {command} ", text, re.MULTILINE), command
    assert "exit codes:" in text
    assert ok(cli("--version")) == f"quiv {quiv.__version__}\n"


def test_import_quiv_does_not_load_the_command_line() -> None:
    code = "import sys, quiv; print('quiv.cli' in sys.modules, 'argparse' in sys.modules)"
    result = cli(command=(sys.executable, "-c", code))
    assert ok(result) == "False False\n"


def _console_script() -> str | None:
    """The installed ``quiv`` script: next to this interpreter, else on PATH."""
    name = "quiv.exe" if os.name == "nt" else "quiv"
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.is_file():
        return str(beside)
    return shutil.which("quiv")


def test_the_installed_console_script_runs_the_command_line(sqlite_url: str) -> None:
    script = _console_script()
    if script is None:
        pytest.skip("no quiv console script installed (pip install -e . creates it)")
    ids = seed(sqlite_url)
    _, rows = table(ok(cli("tasks", url=sqlite_url, command=[script])))
    assert [row[1] for row in rows] == [ids[name] for name in ("hello", "boom", "nightly", "later")]
    missing = cli("pause", "nope", url=sqlite_url, command=[script])
    assert missing.returncode == 1
    assert cli(command=[script]).returncode == 2


def test_every_command_and_option_is_documented() -> None:
    from quiv.cli import build_parser

    page = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"tasks", "jobs", "pause", "resume", "run", "remove", "cancel", "stats"}
    for name, sub in commands.choices.items():
        assert re.search(rf"^### quiv {name}\b", page, re.MULTILINE), f"docs/cli.md has no section on {name}"
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in page, f"docs/cli.md does not mention {flag} of quiv {name}"


def test_an_unexpected_error_exits_4_with_its_traceback(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from quiv import cli as cli_module

    def broken(*_args: Any) -> int:
        raise RuntimeError("a bug in a command")

    seed(sqlite_url)
    monkeypatch.setitem(cli_module._COMMANDS, "tasks", broken)
    assert cli_module.main(["tasks", "--database-url", sqlite_url]) == 4
    err = capsys.readouterr().err
    assert "RuntimeError: a bug in a command" in err
    assert err.endswith("quiv: the command failed with an unexpected error (above)\n")
    assert "hello" in ok(cli("tasks", url=sqlite_url)), "the file must be let go after the error"
