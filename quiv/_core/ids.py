"""Task and job ids: random (version 4) UUID strings."""

from __future__ import annotations

import os
import threading

__all__ = ["new_id"]

_VARIANT = "89ab"
#: Random bytes are read this many ids at a time: one system call (which lets
#: other threads take the GIL) per batch instead of one per id.
_BATCH = 64

_local = threading.local()


def _forget_after_fork() -> None:
    # A child must never reuse the bytes its parent was going to use.
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)


def new_id() -> str:
    """A random UUID4 in its canonical text form, like ``str(uuid.uuid4())`` but several times cheaper.

    Ids are made for every task and job, so this is on the dispatch path. Each
    thread draws from its own batch of ``os.urandom`` bytes.
    """
    local = _local
    pool: str | None = getattr(local, "pool", None)
    at: int = getattr(local, "at", 0)
    if pool is None or at >= len(pool):
        pool = local.pool = os.urandom(16 * _BATCH).hex()
        at = 0
    local.at = at + 32
    h = pool[at : at + 32]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"
