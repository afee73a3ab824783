"""Helpers shared by the scenarios: memory, percentiles, completion counting."""

from __future__ import annotations

import gc
import math
import resource
import threading
import time
from collections.abc import Sequence
from typing import Any

from adapters import Adapter

Result = dict[str, Any]

#: Seconds a scenario waits for work before it declares the target stuck.
DEFAULT_TIMEOUT = 120.0
#: An interval (and first delay) long enough that a task is never due during a run.
NEVER = 7 * 86400.0


def rss_mb() -> float:
    """Current resident set size of this process, in MB (from /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def settled_rss_mb() -> float:
    gc.collect()
    return rss_mb()


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty sequence."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


class Countdown:
    """Counts handler calls; records the instant the ``n``-th one arrives."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.done_at = math.nan
        self.done = threading.Event()
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count == self.n:
                self.done_at = time.perf_counter()
                self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)


def shutdown(adapter: Adapter, timeout: float = 20.0) -> str:
    """Shut the scheduler down in a helper thread; say so if it hangs."""
    errors: list[str] = []

    def _do() -> None:
        try:
            adapter.shutdown()
        except Exception as exc:  # reported, never fatal to the figures already taken
            errors.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=_do, name="bench-shutdown", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        return f"shutdown did not return within {timeout:.0f} s"
    return errors[0] if errors else ""
