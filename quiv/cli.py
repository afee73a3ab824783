"""The ``quiv`` command line: look at and steer the schedule kept in a durable or shared database.

``quiv tasks``, ``quiv jobs``, ``quiv pause|resume|run|remove TASK``,
``quiv cancel JOB`` and ``quiv stats`` work on the database named by
``--database-url`` (or ``$QUIV_DATABASE_URL``), built with the standard
library's :mod:`argparse`.

The command is a *client*: it builds a :class:`~quiv.Quiv` that is never
started, so it reads and changes the shared state (waking the running
processes, through NOTIFY on PostgreSQL) but registers no worker and claims no
run. A SQLite file serves one process at a time: while the application holds
it, the command is refused (exit 2); PostgreSQL may be used at any time.

Exit codes: 0 done, 1 no such task or job, 2 usage or configuration (bad
option, no database URL, a SQLite file in use), 3 not possible in the task's
or job's current state, 4 the database failed (or another error). See
``docs/cli.md``. This module is not imported by ``import quiv``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

from quiv._enums import JobStatus, TaskStatus

if TYPE_CHECKING:
    from sqlmodel import SQLModel

    from quiv import Quiv
    from quiv.models import Task

__all__ = ["EXIT_FAILED", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "main"]

EXIT_OK = 0
#: No task or job with that name or id.
EXIT_NOT_FOUND = 1
#: A bad option, no database URL, a URL quiv cannot use, a SQLite file another process holds.
EXIT_USAGE = 2
#: The task or job exists, but the command cannot apply to it now (a job that is not running...).
EXIT_REFUSED = 3
#: The database could not be reached or failed, or any other error.
EXIT_FAILED = 4

#: ``quiv jobs`` shows this many jobs unless ``--limit`` says otherwise.
DEFAULT_LIMIT = 20
#: The error column of ``quiv jobs`` is cut to this many characters (``--json`` has it whole).
ERROR_WIDTH = 60

_NO_URL = (
    "no database given: pass --database-url URL or set QUIV_DATABASE_URL to the database your "
    "application uses (sqlite:///path/to/file.db or postgresql+psycopg://user@host:port/db). Without "
    "one, a scheduler keeps its state in a private temporary database that no other process can see"
)

_EPILOG = """\
exit codes:
  0  done
  1  no such task or job
  2  usage or configuration: a bad option, no database URL, a SQLite file in use by a running process
  3  not possible now: the job is not running, a run-once task has already run, --wait ran out
  4  the database could not be reached or failed

TASK is a task's name or id. Times are shown in UTC.
A SQLite file serves one process: use the command while the application is stopped
(PostgreSQL: at any time). See docs/cli.md.
"""


class CommandError(Exception):
    """Print ``message`` on stderr and exit with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------- arguments
def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {value!r}")
    return number


