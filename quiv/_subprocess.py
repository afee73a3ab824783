"""``run_subprocess``: ``subprocess.run`` that stops its child when the job is cancelled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from quiv._core.context import get_current_stop_event
from quiv._core.stop import StopEvent
from quiv._exceptions import InvalidArgumentError

__all__ = ["run_subprocess"]

#: How often a plain ``threading.Event`` (not the one quiv injects) is checked.
_POLL_SECONDS = 0.05


class _Stopper:
    """Terminates a child, then kills it if it is still alive after a grace period."""

    def __init__(self, process: subprocess.Popen[Any], grace: float, group: bool) -> None:
        self.process = process
        self.grace = grace
        self.group = group
        self.stopped = False
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            if self.process.poll() is not None:
                return
            self._signal(signal.SIGTERM)
            self._timer = threading.Timer(self.grace, self._kill)
            self._timer.daemon = True
            self._timer.start()

    def _kill(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.group:
            # The child leads its own session: signal everything it started too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()


def run_subprocess(
    args: str | Sequence[str],
    *,
    stop_event: threading.Event | None = None,
    timeout: float | None = None,
    terminate_grace: float = 5.0,
    check: bool = False,
    input: bytes | str | None = None,
    capture_output: bool = False,
    kill_process_group: bool = False,
    **popen_kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """Run a command like :func:`subprocess.run`, ending it when the job is told to stop.

    Inside a quiv job the job's stop event is used unless ``stop_event`` is
    given. When that event is set (``cancel_job``, a task ``timeout``,
    ``remove_task``, ``shutdown``) the child gets SIGTERM, then SIGKILL after
    ``terminate_grace`` seconds, and the call returns its (negative) return
    code; with ``check=True`` that raises :class:`subprocess.CalledProcessError`.
    When ``timeout`` passes the child is stopped the same way and
    :class:`subprocess.TimeoutExpired` is raised. The child is always reaped.
    With ``kill_process_group=True`` the child starts a new session and the
    signals go to its whole process group, so a shell's own children stop too.
    """
    if (
        isinstance(terminate_grace, bool)
        or not isinstance(terminate_grace, (int, float))
        or terminate_grace < 0
    ):
        raise InvalidArgumentError(f"terminate_grace must be a number >= 0, got {terminate_grace!r}")
    event = stop_event if stop_event is not None else get_current_stop_event()
    if capture_output:
        popen_kwargs["stdout"] = popen_kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        popen_kwargs["stdin"] = subprocess.PIPE
    if kill_process_group:
        popen_kwargs["start_new_session"] = True
    deadline = None if timeout is None else time.monotonic() + timeout
    with subprocess.Popen(args, **popen_kwargs) as process:
        stopper = _Stopper(process, float(terminate_grace), kill_process_group)
        unsubscribe = event.on_set(stopper) if isinstance(event, StopEvent) else None
        try:
            while True:
                # With quiv's own stop event we are called back; a plain event is polled.
                step = None if unsubscribe is not None or event is None else _POLL_SECONDS
                if deadline is not None:
                    left = deadline - time.monotonic()
                    step = left if step is None else min(step, left)
                try:
                    stdout, stderr = process.communicate(
                        input, timeout=None if step is None else max(step, 0)
                    )
                    break
                except subprocess.TimeoutExpired:
                    input = None  # already written
                    if deadline is not None and time.monotonic() >= deadline:
                        stopper()
                        stdout, stderr = process.communicate()
                        raise subprocess.TimeoutExpired(process.args, timeout or 0, stdout, stderr) from None
                    if event is not None and event.is_set():
                        stopper()
        except BaseException:
            stopper._kill()
            process.wait()
            raise
        finally:
            stopper.cancel()
            if unsubscribe is not None:
                unsubscribe()
        returncode = process.wait()
    if check and returncode:
        raise subprocess.CalledProcessError(returncode, process.args, stdout, stderr)
    return subprocess.CompletedProcess(process.args, returncode, stdout, stderr)
