"""Persistence behind a small interface, so another backend can replace SQLite later."""

from __future__ import annotations

from quiv._store.base import JobRow, Store, TaskRow

# The SQLite store (and SQLAlchemy with it) is imported by the scheduler when it
# first needs a database, from quiv._store.sqlite.
__all__ = ["JobRow", "Store", "TaskRow"]
