"""Fixtures of the scheduling tests: a manual clock, a logger to read, schedulers always shut down.

``make_quiv`` (from the suite's conftest) builds schedulers and shuts every
one down after the test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from quiv.testing import ManualClock

from .support import START, LogRecords


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test advances it, starting at ``START``."""
    return ManualClock(start=START)


@pytest.fixture
def quiv_log() -> Iterator[LogRecords]:
    """Records of the logger quiv writes to (``Quiv``) while the test runs."""
    logger = logging.getLogger("Quiv")
    handler = LogRecords()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
