"""Benchmark quiv (this repository) against quiv 1.4.0 and APScheduler 3.11.

Usage (from the repository root)::

    python bench/run.py                # full run, ~25 min: bench/results/latest.* + docs/benchmarks.md
    python bench/run.py --quick        # tiny sizes, 1 repetition: bench/results/tmp/quick.*
    python bench/run.py --smoke        # CI: ours only, current interpreter, no venv, no network, ~10-20 s
    python bench/run.py --targets ours,aps --scenarios throughput,latency --reps 5
    python bench/run.py --ours-ref HEAD  # measure a commit instead of the working tree
    python bench/run.py --targets ours --scenarios throughput --instrument --cache-dir /tmp/bench-instr
                                       # ours with its Prometheus metrics (scraped every second) and
                                       # OpenTelemetry traces on (a separate cache: the extras get installed);
                                       # --instrument metrics|traces for one of them, --trace-sample 0.1
                                       # to sample a tenth of the jobs
    python bench/run.py --list         # the cases and their sizes
    python bench/run.py --compare bench/results/before-redesign.json bench/results/latest.json
                                       # markdown table of two runs side by side (ours; --targets for more)

Each target lives in its own virtual environment under ``.bench-cache/venvs/``
(created with ``python -m venv`` + pip on first use; ``ours`` is reinstalled
from the working tree on every run, so it never shares an environment with
``quiv==1.4.0``, whose import name is the same). Every (target, scenario) runs
in its own subprocess (``bench/worker.py``); repetitions are interleaved
(each repetition runs every scenario for every target, in a rotating order)
and the report gives the median and the min to max over repetitions.

Exit status: 0 when every measurement of ``ours`` produced a figure (missed
targets do not change it); 1 when one crashed or timed out (or, with
``--smoke``, when ours cannot be imported); 2 when ours could not be
installed or imported for a full or quick run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from report import SLOW, render_comparison, render_markdown, summarise, update_docs  # noqa: E402

ALL_TARGETS = ("ours", "quiv140", "aps", "aps-sqlite")
QUIV = ("ours", "quiv140")
MARK = "BENCH-RESULT "

#: pip requirements of each peer environment.
PEER_REQUIREMENTS: dict[str, list[str]] = {
    "quiv140": ["quiv==1.4.0"],
    "aps": ["apscheduler>=3.11,<4", "sqlalchemy"],
    "plot": ["matplotlib"],
}
#: Installed beside ours (quiv.fastapi's router, called in-process through httpx).
OURS_EXTRA_REQUIREMENTS = ["fastapi>=0.110", "httpx>=0.27"]
#: Also installed beside ours for an ``--instrument`` run.
INSTRUMENT_REQUIREMENTS = ["prometheus-client>=0.17", "opentelemetry-api>=1.20", "opentelemetry-sdk>=1.20"]
#: The variables bench/adapters.py reads to instrument ours (its INSTRUMENT_ENV and TRACE_SAMPLE_ENV).
INSTRUMENT_ENV = "QUIV_BENCH_INSTRUMENT"
TRACE_SAMPLE_ENV = "QUIV_BENCH_TRACE_SAMPLE"
#: Which environment runs which target.
ENV_OF = {"ours": "ours", "quiv140": "quiv140", "aps": "aps", "aps-sqlite": "aps"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One measurement run for several targets: a scenario with fixed sizes."""

    key: str
    scenario: str
    params: dict[str, Any]
    targets: tuple[str, ...]
    #: Parameter overrides for the slow peers (quiv140, aps-sqlite).
    slow_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    timeout: float = 240.0
    #: At most this many repetitions (long, single-figure cases).
    max_reps: int | None = None
    #: At most this many repetitions for the slow peers.
    slow_max_reps: int | None = None

    def reps_for(self, target: str, reps: int) -> int:
        limit = self.slow_max_reps if target in SLOW and self.slow_max_reps is not None else self.max_reps
        return reps if limit is None else min(reps, limit)

    def params_for(self, target: str) -> dict[str, Any]:
        if target in SLOW:
            return {**self.params, **self.slow_params}
        return dict(self.params)


