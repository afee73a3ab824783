"""The benchmark scenarios, one module each.

Every module exposes ``run(adapter, params) -> dict`` returning
``{"metrics": {...}, "info": {...}}`` and optionally ``"samples"`` (lists of
raw values kept for plots). A scenario the target cannot do raises
``adapters.UnsupportedError``.
"""

from __future__ import annotations

SCENARIOS = (
    "throughput",
    "latency",
    "idle",
    "add_cost",
    "cancel",
    "progress",
    "growth",
    "import_time",
    "jobs_api",
)
