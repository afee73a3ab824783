"""Fixtures of the durable and shared modes (a fresh PostgreSQL database, a SQLite file) from tests/shared."""

from __future__ import annotations

from shared.conftest import pg_url, sqlite_url

__all__ = ["pg_url", "sqlite_url"]