def build_cases(mode: str) -> list[Case]:
    """The sizes of every scenario for ``full``, ``quick`` or ``smoke``."""
    full = mode == "full"
    smoke = mode == "smoke"
    everyone = ALL_TARGETS
    fast_sizes = (1000, 10_000, 100_000) if full else ((100,) if smoke else (1000, 10_000))
    slow_max = 1000  # quiv 1.4.0 / aps-sqlite add at ~3 ms per task: 10,000 would take 30 s per run
    perjob = 1000 if full else (50 if smoke else 300)
    perjob_slow = 200 if full else 50
    idle_s = 10.0 if full else (0.5 if smoke else 2.0)
    cases: list[Case] = [
        Case(
            "throughput",
            "throughput",
            {"n": 5000 if full else (100 if smoke else 500)},
            everyone,
            slow_params={"n": 500 if full else 100},
        ),
        Case(
            "throughput@listener",
            "throughput",
            {"n": 2000 if full else (100 if smoke else 500), "listener": True},
            ("ours", "quiv140", "aps"),
        ),
        # The target figure: 200 jobs due 5 ms apart, every target in the same run.
        Case(
            "latency",
            "latency",
            {"m": 200 if full else (20 if smoke else 50), "stagger_s": 0.005},
            everyone,
        ),
    ]
    if not smoke:
        # The spacing of the earlier reports, kept for comparison with them.
        cases.append(Case("latency@10ms", "latency", {"m": 200 if full else 50, "stagger_s": 0.01}, everyone))
    for size in fast_sizes:
        targets = everyone if size <= slow_max else ("ours", "aps")
        timeout = 600.0 if size >= 100_000 else 240.0
        cases.append(
            Case(
                f"idle@{size}",
                "idle",
                {"size": size, "idle_s": idle_s, "perjob_n": perjob, "settle_s": 1.0 if not smoke else 0.2},
                targets,
                slow_params={"perjob_n": perjob_slow},
                timeout=timeout,
                # Adding 1,000 tasks takes quiv 1.4.0 / aps-sqlite 3 to 30 s: one repetition is enough
                # for figures that are not targets.
                slow_max_reps=1 if full else None,
            )
        )
    for size in (10, 100) if not smoke else (10,):
        cases.append(
            Case(
                f"growth@{size}",
                "growth",
                {"mode": "perjob", "size": size, "perjob_n": perjob, "settle_s": 0.2},
                everyone,
                slow_params={"perjob_n": perjob_slow},
            )
        )
    cases += [
        Case(
            "add@running",
            "add_cost",
            {"n": 2000 if full else (100 if smoke else 300), "phase": "running"},
            everyone,
            slow_params={"n": 300 if full else 50},
        ),
        Case(
            "add@stopped",
            "add_cost",
            {"n": 2000 if full else (100 if smoke else 300), "phase": "stopped"},
            everyone,
            slow_params={"n": 300 if full else 50},
        ),
        Case(
            "declare",
            "add_cost",
            {"mode": "declare", "count": 10_000 if full else (200 if smoke else 1000)},
            ("ours",),
        ),
        Case("cancel", "cancel", {"k": 30 if full else (3 if smoke else 10)}, QUIV),
        Case("progress", "progress", {"m": 20_000 if full else (1000 if smoke else 5000)}, QUIV),
        Case(
            "retention",
            "growth",
            {
                "mode": "retention",
                "jobs": 100_000 if full else (2000 if smoke else 10_000),
                "first": 1000 if not smoke else 500,
                "batch": 1000 if not smoke else 500,
                "retention_s": 1,
                "wait_s": 2.5 if not smoke else 1.2,
            },
            # quiv 1.4.0 runs ~100 jobs/s: 100,000 jobs would take a quarter of an hour.
            ("ours", "aps"),
            timeout=600.0,
            max_reps=1,
        ),
    ]
    # GET /jobs?limit=50 of quiv.fastapi's router with H finished jobs in the history (ours only).
    if full:
        api_sizes = ((100, 500), (100_000, 200))  # (finished jobs kept, timed calls)
    else:
        api_sizes = ((100, 20), (1000, 20)) if smoke else ((100, 100), (10_000, 50))
    for history, calls in api_sizes:
        cases.append(
            Case(
                f"jobs_api@{history}",
                "jobs_api",
                {"history": history, "calls": calls, "limit": 50},
                ("ours",),
                # Before the redesign a call reads the whole history: ~1.5 s per call at 100,000 jobs.
                timeout=1200.0 if history >= 100_000 else 240.0,
                # 200 calls already give a stable median within one run; each run takes ~5 minutes.
                max_reps=3 if history >= 100_000 else None,
            )
        )
    cases += [
        Case(
            "import",
            "import_time",
            {"runs": 5 if full else (1 if smoke else 3), "importtime_runs": 1 if smoke else 3},
            everyone,
        ),
    ]
    if smoke:
        for i, case in enumerate(cases):
            cases[i] = Case(
                case.key, case.scenario, {**case.params, "timeout": 20.0}, ("ours",), timeout=60.0
            )
    return cases