def _positive_seconds(value: str) -> float:
    number = _seconds(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return number


def _common(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name (given twice, the later one wins)."""
    parser = argparse.ArgumentParser(add_help=False)
    extra: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="the application's database: sqlite:///path/to/file.db or "
        "postgresql+psycopg://user:password@host:port/db (default: $QUIV_DATABASE_URL)",
        **extra,
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (the models' fields) instead of a table", **extra
    )
    parser.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        help="how long connecting to the database may take (default: 10)",
        **({"default": 10.0} if defaults else extra),
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``quiv`` argument parser (``main`` uses it; the documentation mirrors it)."""
    from quiv import __version__

    parser = argparse.ArgumentParser(
        prog="quiv",
        description="Look at and steer the tasks and jobs of quiv schedulers whose state lives in a\n"
        "durable (SQLite file) or shared (PostgreSQL) database.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"quiv {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common(defaults=False)]

    def command(name: str, summary: str, details: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=details, parents=common)

    def task_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("task", metavar="TASK", help="the task's name or id")
        return parser

    command(
        "tasks",
        "list the tasks",
        "List every task: name, id, status, next run (UTC), schedule, and whether a running process "
        "declares it.",
    )
    jobs = command(
        "jobs",
        "list the jobs, newest first",
        "List jobs, newest first: id, start (UTC), task, status, duration, worker (the first 8 "
        "characters of its id) and error (its first line).",
    )
    jobs.add_argument("--task", metavar="TASK", help="only the jobs of this task (name or id)")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus], help="only the jobs with this status")
    jobs.add_argument(
        "--limit",
        type=_count,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show at most N jobs (default: {DEFAULT_LIMIT}; 0: all)",
    )
    task_argument(
        command(
            "pause",
            "pause a task (no scheduled runs until resumed)",
            "Pause a task: no scheduled run until it is resumed (a job already running finishes).",
        )
    )
    resume = task_argument(
        command(
            "resume",
            "resume a paused task",
            "Resume a paused task: its next run is at once, or --delay seconds from now. A task that is "
            "not paused is left as it is.",
        )
    )
    resume.add_argument(
        "--delay",
        dest="after",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="its next run is this long from now (default: 0, at once)",
    )
    task_argument(
        command(
            "run",
            "run a task now, outside its schedule",
            "Run a task now, outside its schedule. A paused task runs once and stays paused; a task whose "
            "job is running runs again as soon as that job ends.",
        )
    )
    task_argument(
        command(
            "remove",
            "delete a task",
            "Delete a task; a job of it that is running is asked to stop. A task that a running process "
            "declares comes back (with a new id) when that process restarts.",
        )
    )
    cancel = command(
        "cancel",
        "ask a running job to stop",
        "Ask a running job to stop: its _stop_event is set in whichever process runs it.",
    )
    cancel.add_argument("job", metavar="JOB", help="the job's id (the first column of quiv jobs)")
    cancel.add_argument(
        "--wait",
        type=_seconds,
        metavar="SECONDS",
        help="then wait up to SECONDS for the job to end and show how it ended (exit 3 if it has not)",
    )
    command(
        "stats",
        "counts by status, the oldest running job, the live processes",
        "Tasks and jobs by status, the oldest running job and the processes registered in the database.",
    )
    return parser


# ------------------------------------------------------------------- running
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (the ``quiv`` console script exits with it)."""
    args = build_parser().parse_args(argv)  # exits 2 with a usage message on a bad command line
    out = sys.stdout
    try:
        return _run(args, out)
    except CommandError as exc:
        print(f"quiv: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (quiv jobs | head): what it read was printed; say nothing more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
        return EXIT_OK
    except Exception:
        # A bug, or an error quiv does not name: show it, but never as exit 1 ("not found").
        traceback.print_exc()
        print("quiv: the command failed with an unexpected error (above)", file=sys.stderr)
        return EXIT_FAILED


def _run(args: argparse.Namespace, out: IO[str]) -> int:
    url = args.database_url if args.database_url is not None else os.environ.get("QUIV_DATABASE_URL")
    if url is None or not url.strip():
        raise CommandError(_NO_URL, EXIT_USAGE)
    from quiv import (
        ConfigurationError,
        DatabaseError,
        JobNotFoundError,
        QuivError,
        TaskNotFoundError,
        TaskNotScheduledError,
    )

    scheduler = _open(url.strip(), args.connect_timeout)
    try:
        command = _COMMANDS[args.command]
        return command(scheduler, args, out)
    except TaskNotScheduledError as exc:  # before TaskNotFoundError: the task exists
        raise CommandError(str(exc), EXIT_REFUSED) from None
    except (TaskNotFoundError, JobNotFoundError) as exc:
        raise CommandError(str(exc), EXIT_NOT_FOUND) from None
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except DatabaseError as exc:
        raise CommandError(str(exc), EXIT_FAILED) from None
    except QuivError as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None
    finally:
        scheduler.shutdown(timeout=0)


def _open(url: str, connect_timeout: float) -> Quiv:
    """A scheduler that is never started: a client of the database (no worker, no claims)."""
    from quiv import ConfigurationError, Quiv, QuivConfig
    from quiv._durable.url import parse_database_url

    try:
        target = parse_database_url(url)
        if target.kind == "sqlite" and target.path is not None and not os.path.isfile(target.path):
            # Opening it would create an empty database: a typo must not look like "no tasks".
            raise ConfigurationError(
                f"there is no database file at {target.path!r}: give the path the application's "
                "database_url names"
            )
        return Quiv(config=QuivConfig(database_url=url, connect_timeout_seconds=connect_timeout))
    except ConfigurationError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None


# ------------------------------------------------------------------ commands
def _tasks(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    from quiv._schedule.options import describe_schedule

    tasks = scheduler.get_all_tasks(include_run_once=True)
    if args.json:
        _print_json(out, [_dump(task) for task in tasks])
        return EXIT_OK
    if not tasks:
        print("no tasks", file=out)
        return EXIT_OK
    rows = [
        (
            task.task_name,
            task.id,
            task.status.value,
            _when(task.next_run_at),
            describe_schedule(dict(task)),
            "-" if task.declared is None else ("yes" if task.declared else "no"),
        )
        for task in tasks
    ]
    _print_table(out, ("NAME", "ID", "STATUS", "NEXT RUN (UTC)", "SCHEDULE", "DECLARED"), rows)
    return EXIT_OK


def _jobs(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    task_id = None if args.task is None else _task_id_for_jobs(scheduler, args.task)
    limit = None if args.limit == 0 else args.limit
    jobs = scheduler.get_all_jobs(args.status, task_id=task_id, limit=limit, newest_first=True)
    if args.json:
        _print_json(out, [_dump(job) for job in jobs])
        return EXIT_OK
    if not jobs:
        print("no jobs", file=out)
        return EXIT_OK
    rows = [
        (
            job.id,
            _when(job.started_at),
            job.task_name,
            job.status.value,
            "-" if job.duration_seconds is None else _duration(job.duration_seconds),
            "-" if job.worker is None else job.worker[:8],
            _one_line(job.error_message),
        )
        for job in jobs
    ]
    _print_table(out, ("ID", "STARTED (UTC)", "TASK", "STATUS", "DURATION", "WORKER", "ERROR"), rows)
    if limit is not None and len(jobs) == limit:
        total = scheduler.count_jobs(args.status, task_id=task_id)
        if total > limit:
            print(f"(the newest {limit} of {total} jobs; --limit 0 shows them all)", file=sys.stderr)
    return EXIT_OK


def _pause(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    task = _resolve(scheduler, args.task)
    scheduler.pause_task(task.id)
    after = _after(scheduler, task)
    return _report(out, args, after, f"paused task {_name(after)}")


def _resume(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    task = _resolve(scheduler, args.task)
    if task.status is not TaskStatus.PAUSED:
        # resume_task would move the next run to now: not what "resume" asks of a task that runs.
        return _report(
            out, args, task, f"task {_name(task)} is not paused ({task.status.value}): left as it is"
        )
    scheduler.resume_task(task.id, args.after)
    after = _after(scheduler, task)
    message = f"resumed task {_name(after)}: next run {_when(after.next_run_at)} UTC"
    return _report(out, args, after, message, runs=True)


def _run_now(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    task = _resolve(scheduler, args.task)
    scheduler.run_task_immediately(task.id)
    after = _after(scheduler, task)
    if after.status is TaskStatus.RUNNING:
        message = f"task {_name(after)} is running: it runs again as soon as that job ends"
    else:
        message = f"task {_name(after)} runs now"
    return _report(out, args, after, message, runs=True)


def _remove(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    task = _resolve(scheduler, args.task)
    scheduler.remove_task(task.id)
    message = f"removed task {_name(task)}"
    if task.status is TaskStatus.RUNNING:
        message += "; its running job was asked to stop"
    if task.declared:
        message += (
            " (a running process declares it: the task comes back, with a new id, when that process restarts)"
        )
    return _report(out, args, task, message)


def _cancel(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    job_id: str = args.job
    if not scheduler.cancel_job(job_id):
        job = scheduler.get_job(job_id)  # JobNotFoundError: exit 1
        raise CommandError(
            f"job {job_id} of task {job.task_name!r} is not running: it ended {job.status.value}",
            EXIT_REFUSED,
        )
    job = scheduler.get_job(job_id)
    message = f"asked job {job.id} of task {job.task_name!r} to stop (worker {job.worker})"
    if args.wait is not None:
        try:
            job = scheduler.wait_for_job(job_id, timeout=args.wait)
        except TimeoutError:
            raise CommandError(
                f"job {job_id} was asked to stop but is still running after {args.wait:g} s "
                "(its handler may not check its _stop_event)",
                EXIT_REFUSED,
            ) from None
        message = f"job {job.id} of task {job.task_name!r} ended {job.status.value}"
    if args.json:
        _print_json(out, _dump(job))
    else:
        print(message, file=out)
    return EXIT_OK


def _stats(scheduler: Quiv, args: argparse.Namespace, out: IO[str]) -> int:
    durable = scheduler._durable
    assert durable is not None  # _run refuses to go on without a database URL
    stats = scheduler.stats()
    oldest = scheduler.get_all_jobs(JobStatus.RUNNING, limit=1)
    now, workers = durable.workers()
    report: dict[str, Any] = {
        "database": durable.target.shown,
        "tasks_by_status": stats.tasks_by_status,
        "jobs_by_status": stats.jobs_by_status,
        "running_jobs": stats.jobs_by_status.get(JobStatus.RUNNING.value, 0),
        "oldest_running_job": _dump(oldest[0]) if oldest else None,
        "workers": [
            {
                "id": worker.id,
                "host": worker.host,
                "pid": worker.pid,
                "started_at": _iso(worker.started_at),
                "heartbeat_at": _iso(worker.heartbeat_at),
                "heartbeat_age_seconds": round(max(0.0, now - worker.heartbeat_at), 3),
                "tasks": list(worker.tasks),
            }
            for worker in workers
        ],
    }
    if args.json:
        _print_json(out, report)
        return EXIT_OK
    print(f"database  {report['database']}", file=out)
    print(f"tasks     {_counts(stats.tasks_by_status, [s.value for s in TaskStatus])}", file=out)
    print(f"jobs      {_counts(stats.jobs_by_status, [s.value for s in JobStatus])}", file=out)
    if oldest:
        job = oldest[0]
        print(
            f"oldest running job  {job.id} of task {job.task_name!r}, started {_when(job.started_at)} UTC "
            f"on worker {job.worker}",
            file=out,
        )
    print(f"processes {len(workers)} live", file=out)
    if workers:
        rows = [
            (
                worker.id,
                worker.host,
                str(worker.pid),
                _when(_utc(worker.started_at)),
                f"{max(0.0, now - worker.heartbeat_at):.1f} s ago",
                ", ".join(worker.tasks) or "-",
            )
            for worker in workers
        ]
        _print_table(out, ("WORKER", "HOST", "PID", "STARTED (UTC)", "HEARTBEAT", "TASKS"), rows)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[Quiv, argparse.Namespace, IO[str]], int]] = {
    "tasks": _tasks,
    "jobs": _jobs,
    "pause": _pause,
    "resume": _resume,
    "run": _run_now,
    "remove": _remove,
    "cancel": _cancel,
    "stats": _stats,
}


# ------------------------------------------------------------------- helpers
def _resolve(scheduler: Quiv, name_or_id: str) -> Task:
    """The task with this id, else the one with this name (names are unique with a database_url)."""
    from quiv import TaskNotFoundError

    try:
        return scheduler.get_task(name_or_id)
    except TaskNotFoundError:
        pass
    for task in scheduler.get_all_tasks(include_run_once=True):
        if task.task_name == name_or_id:
            return task
    raise CommandError(f"no task named {name_or_id!r} (nor with that id)", EXIT_NOT_FOUND)


def _task_id_for_jobs(scheduler: Quiv, name_or_id: str) -> str:
    """The id of the task named so, or with this id; also the id of a removed task whose jobs are kept."""
    try:
        return _resolve(scheduler, name_or_id).id
    except CommandError:
        if scheduler.count_jobs(task_id=name_or_id):
            return name_or_id
        raise


def _after(scheduler: Quiv, task: Task) -> Task:
    """The task as the command left it; ``task`` itself if it is gone already (a run-once task that ran)."""
    from quiv import TaskNotFoundError

    try:
        return scheduler.get_task(task.id)
    except TaskNotFoundError:
        return task


def _report(out: IO[str], args: argparse.Namespace, task: Task, message: str, *, runs: bool = False) -> int:
    """Print the task (``--json``) or ``message``; ``runs``: a run was scheduled, so say if nobody will."""
    if args.json:
        _print_json(out, _dump(task))
    else:
        print(message, file=out)
    if runs and task.declared is False:
        print(
            f"note: no running process declares task {task.task_name!r}: it runs once one that does is up",
            file=sys.stderr,
        )
    return EXIT_OK


def _name(task: Task) -> str:
    return f"{task.task_name!r} ({task.id})"


def _dump(model: SQLModel) -> Any:
    """``model_dump(mode="json")``; arguments JSON cannot hold are shown by their ``repr``."""
    from pydantic_core import PydanticSerializationError

    try:
        return model.model_dump(mode="json")
    except PydanticSerializationError:
        args = getattr(model, "args", ())
        kwargs = getattr(model, "kwargs", {})
        shown = model.model_copy(
            update={"args": tuple(repr(a) for a in args), "kwargs": {k: repr(v) for k, v in kwargs.items()}}
        )
        return shown.model_dump(mode="json")


def _print_json(out: IO[str], value: Any) -> None:
    json.dump(value, out, indent=2)
    out.write("\n")


def _print_table(out: IO[str], header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    for line in (header, *rows):
        out.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        out.write("\n")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def _iso(ts: float) -> str:
    """As the models' JSON writes a time: ISO 8601, UTC, ``Z``."""
    return _utc(ts).isoformat().replace("+00:00", "Z")


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _one_line(text: str | None) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 3] + "..."


def _counts(counts: dict[str, int], order: Sequence[str]) -> str:
    return ", ".join(f"{counts.get(name, 0)} {name}" for name in order)
