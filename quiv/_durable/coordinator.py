"""The durable and shared modes' scheduler: claim due runs from the database and run them here.

A :class:`Coordinator` replaces the in-memory heap of the default mode. Its
threads:

* the **claimer** runs one claim transaction (see :mod:`quiv._durable.store`)
  whenever it is woken (a job ended here, a NOTIFY, a local change), when the
  next due row it could claim comes due (the database says how far that is,
  so a skewed local clock does not matter), and at least every
  ``poll_seconds``;
* **workers** (``pool_size`` threads) run claimed jobs with the same
  :class:`~quiv._core.runner.JobRunner` as the default mode, then hand the
  finished job to the end writer and take the next one;
* the **end writer** records the ends (fenced), all those waiting in one
  transaction, then emits each job's events and releases its waiters, in the
  process that ran it;
* the **heartbeat** updates this process's row every ``heartbeat_seconds`` on
  its own connection, ends the runs of processes silent for
  ``dead_after_seconds`` as ``abandoned``, reads cancel requests (the floor
  under NOTIFY) and purges old jobs;
* the **listener** (PostgreSQL with ``notify=True``) waits on ``LISTEN`` and
  wakes the claimer, or sets a job's stop event, when another process asks.

A database outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from quiv._core.clock import Clock
from quiv._core.runner import JobRunner
from quiv._core.task import JobState, Plan, TaskState, TaskView, job_model
from quiv._core.waiters import WaiterRegistry, release_all
from quiv._core.watchdog import Watchdog
from quiv._delivery.events import Listeners
from quiv._durable.relay import CHANNEL, Relay, Sink
from quiv._durable.store import ENDED, WANTED, DurableStore, Ended, PresumedDead, _Local, definition_hash
from quiv._enums import Event, JobStatus
from quiv._exceptions import ConfigurationError, DatabaseError, SchedulerStoppedError
from quiv._store.base import JobRow

__all__ = ["Coordinator"]

_END_EVENTS = {
    JobStatus.COMPLETED: Event.JOB_COMPLETED,
    JobStatus.FAILED: Event.JOB_FAILED,
    JobStatus.CANCELLED: Event.JOB_CANCELLED,
}
#: After a failed transaction, wait this long before the next try (doubling up to the maximum).
RETRY_SECONDS = 0.25
RETRY_MAX_SECONDS = 5.0
#: At most this many job ends are written in one transaction.
END_BATCH = 256
#: Old jobs are purged at most this often.
PURGE_EVERY_SECONDS = 60.0

NEW, RUNNING, STOPPING, STOPPED = "new", "running", "stopping", "stopped"


class Coordinator:
    """Runs the tasks declared in this process from a durable store; see the module docstring."""

    def __init__(
        self,
        store: DurableStore,
        *,
        pool_size: int,
        clock: Clock,
        listeners: Listeners,
        runner: JobRunner,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        heartbeat: float,
        dead_after: float,
        poll: float,
        notify: bool,
        retention: float,
    ) -> None:
        self.store = store
        self.pool_size = pool_size
        self.clock = clock
        self.listeners = listeners
        self.runner = runner
        self.logger = logger
        self.heartbeat_seconds = heartbeat
        self.dead_after = dead_after
        self.poll = poll
        self.notify = notify and store.postgres
        self.retention = retention
        #: A fresh id per process start: never a host or pod name, which a restart would reuse.
        self.worker_id = str(uuid.uuid4())
        self.local: dict[str, _Local] = {}
        self.lock = threading.Lock()
        self.live: dict[str, JobState] = {}
        #: Jobs whose handler runs (each holds a worker thread) and jobs whose end is not written yet.
        self.busy = 0
        self.unwritten = 0
        self.phase = NEW
        self.waiters = WaiterRegistry()
        self.last_wake: float | None = None
        self.last_job_start: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._beat_now = threading.Event()
        self._drained = threading.Condition(self.lock)
        self._queue: queue.SimpleQueue[JobState | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._watchdog: Watchdog[JobState] = Watchdog(clock, self._expire)
        self._outage_since: float | None = None
        #: A transaction failed without an answer: a claim or job end may have been committed
        #: all the same, so the claimer looks for runs of this worker that nobody here runs.
        self._unsure = False
        self._outage_lock = threading.Lock()
        self._reincarnating = threading.Lock()
        self.relay = Relay(store, lambda: self.worker_id, listeners, logger) if self.notify else None
        #: Finished jobs, for the end writer: those waiting share one transaction.
        self._ended: queue.SimpleQueue[JobState | None] = queue.SimpleQueue()
        #: Waiters for jobs that run elsewhere, by task or job id: set when NOTIFY says one ended.
        self._watchers: dict[str, set[threading.Event]] = {}

    # ------------------------------------------------------------ set-up
    def declare(self, state: TaskState) -> tuple[TaskView, str]:
        """Match a task of this process to the stored one of its name: ``(view, outcome)``."""
        with self.lock:
            if self.phase in (STOPPING, STOPPED):
                raise SchedulerStoppedError("the scheduler has been shut down; create a new Quiv")
            known = self.local.get(state.name)
        if known is not None:
            if not self.store.missing_tasks([known.state.id]):
                raise ConfigurationError(
                    f"a task named {state.name!r} already exists in this scheduler: with a database_url, "
                    "the name is the task's identity across restarts and processes, so names must be unique"
                )
            self.forget(state.name)  # its row is gone (removed elsewhere, or a run-once task that ran)
        local = _Local(state, definition_hash(state.settings))
        stored, outcome = self.store.adopt(local)
        state.id, state.created = stored.id, stored.created
        with self.lock:
            if state.name in self.local:  # two threads declared one name at once
                raise ConfigurationError(f"a task named {state.name!r} already exists in this scheduler")
            self.local[state.name] = local
            running = self.phase == RUNNING
        if running:
            self.store.set_worker_tasks(self.worker_id, list(self.local))
            self._wake.set()
        return stored.view(), outcome

    def start(self) -> None:
        if not self.store.postgres:
            # One process per file (the file lock says so): every other worker row is a dead run's.
            abandoned, _dead, missed = self.store.sweep(-1e18)
            self._emit_abandoned(abandoned)
            for view, row in missed:
                self._emit_missed(view, row)
        wants = self.relay is not None and bool(self.relay.sinks)
        self.store.register_worker(self.worker_id, list(self.local), wants_events=wants)
        if self.relay is not None:
            self.relay.send(self.store.events_wanted())
        with self.lock:
            self.phase = RUNNING
        # A clock that jumps (quiv.testing.ManualClock) wakes the claimer: due times may have passed.
        self.clock.subscribe(self._wake.set)
        self._spawn("quiv-claimer", self._claim_loop)
        self._spawn("quiv-heartbeat", self._beat_loop)
        if self.notify:
            self._spawn("quiv-listener", self._listen_loop)
        for number in range(self.pool_size):
            self._spawn(f"quiv-worker-{number}", self._work)
        self._spawn("quiv-end-writer", self._write_loop)
        self.logger.info(
            "quiv runs as worker %s on %s (%d task(s) declared here)",
            self.worker_id,
            self.store.target.shown,
            len(self.local),
        )

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    # ------------------------------------------------------------- outage
    def _failed(self, exc: DatabaseError) -> None:
        with self._outage_lock:
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
        self.logger.error("%s; quiv keeps retrying and logs again when it is back", exc)

    def _succeeded(self) -> None:
        if self._outage_since is None:
            return
        with self._outage_lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            self.logger.warning("quiv reached its database again after %.1f s", time.monotonic() - since)

    # ------------------------------------------------------------ claimer
    def _claim_loop(self) -> None:
        backoff = RETRY_SECONDS
        while not self._stop.is_set():
            self._wake.clear()
            with self.lock:
                free = self.pool_size - self.busy
            if free <= 0 and self.local:
                # Nothing could be claimed: a worker that frees up wakes us.
                self.last_wake = self.clock.now().timestamp()
                self._wake.wait(self.poll)
                continue
            try:
                if self._unsure:
                    self._settle()
                # The wait a claim returns counts from the clock read at its start: so does the sleep.
                # Counted from its end instead, a process whose claims take longer (the one that lost
                # the last race for a slot) would wake later than the others for every slot after.
                began = time.monotonic()
                claim = self.store.claim(self.worker_id, dict(self.local), free)
            except DatabaseError as exc:
                self._unsure = True
                self._failed(exc)
                self._wake.wait(backoff)
                backoff = min(RETRY_MAX_SECONDS, backoff * 2)
                continue
            except PresumedDead:
                try:
                    self._reincarnate()
                except DatabaseError as exc:
                    self._failed(exc)
                    self._wake.wait(backoff)
                continue
            except Exception:  # a bug in quiv: log it and keep claiming
                self.logger.exception("quiv's claim loop failed; it carries on")
                self._wake.wait(self.poll)
                continue
            backoff = RETRY_SECONDS
            self._succeeded()
            self.last_wake = self.clock.now().timestamp()
            for job in claim.started:
                self._submit(job)
            for view, row in claim.missed:
                self._emit_missed(view, row)
            if len(claim.started) >= free:
                timeout = self.poll  # the pool is full: a job's end wakes us
            elif claim.wait is None:
                timeout = self.poll
            else:
                timeout = min(claim.wait - (time.monotonic() - began), self.poll)
            if timeout > 0:
                self._wake.wait(timeout)

    def _settle(self) -> None:
        """End the jobs the database says run here but this process does not (claimer thread only).

        Only the claimer adds live jobs, right after its claim returns, so any
        other running job of this worker was claimed without our knowing, or
        its end could not be written.
        """
        self._unsure = False  # before the snapshot: a job given up on meanwhile sets it again
        with self.lock:
            live = set(self.live)
        abandoned, missed = self.store.abandon_unowned(self.worker_id, live)
        self._emit_abandoned(abandoned)
        for view, row in missed:
            self._emit_missed(view, row)

    def wake(self) -> None:
        self._wake.set()

    def _submit(self, job: JobState) -> None:
        timeout = job.task.settings.timeout
        with self.lock:
            self.live[job.id] = job
            self.busy += 1
            self.last_job_start = job.started
            # Claimed by the last claim of a shutdown: it ends at once as cancelled (never left running).
            stopping = self.phase != RUNNING and job.request_stop("cancelled: the scheduler shut down")
            if timeout is not None and not stopping:
                job.watch = self._watchdog.watch(self.clock.now().timestamp() + timeout, job)
        if stopping:
            job.stop.set()
        self._queue.put(job)

    # ------------------------------------------------------------ workers
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                started = self.listeners.of(Event.JOB_STARTED)
                if started:
                    self.listeners.emit_job(Event.JOB_STARTED, job.task.view(), job.row(), listeners=started)
                status, error = self.runner.run(job)
            except Exception:
                self.logger.exception("quiv failed running job %s of task %r", job.id, job.task_name)
                status, error = JobStatus.FAILED, "quiv internal error; see the log"
            if job.watch is not None:
                self._watchdog.cancel(job.watch)
                job.watch = None
            # The handler is done: this thread may take the next job while the end is written.
            with self.lock:
                job.status, job.error = status, error  # under the lock: cancel_local reads it
                self.busy -= 1
                self.unwritten += 1
            self._wake.set()
            self._ended.put(job)

    # ------------------------------------------------------------- ends
    def _write_loop(self) -> None:
        """Write the ends of finished jobs, all those waiting in one transaction (the end writer)."""
        while True:
            job = self._ended.get()
            if job is None:
                return
            batch, last = [job], False
            while len(batch) < END_BATCH:
                try:
                    following = self._ended.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    last = True
                    break
                batch.append(following)
            self._record_ends(batch)
            if last:
                return

    def _record_ends(self, batch: list[JobState]) -> None:
        try:
            outcomes = self._write_ends(batch)
        except Exception:
            self.logger.exception("quiv failed to record the end of %d job(s)", len(batch))
            outcomes = None
        results: list[Ended | None] = list(outcomes) if outcomes is not None else [None] * len(batch)
        for job, ended in zip(batch, results, strict=True):
            try:
                self._ended_job(job, ended)
            except Exception:
                self.logger.exception("quiv failed to finish job %s", job.id)

    def _write_ends(self, batch: list[JobState]) -> list[Ended] | None:
        """Write the ends, retrying through an outage; None once given up (the jobs will be abandoned)."""
        entries = [(job, self.local.get(job.task_name)) for job in batch]
        deadline = time.monotonic() + self.dead_after
        backoff = RETRY_SECONDS
        while True:
            try:
                outcomes = self.store.finish_many(entries)
            except DatabaseError as exc:
                if self.phase == STOPPED or time.monotonic() > deadline:
                    for job in batch:
                        self.logger.error(
                            "job %s of task %r: its end could not be recorded (%s); the job will be "
                            "marked abandoned",
                            job.id,
                            job.task_name,
                            exc,
                        )
                    return None
                self._failed(exc)
                self._stop.wait(backoff)
                backoff = min(RETRY_MAX_SECONDS, backoff * 2)
            else:
                self._succeeded()
                return outcomes

    def _ended_job(self, job: JobState, ended: Ended | None) -> None:
        """After a job's end was written (or given up on): waiters, events, and the claimer's wake-up."""
        with self.lock:
            self.live.pop(job.id, None)
            self.unwritten -= 1
            waiters = self.waiters.take_job_end(job.id, job.task.id)
            if self.phase == STOPPING:
                self._drained.notify_all()
        if ended is None:
            self._unsure = True  # not live any more: the claimer ends it as abandoned when it can
        self._wake.set()
        row = job.row()
        if ended is not None and ended.accepted:
            event = _END_EVENTS[job.status]
            listeners = self.listeners.of(event)
            if listeners:
                self.listeners.emit_job(event, ended.view or job.task.view(), row, listeners=listeners)
            for view, missed in ended.missed:
                self._emit_missed(view, missed)
            release_all(waiters, job_model(row), None, self.logger)
            return
        if ended is not None:
            self.logger.warning(
                "job %s of task %r ended %s, but this process had been presumed dead meanwhile and the "
                "job was marked abandoned: its result is dropped",
                job.id,
                job.task_name,
                job.status.value,
            )
        stored = None
        with contextlib.suppress(DatabaseError):
            stored = self.store.get_job(job.id)
        release_all(waiters, job_model(stored if stored is not None else row), None, self.logger)

    def _expire(self, job: JobState) -> None:
        with self.lock:
            if job.id not in self.live or not job.request_stop(
                f"timed out after {job.task.settings.timeout:g} s"
            ):
                return
        job.stop.set()
        self.logger.warning("job %s of task %r timed out; its stop event is set", job.id, job.task_name)

    def cancel_local(self, job_id: str, reason: str) -> bool | None:
        """Set the stop event of a job running here.

        True if the stop is newly asked; False if there is nothing to stop (its
        handler returned, or a stop was asked already); None if it does not run here.
        """
        with self.lock:
            job = self.live.get(job_id)
            if job is None:
                return None
            stopping = job.status is JobStatus.RUNNING and job.request_stop(reason)
        if stopping:
            job.stop.set()
        return stopping

    def cancel(self, job_id: str) -> bool:
        """Cancel a running job, here or in any other process; False if there is nothing (more) to stop."""
        here = self.cancel_local(job_id, "cancelled by cancel_job()")
        return self.store.request_cancel(job_id) if here is None else here

    # ---------------------------------------------------------- heartbeat
    def _beat_loop(self) -> None:
        next_purge = 0.0
        while True:
            self._beat_now.wait(self.heartbeat_seconds)  # or sooner, when the listener connects
            self._beat_now.clear()
            if self._stop.is_set():
                return
            try:
                if not self.store.heartbeat(self.worker_id):
                    self._reincarnate()
                # A SQLite file serves one process (its lock says so): it was swept at start, and a
                # sweep now could only find this process itself, "silent" if the clock jumped forward.
                abandoned, dead, missed = (
                    self.store.sweep(self.dead_after) if self.store.postgres else ([], [], [])
                )
                if dead:
                    self.logger.warning(
                        "quiv presumed %d silent process(es) dead: %s", len(dead), ", ".join(dead)
                    )
                self._emit_abandoned(abandoned)
                for view, row in missed:
                    self._emit_missed(view, row)
                if self.relay is not None:
                    self.relay.send(self.store.events_wanted())
                self._forget_missing()
                with self.lock:
                    mine = bool(self.live)
                if mine:
                    for job_id in self.store.cancel_requests(self.worker_id):
                        self.cancel_local(job_id, "cancelled by cancel_job() in another process")
                now = time.monotonic()
                if now >= next_purge:
                    next_purge = now + PURGE_EVERY_SECONDS
                    self.store.purge_older_than(self.retention)
                self._succeeded()
            except DatabaseError as exc:
                self._failed(exc)
            except Exception:
                self.logger.exception("quiv's heartbeat failed; it carries on")

    def _forget_missing(self) -> None:
        """Drop the tasks whose rows are gone, so their names may be declared again."""
        with self.lock:
            ids = {entry.state.id: name for name, entry in self.local.items()}
        gone = self.store.missing_tasks(list(ids))
        if gone:
            with self.lock:
                for task_id in gone:
                    entry = self.local.get(ids[task_id])
                    if entry is not None and entry.state.id == task_id:
                        del self.local[ids[task_id]]
                names = list(self.local)
            self.store.set_worker_tasks(self.worker_id, names)

    def forget(self, name: str) -> None:
        """The task of this name was removed: it may be added again here."""
        with self.lock:
            self.local.pop(name, None)

    def _reincarnate(self) -> None:
        with self._reincarnating:
            self._reincarnate_once()

    def _reincarnate_once(self) -> None:
        old = self.worker_id
        if not self.store.worker_gone(old):
            return  # the other thread did it already
        self.worker_id = str(uuid.uuid4())
        self.logger.warning(
            "this process (worker %s) was presumed dead by the others (no heartbeat for %g s): the jobs "
            "it was running were marked abandoned and their results will be dropped; it carries on as "
            "worker %s",
            old,
            self.dead_after,
            self.worker_id,
        )
        wants = self.relay is not None and bool(self.relay.sinks)
        self.store.register_worker(self.worker_id, list(self.local), wants_events=wants)

    def subscribe(self, sink: Sink) -> None:
        """Hand the live events of the other processes to ``sink`` (PostgreSQL with NOTIFY only)."""
        relay = self.relay
        if relay is not None and relay.subscribe(sink) and self.phase == RUNNING:
            self.store.set_wants_events(self.worker_id, True)

    def unsubscribe(self, sink: Sink) -> None:
        relay = self.relay
        if relay is not None and relay.unsubscribe(sink) and self.phase == RUNNING:
            with contextlib.suppress(DatabaseError):
                self.store.set_wants_events(self.worker_id, False)

    # ------------------------------------------------------ remote waits
    def watch(self, key: str, event: threading.Event) -> None:
        """Set ``event`` whenever NOTIFY says a job of task ``key`` (or job ``key``) ended elsewhere."""
        with self.lock:
            self._watchers.setdefault(key, set()).add(event)

    def unwatch(self, key: str, event: threading.Event) -> None:
        with self.lock:
            events = self._watchers.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._watchers[key]

    def _ended_elsewhere(self, payload: str | None) -> None:
        """Wake the waiters named in a :data:`~quiv._durable.store.ENDED` payload (None: all of them)."""
        with self.lock:
            if payload is None:
                woken = {event for events in self._watchers.values() for event in events}
            else:
                keys = {key for entry in payload.split(",") for key in entry.split(":")}
                woken = {event for key in keys for event in self._watchers.get(key, ())}
        for event in woken:
            event.set()

    # ---------------------------------------------------------- listener
    def _listen_loop(self) -> None:
        import psycopg
        from sqlalchemy.engine import make_url

        conninfo = make_url(self.store.target.url).set(drivername="postgresql").render_as_string(False)
        backoff = RETRY_SECONDS
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute("LISTEN quiv_wake")
                    conn.execute("LISTEN quiv_cancel")
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {WANTED}")
                    conn.execute(f"LISTEN {ENDED}")  # the last: tests wait for it to know we listen
                    backoff = RETRY_SECONDS
                    # What changed while we were not listening: due runs, ends, a stream's first client.
                    self._wake.set()
                    self._ended_elsewhere(None)
                    # The heartbeat reads whether some stream wants events: not this thread, which
                    # shutdown does not wait for, so it must not hold a pooled connection then.
                    self._beat_now.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.channel == CHANNEL:
                                if self.relay is not None:
                                    self.relay.receive(note.payload)
                            elif note.channel == ENDED:
                                self._ended_elsewhere(note.payload)
                            elif note.channel == WANTED:
                                if self.relay is not None:
                                    self.relay.send(True)  # the heartbeat stops it when nobody wants them
                            elif note.channel == "quiv_cancel":
                                self.cancel_local(
                                    note.payload, "cancelled by cancel_job() in another process"
                                )
                            else:
                                self._wake.set()
            except Exception as exc:
                if self._stop.is_set():
                    return
                where = self.store.target.where
                self._failed(DatabaseError(f"quiv lost its LISTEN connection to {where}: {exc}"))
                self._stop.wait(backoff)
                backoff = min(RETRY_MAX_SECONDS, backoff * 2)

    # -------------------------------------------------------------- events
    def _emit_missed(self, view: TaskView, row: JobRow) -> None:
        instruments = self.runner.instruments
        if instruments is not None:
            instruments.skipped(row.task_name, JobStatus.MISSED)
        listeners = self.listeners.of(Event.JOB_MISSED)
        if listeners:
            self.listeners.emit_job(Event.JOB_MISSED, view, tuple(row), listeners=listeners)

    def _emit_abandoned(self, abandoned: list[tuple[TaskView, JobRow]]) -> None:
        instruments = self.runner.instruments
        for view, row in abandoned:
            self.logger.error("job %s of task %r %s", row.id, row.task_name, row.error_message)
            if instruments is not None:
                instruments.skipped(row.task_name, JobStatus.ABANDONED)
            listeners = self.listeners.of(Event.JOB_FAILED)
            if listeners:
                self.listeners.emit_job(Event.JOB_FAILED, view, tuple(row), listeners=listeners)

    # ------------------------------------------------------------ control
    def transition(self, task_id: str, what: str, step: Callable[[TaskState, float], Plan]) -> TaskView:
        view = self.store.transition(task_id, what, step, self.local)
        self._wake.set()
        return view

    # ------------------------------------------------------------ shutdown
    def stop(self, timeout: float) -> int:
        """Stop claiming, cancel the jobs running here, wait up to ``timeout`` s.

        Returns how many jobs are still running (their handlers ignored the stop event).
        """
        with self.lock:
            was = self.phase
            self.phase = STOPPING
            jobs = [j for j in self.live.values() if j.request_stop("cancelled: the scheduler shut down")]
        self._stop.set()
        self._beat_now.set()
        self._wake.set()
        self.clock.unsubscribe(self._wake.set)
        for job in jobs:
            job.stop.set()
        deadline = time.monotonic() + timeout
        # A claim in flight may still start jobs: let it finish (they end cancelled) before draining.
        for thread in self._threads:
            if thread.name == "quiv-claimer" and thread.ident != threading.get_ident():
                thread.join(max(0.0, deadline - time.monotonic()))
        from quiv._core.context import current_job

        running = current_job.get()
        inside = 1 if running is not None and running.job_id in self.live else 0
        with self.lock:
            while (self.busy > inside or self.unwritten) and (remaining := deadline - time.monotonic()) > 0:
                self._drained.wait(remaining)
            stuck = self.busy - inside
            self.phase = STOPPED
            waiters = self.waiters.take_all()
        for _ in range(self.pool_size):
            self._queue.put(None)
        self._ended.put(None)
        self._watchdog.close()
        if self.relay is not None:
            self.relay.close()
        release_all(
            waiters, None, SchedulerStoppedError("the scheduler shut down before the job ended"), self.logger
        )
        own = threading.get_ident()
        for thread in self._threads:
            # The listener notices the stop within a second by itself (its LISTEN wait times out):
            # not waited for, so shutdown does not cost that second.
            if thread.ident != own and thread.name != "quiv-listener":
                thread.join(max(0.0, min(1.0, deadline - time.monotonic())))
        if was == RUNNING and not stuck:
            try:
                self.store.unregister_worker(self.worker_id)
            except DatabaseError as exc:
                self.logger.warning("quiv could not unregister this process: %s", exc)
        self.store.close()
        return stuck
