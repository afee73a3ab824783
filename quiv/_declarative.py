"""Declarative layer (being written): hooks the scheduler calls."""

from __future__ import annotations


class _DeclarativeMixin:
    def _init_declarative(self) -> None:
        pass

    def _materialize_declarations(self) -> None:
        pass
