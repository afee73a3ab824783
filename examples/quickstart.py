"""A tour of quiv in one script: run it with ``python examples/quickstart.py``.

It schedules a recurring task, a run-once task with progress reports, and a
slow task that gets cancelled, then prints the job history. It needs no
event loop: callbacks run on the worker threads here (inside a FastAPI app
they run on the app's loop instead).
"""

from __future__ import annotations

import threading
import time

from quiv import Event, Job, Quiv, Task
from quiv.types import ProgressHook

scheduler = Quiv(pool_size=4)
finished = threading.Event()


def heartbeat(_job_id: str | None = None) -> None:
    print(f"  heartbeat (job {_job_id and _job_id[:8]})")


def crunch(rows: int, _progress_hook: ProgressHook | None = None) -> None:
    for row in range(1, rows + 1):
        time.sleep(0.05)  # pretend to work
        if _progress_hook is not None:
            _progress_hook(done=row, total=rows)


def slow_export(_stop_event: threading.Event | None = None) -> None:
    for _ in range(200):
        if _stop_event is not None and _stop_event.is_set():
            print("  export noticed the cancellation and stops cleanly")
            return
        time.sleep(0.01)


def on_progress(done: int, total: int) -> None:
    print(f"  crunch progress: {done}/{total} [{'#' * done}{'.' * (total - done)}]")


def on_job_end(event: Event, task: Task, job: Job) -> None:
    print(f"  {event.value}: {task.task_name} in {job.duration_seconds or 0:.3f} s")
    if task.task_name == "crunch":
        finished.set()


def main() -> None:
    for event in (Event.JOB_COMPLETED, Event.JOB_FAILED, Event.JOB_CANCELLED):
        scheduler.add_listener(event, on_job_end)

    scheduler.add_task("heartbeat", heartbeat, interval=0.5)
    scheduler.add_task("crunch", crunch, interval=60, run_once=True, args=(8,), progress_callback=on_progress)
    export_id = scheduler.add_task("export", slow_export, interval=60, run_once=True)

    print("starting the scheduler")
    scheduler.start()
    try:
        # Wait until the export job is running, then cancel it.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            running = [job for job in scheduler.get_all_jobs(status="running") if job.task_id == export_id]
            if running:
                print(f"cancelling export job {running[0].id[:8]}")
                scheduler.cancel_job(running[0].id)
                break
            time.sleep(0.01)
        finished.wait(10)
        print("\njob history:")
        for job in scheduler.get_all_jobs():
            print(f"  {job.task_name:<10} {job.status.value:<10} {job.error_message or ''}")
        print("\ntasks still scheduled:")
        for task in scheduler.get_all_tasks():
            print(f"  {task.task_name:<10} {task.status.value:<8} next run {task.next_run_at:%H:%M:%S}")
    finally:
        scheduler.shutdown()
    print("scheduler stopped, temporary database removed")


if __name__ == "__main__":
    main()
