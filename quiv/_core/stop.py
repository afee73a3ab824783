"""The stop event handed to handlers as ``_stop_event``."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["StopEvent"]


class StopEvent(threading.Event):
    """A ``threading.Event`` that can also run callbacks when it is set.

    Handlers use it as a plain event (``is_set()``, ``wait()``); quiv's own
    helpers (``run_subprocess``) subscribe to it so they react at once
    instead of polling.
    """

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], None]] = []
        self._callbacks_lock = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._callbacks_lock:
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the event is set (at once if it already is); return an unsubscriber."""
        with self._callbacks_lock:
            if not self.is_set():
                self._callbacks.append(callback)

                def unsubscribe() -> None:
                    with self._callbacks_lock:
                        if callback in self._callbacks:
                            self._callbacks.remove(callback)

                return unsubscribe
        callback()
        return lambda: None
