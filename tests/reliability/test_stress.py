"""Concurrency stress: many threads calling the public API at once while jobs run.

Run under ``python -X dev`` (CI does). A deadlock does not hang CI: every
wait has a deadline, and ``faulthandler`` prints every thread's stack if the
test is still running after ``STACK_DUMP_SECONDS``.
"""

from __future__ import annotations

import faulthandler
import random
import sys
import threading
import time
from collections import Counter

import pytest

from quiv import (
    Event,
    Job,
    JobStatus,
    Quiv,
    Task,
    TaskNotFoundError,
    TaskNotScheduledError,
)
from quiv.testing import ManualClock

from .conftest import RecordedFactory
from .invariants import Recorder, check_invariants, quiv_threads, shutdown_and_check

THREADS = 8
OPERATIONS = 500
TASKS = 200
POOL_SIZE = 4
STACK_DUMP_SECONDS = 90
#: For the closing report.
STATS: Counter[str] = Counter()


class _Worker:
    """One API-calling thread: a seeded random mix of every public call."""

    def __init__(
        self, index: int, scheduler: Quiv, clock: ManualClock, rec: Recorder, pool: list[str]
    ) -> None:
        self.random = random.Random(1000 + index)
        self.index = index
        self.scheduler = scheduler
        self.clock = clock
        self.rec = rec
        self.pool = pool
        self.pool_lock = threading.Lock()
        self.errors: list[str] = []
        self.ops: Counter[str] = Counter()
        self.max_threads = 0
        self.handler = rec.handler()

    def listener(self, event: Event, task: Task, job: Job | None = None) -> None:
        return None

    def task_id(self) -> str:
        with self.pool_lock:
            return self.random.choice(self.pool)

    def job_id(self) -> str | None:
        with self.rec.cond:
            ids = list(self.rec.starts)
        return self.random.choice(ids) if ids else None

    def add(self) -> None:
        n = self.random.randrange(10**9)
        mode = self.random.choice(["ok", "ok", "slow", "fail"])
        task_id = self.scheduler.add_task(
            f"w{self.index}-{n}",
            self.handler,
            interval=self.random.choice([1, 2, 3, 5]),
            delay=self.random.choice([0, 1, 2]),
            run_once=self.random.random() < 0.1,
            fixed_interval=self.random.random() < 0.5,
            kwargs={"key": f"w{self.index}-{n}", "mode": mode},
        )
        with self.pool_lock:
            self.pool.append(task_id)

    def step(self) -> None:
        r = self.random
        op = r.choices(
            [
                "pause",
                "resume",
                "run_now",
                "remove",
                "add",
                "cancel",
                "get_task",
                "get_all_tasks",
                "get_job",
                "get_all_jobs",
                "listener",
                "wait",
                "advance",
            ],
            weights=[8, 8, 10, 3, 3, 6, 6, 2, 6, 2, 4, 2, 3],
        )[0]
        self.ops[op] += 1
        s = self.scheduler
        try:
            if op == "pause":
                self.rec.pause(self.task_id())
            elif op == "resume":
                self.rec.resume(self.task_id(), r.choice([0, 0, 1, 3]))
            elif op == "run_now":
                assert self.rec.run_now(self.task_id()) == 1
            elif op == "remove":
                self.rec.remove(self.task_id())
            elif op == "add":
                self.add()
            elif op == "cancel":
                job_id = self.job_id()
                if job_id is not None:
                    s.cancel_job(job_id)
            elif op == "get_task":
                task = s.get_task(self.task_id())
                assert task.status.value in ("active", "running", "paused")
            elif op == "get_all_tasks":
                s.get_all_tasks(include_run_once=r.random() < 0.5)
            elif op == "get_job":
                job_id = self.job_id()
                if job_id is not None:
                    assert s.get_job(job_id).id == job_id
            elif op == "get_all_jobs":
                s.get_all_jobs(status=r.choice([JobStatus.RUNNING, "failed", JobStatus.CANCELLED]))
            elif op == "listener":
                event = r.choice(list(Event))
                if r.random() < 0.5:
                    s.add_listener(event, self.listener)
                else:
                    s.remove_listener(event, self.listener)
            elif op == "wait":
                job_id = self.job_id()
                if job_id is not None:
                    try:
                        s.wait_for_job(job_id, timeout=0.01)
                    except TimeoutError:
                        self.ops["wait-timeout"] += 1
            elif op == "advance":
                self.clock.advance(r.choice([0, 1, 1, 2]))
        except (TaskNotFoundError, TaskNotScheduledError) as exc:
            self.ops[type(exc).__name__] += 1
        except BaseException as exc:  # anything else is a failure of the engine
            self.errors.append(f"{op}: {type(exc).__name__}: {exc}")
        self.max_threads = max(self.max_threads, len(quiv_threads()))

    def run(self, start: threading.Barrier) -> None:
        start.wait()
        for _ in range(OPERATIONS):
            self.step()


