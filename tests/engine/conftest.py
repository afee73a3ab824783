"""Fixtures of the engine tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support import LoopThread


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    """A running asyncio loop on a background thread, standing in for the application's loop.

    Request it *before* ``make_quiv`` so that schedulers are shut down first.
    """
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()
