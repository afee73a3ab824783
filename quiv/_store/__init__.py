"""Persistence behind a small interface, so another backend can replace SQLite later."""

from __future__ import annotations

from quiv._store.base import JobRow, Store, TaskRow
from quiv._store.sqlite import SQLiteStore

__all__ = ["JobRow", "SQLiteStore", "Store", "TaskRow"]