@pytest.mark.slow
def test_many_threads_calling_the_api_while_jobs_run(recorded: RecordedFactory) -> None:
    faulthandler.dump_traceback_later(STACK_DUMP_SECONDS, exit=False, file=sys.stderr)
    try:
        _stress(recorded)
    finally:
        faulthandler.cancel_dump_traceback_later()


def _stress(recorded: RecordedFactory) -> None:
    scheduler, clock, rec = recorded(pool_size=POOL_SIZE)
    pool: list[str] = []
    workers = [_Worker(i, scheduler, clock, rec, pool) for i in range(THREADS)]
    for n in range(TASKS):
        workers[n % THREADS].add()
    for worker in workers[1:]:
        worker.pool_lock = workers[0].pool_lock
    start = threading.Barrier(THREADS)
    threads = [
        threading.Thread(target=w.run, args=(start,), name=f"stress-{w.index}", daemon=True) for w in workers
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STACK_DUMP_SECONDS)
        assert not thread.is_alive(), f"{thread.name} is stuck (deadlock?)"
    elapsed = time.monotonic() - began
    errors = [e for w in workers for e in w.errors]
    assert not errors, errors[:20]
    ops: Counter[str] = sum((w.ops for w in workers), Counter())
    assert sum(ops[k] for k in ops if not k[0].isupper() and k != "wait-timeout") == THREADS * OPERATIONS
    max_threads = max(w.max_threads for w in workers)
    # Workers never outnumber the pool; besides them only the writer (and a short-lived temp loop).
    assert max_threads <= POOL_SIZE + 2, f"{max_threads} quiv threads at once"
    stored = check_invariants(rec, timeout=30)
    assert all(job.status.is_terminal for job in stored.values())
    STATS.update(ops)
    STATS["jobs"] = len(stored)
    STATS["max_quiv_threads"] = max_threads
    print(
        f"\nstress: {THREADS}x{OPERATIONS} operations on {TASKS}+ tasks (pool_size {POOL_SIZE}) in "
        f"{elapsed:.1f} s; {len(stored)} jobs; at most {max_threads} quiv threads; {dict(ops)}"
    )
    shutdown_and_check(rec, timeout=10)


def test_history_and_threads_stay_bounded_over_a_long_run(recorded: RecordedFactory) -> None:
    """Retention purges finished jobs as the clock moves on; threads never grow past the pool."""
    retention = 5
    scheduler, clock, rec = recorded(pool_size=2, history_retention_seconds=retention)
    for key in ("a", "b", "c"):
        scheduler.add_task(key, rec.handler(), interval=1, kwargs={"key": key})
    clock.advance(0)
    rec.wait_terminal(3)
    sizes = []
    most_threads = 0
    for n in range(1, 151):
        clock.advance(1)
        rec.wait_terminal(3 * (n + 1))
        most_threads = max(most_threads, len(quiv_threads()))
        if n % 10 == 0:
            sizes.append(len(scheduler.get_all_jobs()))
    # 450 jobs ran. The writer purges on its own thread, possibly a few clock steps behind these fast
    # reads, but the history never grows with the run, and it settles to the retention window.
    assert max(sizes) <= 3 * (retention + 15), sizes
    for task in scheduler.get_all_tasks():
        rec.pause(task.id)
    clock.advance(retention + 2)  # every job ended more than the retention ago: all must go
    deadline = time.monotonic() + 10
    while (kept := scheduler.get_all_jobs()) and time.monotonic() < deadline:
        with rec.cond:
            rec.cond.wait(0.01)
    assert not kept, f"{len(kept)} jobs kept {retention + 2} s after they ended ({retention} s retention)"
    assert most_threads <= 2 + 1, most_threads
    check_invariants(rec, allow_purged=True)
    shutdown_and_check(rec)
