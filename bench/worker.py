"""Run one (target, scenario) measurement and print its result as JSON.

Started by ``bench/run.py`` with the target's own interpreter::

    python -E -s bench/worker.py '{"target": "aps", "scenario": "throughput", "params": {"n": 2000}}'

The last line of stdout is ``BENCH-RESULT {json}``; anything the libraries
print goes to stderr. Exit status 0 means a result (possibly ``"skipped"``)
was printed; 1 means the scenario crashed (the traceback is on stderr and in
the JSON's ``error``).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MARK = "BENCH-RESULT "


def main(argv: list[str]) -> int:
    spec: dict[str, Any] = json.loads(argv[1])
    extra_path = spec.get("extra_path")
    if extra_path:
        sys.path.insert(0, extra_path)
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    params: dict[str, Any] = dict(spec.get("params", {}))
    if extra_path:
        params.setdefault("extra_path", extra_path)

    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # keep library prints away from the result line
    result: dict[str, Any] = {"target": spec["target"], "scenario": spec["scenario"], "params": params}
    status = 0
    t0 = time.perf_counter()
    try:
        from adapters import UnsupportedError, make_adapter

        adapter = make_adapter(spec["target"])
        module = importlib.import_module(f"scenarios.{spec['scenario']}")
        try:
            out = module.run(adapter, params)
            result.update(out)
            result["status"] = "ok"
        except UnsupportedError as exc:
            result["status"] = "skipped"
            result["reason"] = str(exc)
        try:
            result["version"] = adapter.version()
        except Exception:
            result["version"] = "?"
    except BaseException as exc:  # report anything, including a SystemExit from a library
        status = 1
        result["status"] = "error"
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        traceback.print_exc()
    result["worker_s"] = time.perf_counter() - t0
    result["python"] = platform.python_version()
    real_stdout.write(MARK + json.dumps(result, allow_nan=True) + "\n")
    real_stdout.flush()
    sys.stderr.flush()
    # Scheduler threads that refuse to die must not keep the measurement process alive.
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
