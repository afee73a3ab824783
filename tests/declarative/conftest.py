"""Fixtures for the declarative layer's tests."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quiv import Quiv
from quiv._declare.registry import TaskRegistry
from quiv.testing import ManualClock

#: Writes files under a fresh sys.path entry: {"pkg/__init__.py": "source", ...} -> that root.
WritePackage = Callable[[dict[str, str]], Path]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scheduler(clock: ManualClock) -> Iterator[Quiv]:
    """A scheduler whose time only moves when the test says so; shut down afterwards."""
    instance = Quiv(clock=clock)
    yield instance
    instance.shutdown()


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry()


@pytest.fixture
def write_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WritePackage]:
    """Lay out importable modules in a temporary directory; forget them after the test."""
    roots: list[Path] = []
    before = set(sys.modules)

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / f"root{len(roots)}"
        for relative, source in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(root))
        roots.append(root)
        return root

    yield write
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if any(module_file.startswith(str(root)) for root in roots):
            del sys.modules[name]
