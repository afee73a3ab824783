"""Write-behind persistence: live state changes are batched to the store by one thread.

The scheduler marks records dirty while it holds its lock (a dict
assignment); the writer thread snapshots the dirty set under that lock and
writes it in one transaction outside it. Readers call :meth:`flush` first,
so a read always sees every change made before it. Retention purges run on
the same thread, at the moment the oldest finished job expires (batched to
at most one purge per second), so an idle scheduler never wakes up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quiv._core.clock import Clock
from quiv._exceptions import DatabaseError
from quiv._store.base import Store, TaskRow

if TYPE_CHECKING:
    from quiv._core.task import JobState, TaskState

__all__ = ["Writer"]

#: Purges are batched: at most one per this many seconds.
PURGE_MIN_GAP = 1.0
#: While changes keep coming, the writer collects them for this long per transaction
#: instead of being woken by each one.
BATCH_SECONDS = 0.02
#: After a failed write the writer waits this long before trying again, doubling up to the maximum.
RETRY_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


class Writer:
    """Batches task and job changes to the store on one thread; see the module docstring."""

    def __init__(
        self,
        store_factory: Callable[[], Store],
        lock: threading.Lock | threading.RLock,
        clock: Clock,
        retention: float,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self._store_factory = store_factory
        self.store: Store | None = None
        self._state_lock = lock
        self._clock = clock
        self._retention = retention
        self._logger = logger
        self._db_lock = threading.Lock()
        self._dirty_tasks: dict[str, TaskState] = {}
        self._deleted_tasks: set[str] = set()
        self._dirty_jobs: dict[str, JobState] = {}
        self._wake = threading.Event()
        self._writer_idle = True
        self._clock_moved = False
        self._retry_delay = RETRY_SECONDS
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._purge_at: float | None = None
        self._last_purge = float("-inf")
        self._failed = False

    def open(self) -> Store:
        """The store, created on first use (the caller holds the scheduler lock)."""
        if self.store is None:
            self.store = self._store_factory()
        return self.store

    # --- marking (caller holds the scheduler lock) -------------------------
    def task_changed(self, task: TaskState) -> None:
        if self._writer_idle:
            self._writer_idle = False
            self._wake.set()
        self._dirty_tasks[task.id] = task

    def task_deleted(self, task_id: str) -> None:
        if self._writer_idle:
            self._writer_idle = False
            self._wake.set()
        self._dirty_tasks.pop(task_id, None)
        self._deleted_tasks.add(task_id)

    def job_changed(self, job: JobState) -> None:
        if self._writer_idle:
            self._writer_idle = False
            self._wake.set()
        self._dirty_jobs[job.id] = job

    # --- writing ------------------------------------------------------------
    def flush(self) -> None:
        """Write every change marked so far; raise ``DatabaseError`` if the store fails."""
        with self._db_lock:
            self._write_locked(raise_errors=True)

    def _write_locked(self, raise_errors: bool) -> None:
        with self._state_lock:
            if not (self._dirty_tasks or self._dirty_jobs or self._deleted_tasks):
                return
            task_states = list(self._dirty_tasks.values())
            job_states = list(self._dirty_jobs.values())
            tasks: list[TaskRow] = [t.row() for t in task_states]
            jobs: list[tuple[Any, ...]] = [j.row() for j in job_states]
            deleted = self._deleted_tasks
            self._dirty_tasks, self._dirty_jobs, self._deleted_tasks = {}, {}, set()
        try:
            assert self.store is not None, "changes were marked before the store was opened"
            self.store.write(tasks, deleted, jobs)
        except DatabaseError as exc:
            self._requeue(task_states, deleted, job_states)
            self._retry_delay = (
                min(RETRY_MAX_SECONDS, self._retry_delay * 2) if self._failed else RETRY_SECONDS
            )
            if not self._failed:
                self._failed = True
                self._logger.error(
                    "quiv could not write to its database (%s); changes are kept in memory", exc
                )
            if raise_errors:
                raise
            return
        self._failed = False
        ended = [row[5] for row in jobs if row[5] is not None]
        if ended:
            self._plan_purge(min(ended) + self._retention)

    def _requeue(self, tasks: list[TaskState], deleted: set[str], jobs: list[JobState]) -> None:
        """Put back what a failed write did not store, unless newer changes replaced it."""
        with self._state_lock:
            for task in tasks:
                if task.id not in self._deleted_tasks:
                    self._dirty_tasks.setdefault(task.id, task)
            self._deleted_tasks |= deleted - set(self._dirty_tasks)
            for job in jobs:
                self._dirty_jobs.setdefault(job.id, job)

    def _plan_purge(self, when: float) -> None:
        when = max(when, self._last_purge + PURGE_MIN_GAP)
        if self._purge_at is None or when < self._purge_at:
            self._purge_at = when
            self._wake.set()

    def _purge_locked(self, now: float) -> None:
        self._last_purge = now
        self._purge_at = None
        if self.store is None:
            return
        try:
            oldest = self.store.purge_jobs(now - self._retention)
        except DatabaseError as exc:
            self._logger.error("quiv could not purge old jobs: %s", exc)
            return
        if oldest is not None:
            self._plan_purge(oldest + self._retention)

    # --- the writer thread ----------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._clock.subscribe(self._on_clock_jump)
            self._thread = threading.Thread(target=self._run, name="quiv-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        wake = self._wake
        while True:
            with self._db_lock:
                self._write_locked(raise_errors=False)
                purge_at = self._purge_at
                if purge_at is not None:
                    now = self._clock.now().timestamp()
                    if now >= purge_at:
                        self._purge_locked(now)
                        purge_at = self._purge_at
            with self._state_lock:
                busy = bool(self._dirty_tasks or self._dirty_jobs or self._deleted_tasks)
                if self._stop_requested():
                    return
                if self._clock_moved:
                    # The clock jumped while we worked: look at the purge time again first.
                    self._clock_moved = False
                    continue
                if not busy:
                    # Nothing pending: sleep until a change (or a purge) wakes us.
                    self._writer_idle = True
                    wake.clear()
                elif self._failed:
                    # The database refuses writes: retry later, not once per change.
                    wake.clear()
            timeout = None if purge_at is None else self._clock.wait_seconds(purge_at)
            if busy:
                # Changes are still arriving: gather them for a short while, unprompted;
                # after a failed write, back off (0.5 s, doubling up to 30 s).
                pause = self._retry_delay if self._failed else BATCH_SECONDS
                timeout = pause if timeout is None else min(timeout, pause)
            wake.wait(timeout)
            if self._stop_requested():
                return

    def _on_clock_jump(self) -> None:
        # Under the state lock, like the writer's decision to sleep: a jump is never lost.
        with self._state_lock:
            self._clock_moved = True
            self._wake.set()

    def _stop_requested(self) -> bool:
        # A method, not an attribute read, so type checkers do not assume it cannot change.
        return self._stopping

    def close(self, timeout: float = 5.0) -> None:
        """Stop the writer and close the store (which deletes the database)."""
        with self._state_lock:
            # Under the lock the writer takes before it clears the wake-up: no lost stop.
            self._stopping = True
            self._wake.set()
        self._clock.unsubscribe(self._on_clock_jump)
        if self._thread is not None:
            self._thread.join(timeout)
        with self._db_lock:
            if self.store is not None:
                self.store.close()