# --------------------------------------------------------------------------- environments


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")


def _make_venv(venv: Path) -> Path:
    if not _venv_python(venv).exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    return _venv_python(venv)


def ensure_peer_env(cache: Path, name: str) -> Path:
    """Create (once) the venv ``name`` with its pinned requirements; return its python."""
    venv = cache / "venvs" / name
    marker = venv / ".bench-requirements"
    wanted = "\n".join(PEER_REQUIREMENTS[name])
    python = _venv_python(venv)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    _log(f"[setup] creating {venv} with {', '.join(PEER_REQUIREMENTS[name])}")
    python = _make_venv(venv)
    _pip(python, "install", *PEER_REQUIREMENTS[name])
    marker.write_text(wanted)
    return python


def ensure_ours_env(cache: Path, ref: str | None, extra: list[str] | None = None) -> tuple[Path, str | None]:
    """A venv holding this repository's quiv, reinstalled on every run.

    ``ref`` None installs the working tree as it is; a git ref (``HEAD``, a
    commit) installs that commit instead, so a half-edited tree cannot spoil a
    run. Returns the interpreter and, when the source cannot be installed yet
    (no ``pyproject.toml``), a path to put first on ``sys.path`` instead.
    """
    venv = cache / "venvs" / "ours"
    python = _make_venv(venv)
    with tempfile.TemporaryDirectory(prefix="bench-ours-src-") as tmp:
        # Build from a copy, so the build leaves nothing (egg-info, build/) in the working tree.
        src = Path(tmp) / "src"
        if ref is None:
            shutil.copytree(
                REPO,
                src,
                ignore=shutil.ignore_patterns(
                    ".git",
                    ".venv",
                    ".bench-cache",
                    "bench",
                    "__pycache__",
                    "*.pyc",
                    ".mypy_cache",
                    ".ruff_cache",
                    ".pytest_cache",
                    ".hypothesis",
                    "site",
                    "dist",
                    "build",
                ),
            )
        else:
            src.mkdir()
            archive = subprocess.run(
                ["git", "archive", ref], cwd=REPO, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        if not (src / "pyproject.toml").exists():
            if ref is not None:
                raise RuntimeError(f"{ref} has no pyproject.toml to install")
            _log(
                "[setup] no pyproject.toml yet: ours runs from the tree, its dependencies installed beside it"
            )
            _pip(python, "install", "sqlmodel", "typing_extensions", *OURS_EXTRA_REQUIREMENTS, *(extra or []))
            return python, str(REPO)
        _log(f"[setup] installing ours from {ref or 'the working tree'} into {venv}")
        subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "quiv"], capture_output=True)
        # fastapi and httpx for the jobs API scenario (quiv.fastapi's router called in-process).
        _pip(python, "install", str(src), *OURS_EXTRA_REQUIREMENTS, *(extra or []))
    return python, None


# --------------------------------------------------------------------------- running

PREFLIGHT = {
    "ours": "from quiv import Quiv",
    "quiv140": "from quiv import Quiv",
    "aps": "from apscheduler.schedulers.background import BackgroundScheduler",
    "aps-sqlite": "from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore",
}


