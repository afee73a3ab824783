"""Scenario 8, import time.

Fresh interpreters of the target's environment alternately run a bare
statement and the import a user of the target writes; the figure is the
median wall time of the import run minus the median of the bare run (and
the same with minima, the least disturbed runs). A
``-X importtime`` run gives the same figure from the interpreter's own
accounting (sum of the cumulative times of the top-level imports that the
bare run does not make).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from adapters import Adapter

from scenarios._common import Result

IMPORTS = {
    "ours": "from quiv import Quiv",
    "quiv140": "from quiv import Quiv",
    "aps": "from apscheduler.schedulers.background import BackgroundScheduler",
    "aps-sqlite": (
        "from apscheduler.schedulers.background import BackgroundScheduler; "
        "from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore"
    ),
}


def _cmd(prelude: str, stmt: str, importtime: bool = False) -> list[str]:
    flags = ["-X", "importtime"] if importtime else []
    return [sys.executable, "-E", "-s", *flags, "-c", f"{prelude}{stmt}"]


def _wall(cmd: list[str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _importtime(cmd: list[str], cwd: str) -> dict[str, int]:
    """Top-level modules imported and their cumulative µs, from ``-X importtime``."""
    proc = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    out: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line.split("|")
        if len(parts) != 3:
            continue
        name = parts[2][1:]
        if name.startswith(" "):  # nested import, already inside its parent's cumulative time
            continue
        out[name.strip()] = int(parts[1])
    return out


def run(adapter: Adapter, params: dict[str, Any]) -> Result:
    runs = int(params.get("runs", 7))
    importtime_runs = int(params.get("importtime_runs", 3))
    extra = params.get("extra_path")
    prelude = f"import sys; sys.path.insert(0, {extra!r}); " if extra else ""
    stmt = IMPORTS[adapter.name]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as cwd:
        _wall(_cmd(prelude, stmt), cwd)  # warm the page cache and the bytecode cache
        bare: list[float] = []
        full: list[float] = []
        for _ in range(runs):
            bare.append(_wall(_cmd(prelude, "pass"), cwd))
            full.append(_wall(_cmd(prelude, stmt), cwd))
        base_mods = _importtime(_cmd(prelude, "pass", True), cwd)
        self_us: list[float] = []
        for _ in range(importtime_runs):
            mods = _importtime(_cmd(prelude, stmt, True), cwd)
            self_us.append(sum(us for name, us in mods.items() if name not in base_mods))
    return {
        "metrics": {
            "import_s": statistics.median(full) - statistics.median(bare),
            # The least disturbed run: on a busy machine noise only ever adds time.
            "import_min_s": min(full) - min(bare),
            "importtime_s": statistics.median(self_us) / 1e6,
            "bare_interpreter_s": statistics.median(bare),
        },
        "info": {"statement": stmt, "runs": runs},
    }
