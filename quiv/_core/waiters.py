"""One registry for callers blocked in ``wait_for_job`` / ``wait_for_task``.

A waiter is released exactly once: with the job's final state when the job
ends (no database read, so a purge cannot race it), or with an error when its
task is removed or the scheduler shuts down. A waiter that times out removes
itself. The registry is guarded by the scheduler lock; waiters are released
after the lock is let go.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quiv.models import Job

__all__ = ["AsyncWaiter", "SyncWaiter", "Waiter", "WaiterRegistry"]


class Waiter:
    """Base of the two kinds; :meth:`release` is called once, outside the lock."""

    __slots__ = ("key",)

    def __init__(self) -> None:
        self.key: tuple[str, str] | None = None

    def release(self, job: Job | None, error: BaseException | None) -> None:
        raise NotImplementedError


class SyncWaiter(Waiter):
    """Wakes a thread blocked in :meth:`wait`."""

    __slots__ = ("_done", "error", "job", "poke")

    def __init__(self, poke: threading.Event | None = None) -> None:
        super().__init__()
        self._done = threading.Event()
        self.job: Job | None = None
        self.error: BaseException | None = None
        #: Also set on release, for a caller that sleeps on an event of its own (a remote wait).
        self.poke = poke

    def release(self, job: Job | None, error: BaseException | None) -> None:
        self.job, self.error = job, error
        self._done.set()
        if self.poke is not None:
            self.poke.set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)


class AsyncWaiter(Waiter):
    """Settles a future on the loop that awaits it."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.future: asyncio.Future[Job] = loop.create_future()

    def release(self, job: Job | None, error: BaseException | None) -> None:
        def settle() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(job)  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the loop may be gone by then
            self.loop.call_soon_threadsafe(settle)


class WaiterRegistry:
    """Waiters by job id and by task id. Every method needs the scheduler lock."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, str], list[Waiter]] = {}

    def add(self, kind: str, key: str, waiter: Waiter) -> None:
        """Wait for the job ``key`` (kind ``"job"``) or the next job of the task ``key`` (``"task"``)."""
        waiter.key = (kind, key)
        self._by.setdefault(waiter.key, []).append(waiter)

    def discard(self, waiter: Waiter) -> None:
        """Forget a waiter that gave up (timeout, cancellation)."""
        if waiter.key is None:
            return
        waiters = self._by.get(waiter.key)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._by[waiter.key]

    def take(self, kind: str, key: str) -> list[Waiter]:
        waiters = self._by.pop((kind, key), [])
        for waiter in waiters:
            waiter.key = None
        return waiters

    def take_job_end(self, job_id: str, task_id: str) -> list[Waiter]:
        """The waiters a job's end releases: its own, and its task's."""
        if not self._by:
            return []
        return self.take("job", job_id) + self.take("task", task_id)

    def take_all(self) -> list[Waiter]:
        waiters = [w for group in self._by.values() for w in group]
        self._by.clear()
        for waiter in waiters:
            waiter.key = None
        return waiters

    def __len__(self) -> int:
        return sum(len(group) for group in self._by.values())


def release_all(waiters: list[Waiter], job: Job | None, error: BaseException | None, logger: Any) -> None:
    """Release ``waiters`` (lock not held); a failing one is logged, never raised."""
    for waiter in waiters:
        try:
            waiter.release(job, error)
        except Exception:
            logger.exception("quiv could not wake a waiter")