def preflight(python: Path, target: str, extra_path: str | None) -> str:
    """Import the target once; return the error text, or "" when it imports."""
    prelude = f"import sys; sys.path.insert(0, {extra_path!r}); " if extra_path else ""
    with tempfile.TemporaryDirectory(prefix="bench-preflight-") as cwd:
        proc = subprocess.run(
            [str(python), "-E", "-s", "-c", prelude + PREFLIGHT[target]],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
    return "" if proc.returncode == 0 else proc.stderr.strip()[-3000:]


def run_one(
    python: Path, case: Case, target: str, rep: int, extra_path: str | None, workdir: Path
) -> dict[str, Any]:
    params = case.params_for(target)
    spec = {"target": target, "scenario": case.scenario, "params": params, "extra_path": extra_path}
    cmd = [str(python), "-E", "-s", str(HERE / "worker.py"), json.dumps(spec)]
    record: dict[str, Any] = {
        "case": case.key,
        "scenario": case.scenario,
        "target": target,
        "rep": rep,
        "params": params,
    }
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=case.timeout)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        record.update(
            status="timeout", error=f"no result within {case.timeout:.0f} s", stderr_tail=stderr[-3000:]
        )
        record["duration_s"] = time.perf_counter() - t0
        return record
    record["duration_s"] = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if not lines:
        record.update(
            status="error",
            error=f"worker exited {proc.returncode} without a result",
            stderr_tail=proc.stderr[-3000:],
        )
        return record
    out = json.loads(lines[-1][len(MARK) :])
    for key in (
        "status",
        "metrics",
        "samples",
        "info",
        "error",
        "reason",
        "version",
        "traceback",
        "worker_s",
    ):
        if key in out:
            record[key] = out[key]
    if record.get("status") == "error":
        record["stderr_tail"] = proc.stderr[-3000:]
    return record


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def machine_info(ours_ref: str | None, loadavg_start: list[float]) -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", ours_ref or "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if ours_ref is None:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--", "quiv", "pyproject.toml"],
                cwd=REPO,
                capture_output=True,
                text=True,
            ).stdout
            rev += " + uncommitted changes" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        rev = "no commit yet"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": loadavg_start,
        "git": rev,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition (a few minutes)")
    mode.add_argument(
        "--smoke", action="store_true", help="CI: ours only, current interpreter, tiny sizes, ~10-20 s"
    )
    p.add_argument(
        "--targets",
        default=None,
        help=f"comma list of {','.join(ALL_TARGETS)} (default: all; with --compare: ours)",
    )
    p.add_argument("--scenarios", default="", help="comma list of case keys or scenario names (default: all)")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --quick/--smoke)")
    p.add_argument(
        "--ours-ref",
        default=None,
        metavar="REF",
        help="install ours from this git commit (e.g. HEAD) instead of the working tree",
    )
    p.add_argument("--cache-dir", type=Path, default=REPO / ".bench-cache", help="venvs live here")
    p.add_argument("--out", type=Path, default=None, help="output stem (default bench/results/latest)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/benchmarks.md")
    p.add_argument(
        "--instrument",
        nargs="?",
        const="both",
        choices=("metrics", "traces", "both"),
        default=None,
        help="run ours with its Prometheus metrics (scraped every second), its OpenTelemetry traces "
        "(SDK, batch processor, spans dropped by the exporter) or both (the default) turned on; use a "
        "separate --cache-dir",
    )
    p.add_argument(
        "--trace-sample",
        type=float,
        default=1.0,
        metavar="RATIO",
        help="with --instrument: the share of jobs traced (default 1: every job)",
    )
    p.add_argument("--list", action="store_true", help="print the cases and exit")
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("BEFORE", "AFTER"),
        help="print a markdown table of two results files (.json) side by side and exit",
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    reps = args.reps if args.reps is not None else (3 if mode == "full" else 1)
    if args.smoke:
        targets: tuple[str, ...] = ("ours",)
    else:
        default = "ours" if args.compare else ",".join(ALL_TARGETS)
        targets = tuple(t.strip() for t in (args.targets or default).split(",") if t.strip())
    unknown = set(targets) - set(ALL_TARGETS)
    if unknown:
        _log(f"unknown targets: {', '.join(sorted(unknown))}")
        return 2
    if args.compare:
        before, after = (json.loads(path.read_text()) for path in args.compare)
        print(render_comparison(before, after, list(targets)))
        return 0
    cases = build_cases(mode)
    if args.scenarios:
        wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
        cases = [c for c in cases if c.key in wanted or c.scenario in wanted or c.key.split("@")[0] in wanted]
    cases = [dataclasses.replace(c, targets=tuple(t for t in c.targets if t in targets)) for c in cases]
    cases = [c for c in cases if c.targets]
    if args.list:
        for c in cases:
            print(f"{c.key:20} {c.scenario:12} {','.join(c.targets):32} {c.params}  slow:{c.slow_params}")
        return 0

    if args.instrument:
        # Read by bench/adapters.py in every measurement process.
        os.environ[INSTRUMENT_ENV] = args.instrument
        os.environ[TRACE_SAMPLE_ENV] = str(args.trace_sample)
    out_stem: Path = args.out or (HERE / "results" / ("latest" if mode == "full" else f"tmp/{mode}"))
    out_stem.parent.mkdir(parents=True, exist_ok=True)

    # ---- environments
    pythons: dict[str, Path] = {}
    extra_path: dict[str, str | None] = {}
    setup_errors: dict[str, str] = {}
    started = time.perf_counter()
    loadavg_start = list(os.getloadavg())
    if mode == "smoke":
        pythons["ours"] = Path(sys.executable)
        extra_path["ours"] = str(REPO)
    else:
        for target in targets:
            env = ENV_OF[target]
            try:
                if env == "ours":
                    extra = INSTRUMENT_REQUIREMENTS if args.instrument else None
                    python, path = ensure_ours_env(args.cache_dir, args.ours_ref, extra)
                    pythons[target], extra_path[target] = python, path
                else:
                    pythons[target] = ensure_peer_env(args.cache_dir, env)
                    extra_path[target] = None
            except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
                setup_errors[target] = str(exc)
                _log(f"[setup] {target}: {exc}")
    for target in targets:
        if target not in setup_errors:
            problem = preflight(pythons[target], target, extra_path[target])
            if problem:
                setup_errors[target] = problem
                _log(f"[setup] {target} cannot be imported, its measurements are skipped:\n{problem}")
    setup_s = time.perf_counter() - started

    # ---- measurements, interleaved
    total = sum(c.reps_for(t, reps) for c in cases for t in c.targets)
    records: list[dict[str, Any]] = []
    done = 0
    with tempfile.TemporaryDirectory(prefix="bench-work-") as work:
        for rep in range(reps):
            for ci, case in enumerate(cases):
                shift = (rep + ci) % len(case.targets)
                order = case.targets[shift:] + case.targets[:shift]
                for target in order:
                    if rep >= case.reps_for(target, reps):
                        continue
                    done += 1
                    if target in setup_errors:
                        rec: dict[str, Any] = {
                            "case": case.key,
                            "scenario": case.scenario,
                            "target": target,
                            "rep": rep,
                            "status": "error",
                            "error": "environment setup or import failed",
                            "params": case.params_for(target),
                        }
                    else:
                        rec = run_one(pythons[target], case, target, rep, extra_path[target], Path(work))
                    records.append(rec)
                    status = rec.get("status", "?")
                    detail = rec.get("error") or rec.get("reason") or ""
                    _log(
                        f"[{done:3}/{total}] rep {rep + 1} {case.key:19} {target:10} "
                        f"{rec.get('duration_s', 0):6.1f}s "
                        f"{status}{' - ' + detail if detail else ''}"
                    )
                    if status in ("error", "timeout") and rec.get("stderr_tail"):
                        _log("    " + rec["stderr_tail"].strip().replace("\n", "\n    ")[-1500:])

    meta = machine_info(args.ours_ref, loadavg_start)
    meta.update(
        ours_source=args.ours_ref or "working tree",
        instrumented=args.instrument or "no",
        trace_sample=args.trace_sample if args.instrument in ("traces", "both") else None,
        mode=mode,
        reps=reps,
        targets=list(targets),
        setup_s=setup_s,
        run_s=time.perf_counter() - started,
        loadavg_end=list(os.getloadavg()),
    )
    versions: dict[str, str] = {}
    for rec in records:
        if rec.get("version") and rec["target"] not in versions:
            versions[rec["target"]] = rec["version"]
    meta["versions"] = versions
    meta["setup_errors"] = setup_errors
    summary = summarise(records)
    case_dicts = [c.__dict__ for c in cases]

    json_path = out_stem.with_suffix(".json")
    md_path = out_stem.with_suffix(".md")
    png_path = out_stem.with_suffix(".png")
    payload = {
        "meta": meta,
        "cases": case_dicts,
        "summary": summary["rows"],
        "targets": summary["targets_check"],
        "runs": records,
    }
    json_path.write_text(json.dumps(payload, indent=1, default=str))
    _log(f"\nwrote {_rel(json_path)}")

    png_name: str | None = None
    if not args.no_plot and mode != "smoke":
        try:
            plot_python = ensure_peer_env(args.cache_dir, "plot")
            subprocess.run(
                [str(plot_python), "-E", "-s", str(HERE / "plot.py"), str(json_path), str(png_path)],
                check=True,
            )
            png_name = png_path.name
            _log(f"wrote {_rel(png_path)}")
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            _log(f"[plot] skipped: {exc}")

    report = render_markdown(meta, case_dicts, summary, records, png_name)
    md_path.write_text(report.markdown)
    _log(f"wrote {_rel(md_path)}")
    if mode == "full" and not args.no_docs and args.out is None:
        update_docs(REPO / "docs" / "benchmarks.md", meta, report.docs_section)
        if png_name is not None and png_path.exists():
            # The docs site only serves files under docs/: keep a copy of the plot there.
            shutil.copyfile(png_path, REPO / "docs" / "img" / "benchmarks.png")
        _log("updated docs/benchmarks.md")

    print(report.terminal)
    if "ours" in setup_errors:
        _log("ours could not be set up or imported: no figure of ours was measured")
        return 1 if mode == "smoke" else 2
    crashed = [r for r in records if r["target"] == "ours" and r.get("status") in ("error", "timeout")]
    if crashed:
        _log(
            f"{len(crashed)} measurement(s) of ours crashed or timed out: "
            + ", ".join(sorted({r["case"] for r in crashed}))
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
