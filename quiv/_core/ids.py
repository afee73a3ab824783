"""Task and job ids: random (version 4) UUID strings."""

from __future__ import annotations

import os

__all__ = ["new_id"]

_VARIANT = "89ab"


def new_id() -> str:
    """A random UUID4 in its canonical text form, like ``str(uuid.uuid4())`` but about 3x cheaper.

    Ids are made for every task and job, so this is on the dispatch path.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"
