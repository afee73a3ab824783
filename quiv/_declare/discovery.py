"""``autodiscover``: import every module of a package so its declarations run.

The walk is our own rather than ``pkgutil.walk_packages``, which swallows
import errors of subpackages. Each module is imported inside a declaration
batch: if it fails, every declaration it made (directly or through modules it
imported) is withdrawn, those modules are dropped from ``sys.modules`` so a
retry declares them again, and :class:`DiscoveryError` names the module with
the original exception chained.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import sys
from collections.abc import Iterable

from quiv._declare.registry import declaration_batch
from quiv._exceptions import DiscoveryError, InvalidArgumentError

__all__ = ["DiscoveryError", "discover"]


def check_patterns(exclude: object) -> tuple[str, ...]:
    """Validate ``exclude`` (an iterable of module names or glob patterns, not a lone str)."""
    if isinstance(exclude, str) or not isinstance(exclude, Iterable):
        raise InvalidArgumentError(f"exclude must be a list of module names or patterns, got {exclude!r}")
    patterns = tuple(exclude)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise InvalidArgumentError(f"exclude entries must be non-empty str, got {pattern!r}")
    return patterns


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) or name.startswith(pattern + ".") for pattern in patterns)


def _import(name: str) -> object:
    before = set(sys.modules)
    try:
        with declaration_batch() as batch:
            return importlib.import_module(name)
    except Exception as exc:
        fresh = set(sys.modules) - before
        for spec in batch.withdrawn:
            module = getattr(spec.func, "__module__", None)
            if module in fresh:
                sys.modules.pop(module, None)
        if (
            isinstance(exc, ModuleNotFoundError)
            and exc.name is not None
            and (name == exc.name or name.startswith(exc.name + "."))
        ):
            raise DiscoveryError(f"autodiscover: there is no module named {name!r}", name=name) from exc
        raise DiscoveryError(
            f"autodiscover: importing {name!r} failed with {type(exc).__name__}: {exc}; "
            "nothing it declared was kept",
            name=name,
        ) from exc


def discover(package: str, exclude: tuple[str, ...], include_private: bool) -> list[str]:
    """Import ``package`` and, if it is a package, all its modules, depth first in name order.

    Returns the names of the modules visited (already imported ones count).
    Modules whose name matches ``exclude`` (a dotted name, which also
    covers its submodules, or a glob pattern) are skipped, and so are
    modules and packages whose own name starts with ``_`` unless
    ``include_private``.
    """
    if not isinstance(package, str) or not package.strip():
        raise InvalidArgumentError(f"autodiscover() takes dotted package names, got {package!r}")
    visited: list[str] = []
    _walk(package, exclude, include_private, visited)
    return visited


def _walk(name: str, exclude: tuple[str, ...], include_private: bool, visited: list[str]) -> None:
    module = _import(name)
    visited.append(name)
    path = getattr(module, "__path__", None)
    if path is None:
        return
    for child in sorted({info.name for info in pkgutil.iter_modules(path)}):
        if child.startswith("_") and not include_private:
            continue
        full = f"{name}.{child}"
        if _excluded(full, exclude):
            continue
        _walk(full, exclude, include_private, visited)
