"""Turn the raw runs into medians, the markdown report and the targets check.

Standard library only: ``bench/run.py`` imports it in whatever interpreter
starts the benchmark.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Peers whose per-task costs are in milliseconds: they get smaller sizes so a run stays within budget.
SLOW = ("quiv140", "aps-sqlite")

PEER_LABEL = {
    "ours": "ours",
    "quiv140": "quiv 1.4.0",
    "aps": "APScheduler (memory)",
    "aps-sqlite": "APScheduler (SQLite)",
}


@dataclass(frozen=True)
class Fig:
    """One figure of the report: a metric of one case."""

    case: str
    metric: str
    label: str
    better: str  # "lower" | "higher" | "" (informational)


@dataclass(frozen=True)
class Section:
    title: str
    what: str
    cases: tuple[str, ...]
    figs: tuple[Fig, ...]


def _sections(case_keys: Iterable[str]) -> list[Section]:
    keys = list(case_keys)
    idle_sizes = sorted(int(k.split("@")[1]) for k in keys if k.startswith("idle@"))
    growth_cases = sorted(
        (k for k in keys if k.startswith(("growth@", "idle@"))), key=lambda k: int(k.split("@")[1])
    )
    idle_figs: list[Fig] = []
    for size in idle_sizes:
        idle_figs += [
            Fig(f"idle@{size}", "idle_cpu_s_per_10s", f"CPU s per 10 s idle, {size:,} tasks", "lower"),
            Fig(
                f"idle@{size}",
                "after_add_cpu_s",
                f"CPU s of work deferred past the last add, {size:,} tasks",
                "lower",
            ),
            Fig(f"idle@{size}", "rss_mb", f"RSS MB, {size:,} tasks", "lower"),
            Fig(f"idle@{size}", "rss_delta_mb", f"RSS MB added (scheduler + {size:,} tasks)", "lower"),
        ]
    growth_figs = [
        Fig(k, "perjob_us", f"µs per job, {int(k.split('@')[1]):,} tasks scheduled", "lower")
        for k in growth_cases
    ]
    growth_figs += [
        Fig("retention", "rss_first_mb", "RSS MB after 1,000 jobs (retention 1 s)", "lower"),
        Fig("retention", "rss_all_mb", "RSS MB after all jobs (retention 1 s)", "lower"),
        Fig("retention", "rss_growth_mb", "RSS growth MB, 1,000 → all jobs", "lower"),
    ]
    api_sizes = sorted(int(k.split("@")[1]) for k in keys if k.startswith("jobs_api@"))
    api_figs: list[Fig] = []
    for size in api_sizes:
        api_figs += [
            Fig(f"jobs_api@{size}", "p50_ms", f"p50 ms, {size:,} jobs in the history", "lower"),
            Fig(f"jobs_api@{size}", "p99_ms", f"p99 ms, {size:,} jobs in the history", "lower"),
        ]
    api_figs += [
        Fig(f"jobs_api@{size}", "fill_jobs_per_s", f"filling the history, jobs/s ({size:,} jobs)", "higher")
        for size in api_sizes
        if size >= 10_000
    ]
    return [
        Section(
            "1. Throughput",
            "N run-once no-op jobs added at once to a running scheduler (pool of 10 threads); wall time "
            "from the first add until the N-th handler has run (a counter in the handler, no store polling). "
            "`throughput@listener`: the same with the library's job-completed listener attached (quiv: "
            "`add_listener(Event.JOB_COMPLETED, cb)`, no main loop; APScheduler: `EVENT_JOB_EXECUTED`), a "
            "sync callback that only counts; the wall time runs until the N-th handler and the N-th listener "
            "call have both happened.",
            ("throughput", "throughput@listener"),
            (
                Fig("throughput", "jobs_per_s", "jobs/s", "higher"),
                Fig("throughput@listener", "jobs_per_s", "jobs/s with a job-completed listener", "higher"),
                Fig(
                    "throughput@listener",
                    "handler_jobs_per_s",
                    "jobs/s with a listener, counted on the handlers only",
                    "higher",
                ),
            ),
        ),
        Section(
            "2. Dispatch latency",
            "M run-once jobs due at known instants 5 ms apart (`latency`, the target) and 10 ms apart "
            "(`latency@10ms`, the spacing of earlier reports) (due = clock just before add + delay); "
            "latency = handler start - due. Below saturation for every peer but quiv 1.4.0, so this is "
            "dispatch latency, not backlog.",
            ("latency", "latency@10ms"),
            (
                Fig("latency", "p50_ms", "p50 ms, 5 ms apart", "lower"),
                Fig("latency", "p99_ms", "p99 ms, 5 ms apart", "lower"),
                Fig("latency", "max_ms", "max ms, 5 ms apart", "lower"),
                Fig("latency@10ms", "p50_ms", "p50 ms, 10 ms apart", "lower"),
                Fig("latency@10ms", "p99_ms", "p99 ms, 10 ms apart", "lower"),
                Fig("latency@10ms", "max_ms", "max ms, 10 ms apart", "lower"),
            ),
        ),
        Section(
            "3. Idle cost",
            "S interval tasks, none due, added to a running scheduler; once the process is quiet (at least "
            "1 s, then until 0.25 s pass with < 1% CPU; the CPU spent on deferred work until then is shown "
            "apart), process CPU time (all threads) over the idle window, and RSS (VmRSS, after gc.collect).",
            tuple(f"idle@{s}" for s in idle_sizes),
            tuple(idle_figs),
        ),
        Section(
            "4. Add cost",
            "µs per add_task / add_job of a not-due interval task, each call timed (median); on a running "
            "scheduler and before start(). Declarative: start() materialising D @scheduler.task declarations "
            "(ours only), until get_all_tasks() sees all of them.",
            ("add@running", "add@stopped", "declare"),
            (
                Fig("add@running", "add_us_median", "add µs, running scheduler", "lower"),
                Fig("add@stopped", "add_us_median", "add µs, before start()", "lower"),
                Fig("declare", "materialised_s", "start() materialising the declarations, s", "lower"),
                Fig("declare", "declare_import_s", "importing the module of declarations, s", "lower"),
                Fig("declare", "get_all_tasks_s", "get_all_tasks() listing them afterwards, s", "lower"),
            ),
        ),
        Section(
            "5. Cancellation latency",
            "A job polls its stop event every 1 ms; latency = handler sees the event - cancel_job returned "
            "(K rounds). APScheduler has no cancellation.",
            ("cancel",),
            (
                Fig("cancel", "p50_ms", "p50 ms", "lower"),
                Fig("cancel", "p99_ms", "p99 ms", "lower"),
                Fig("cancel", "max_ms", "max ms", "lower"),
                Fig("cancel", "cancel_call_ms", "cancel_job call itself, ms", "lower"),
            ),
        ),
        Section(
            "6. Progress",
            "One job calls its progress hook M times; the callback runs on the main asyncio loop; rate = M / "
            "(last message received - first hook call). A 1 ms asyncio timer measures how late the loop runs "
            "meanwhile. Sync callback, then async callback. APScheduler has no progress hook.",
            ("progress",),
            (
                Fig("progress", "sync_msgs_per_s", "messages/s, sync callback", "higher"),
                Fig("progress", "sync_timer_max_lag_ms", "1 ms timer max lag ms, sync callback", "lower"),
                Fig("progress", "sync_out_of_order", "out-of-order messages, sync", "lower"),
                Fig("progress", "async_msgs_per_s", "messages/s, async callback", "higher"),
                Fig("progress", "async_timer_max_lag_ms", "1 ms timer max lag ms, async callback", "lower"),
                Fig("progress", "async_out_of_order", "out-of-order messages, async", "lower"),
            ),
        ),
        Section(
            "7. Growth",
            "Cost per job (a batch of run-once no-ops, as in 1) with S not-due tasks scheduled; and RSS of a "
            "scheduler with history_retention_seconds=1 after 1,000 and after all finished jobs (run in "
            "batches of 1,000; read 2.5 s after the last batch).",
            (*growth_cases, "retention"),
            tuple(growth_figs),
        ),
        Section(
            "8. Import time",
            "Fresh interpreter: median wall time of the import a user writes minus a bare interpreter; "
            "and the same from -X importtime.",
            ("import",),
            (
                Fig("import", "import_s", "import s (wall, minus bare interpreter)", "lower"),
                Fig("import", "import_min_s", "import s (fastest run minus fastest bare run)", "lower"),
                Fig("import", "importtime_s", "import s (-X importtime)", "lower"),
            ),
        ),
        Section(
            "9. Jobs API",
            "`GET /jobs?limit=50` of `quiv.fastapi`'s router (ours only), the app called in-process "
            "through `httpx.AsyncClient` over `httpx.ASGITransport`, each call timed from the client; H "
            "finished jobs in the history (history_retention_seconds of 7 days), made by running H "
            "run-once no-op jobs through the public API in batches of 5,000 before the first call.",
            tuple(f"jobs_api@{s}" for s in api_sizes),
            tuple(api_figs),
        ),
    ]


# --------------------------------------------------------------------------- numbers


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(float(v))
    return out


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / min / max per (case, target, metric), plus statuses and the targets check."""
    rows: dict[str, dict[str, Any]] = {}
    status: dict[str, dict[str, Any]] = {}
    for rec in records:
        key = f"{rec['case']}|{rec['target']}"
        st = status.setdefault(
            key, {"ok": 0, "skipped": 0, "error": 0, "timeout": 0, "reason": "", "error_msg": ""}
        )
        s = rec.get("status", "error")
        st[s] = st.get(s, 0) + 1
        if s == "skipped":
            st["reason"] = rec.get("reason", "")
        if s in ("error", "timeout"):
            st["error_msg"] = rec.get("error", "")
        for metric, value in (rec.get("metrics") or {}).items():
            rows.setdefault(f"{rec['case']}|{rec['target']}|{metric}", {"values": []})["values"].append(value)
    for row in rows.values():
        vals = _finite(row["values"])
        row["n"] = len(vals)
        row["median"] = statistics.median(vals) if vals else None
        row["min"] = min(vals) if vals else None
        row["max"] = max(vals) if vals else None
    summary: dict[str, Any] = {"rows": rows, "status": status}
    summary["targets_check"] = check_targets(summary)
    return summary


def med(summary: dict[str, Any], case: str, target: str, metric: str) -> float | None:
    row = summary["rows"].get(f"{case}|{target}|{metric}")
    return None if row is None else row["median"]


def fmt(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "—"
    if abs(r) >= 10:
        return f"{r:,.0f}x"
    if abs(r) >= 0.1:
        return f"{r:.2f}x"
    return f"{r:.2g}x"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


# --------------------------------------------------------------------------- targets


def check_targets(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets for ours, each PASS / FAIL / N/A (no figure) / INFO (shown, not judged)."""
    out: list[dict[str, str]] = []

    def add(name: str, ok: bool | None, figure: str, info: bool = False) -> None:
        status = "INFO" if info else ("N/A" if ok is None else ("PASS" if ok else "FAIL"))
        out.append({"target": name, "status": status, "figure": figure})

    def m(case: str, metric: str, target: str = "ours") -> float | None:
        return med(summary, case, target, metric)

    v = m("latency", "p99_ms")
    add("dispatch latency p99 ≤ 1 ms (jobs 5 ms apart)", None if v is None else v <= 1.0, f"p99 {fmt(v)} ms")
    aps = m("latency", "p99_ms", "aps")
    add(
        "dispatch latency p99 vs APScheduler in memory (5 ms apart, same run, same noise)",
        None,
        f"{fmt(v)} vs {fmt(aps)} ms ({fmt_ratio(_ratio(v, aps))})",
        info=True,
    )

    ours, aps = m("throughput", "jobs_per_s"), m("throughput", "jobs_per_s", "aps")
    add(
        "throughput ≥ APScheduler in memory (same run)",
        None if ours is None or aps is None else ours >= aps,
        f"{fmt(ours)} vs {fmt(aps)} jobs/s ({fmt_ratio(_ratio(ours, aps))})",
    )
    q = m("throughput", "jobs_per_s", "quiv140")
    add("throughput vs quiv 1.4.0 (≈ 80x expected)", None, f"{fmt_ratio(_ratio(ours, q))}", info=True)
    ours, aps = m("throughput@listener", "jobs_per_s"), m("throughput@listener", "jobs_per_s", "aps")
    q = m("throughput@listener", "jobs_per_s", "quiv140")
    add(
        "throughput with a job-completed listener vs APScheduler in memory (same run)",
        None,
        f"{fmt(ours)} vs {fmt(aps)} jobs/s ({fmt_ratio(_ratio(ours, aps))}); "
        f"{fmt_ratio(_ratio(ours, q))} quiv 1.4.0",
        info=True,
    )

    for case, where in (("add@running", "running scheduler"), ("add@stopped", "before start()")):
        ours, aps = m(case, "add_us_median"), m(case, "add_us_median", "aps")
        add(
            f"add_task ≤ 2x APScheduler add_job ({where})",
            None if ours is None or aps is None else ours <= 2 * aps,
            f"{fmt(ours)} vs {fmt(aps)} µs ({fmt_ratio(_ratio(ours, aps))})",
        )

    v = m("declare", "materialised_s")
    st = summary["status"].get("declare|ours", {})
    extra = f" ({st['reason']})" if v is None and st.get("reason") else ""
    add(
        "start() materialises 10,000 declarations ≤ 1 s",
        None if v is None else v <= 1.0,
        f"{fmt(v)} s{extra}",
    )

    v = m("idle@10000", "idle_cpu_s_per_10s")
    add("idle ≤ 0.01 CPU s per 10 s at 10,000 tasks", None if v is None else v <= 0.01, f"{fmt(v)} CPU s")

    small, big = m("growth@10", "perjob_us"), m("idle@100000", "perjob_us")
    r = _ratio(big, small)
    add(
        "per-job cost at 100,000 tasks ≤ 1.5x at 10 tasks",
        None if r is None else r <= 1.5,
        f"{fmt(big)} vs {fmt(small)} µs ({fmt_ratio(r)})",
    )

    ours, aps = m("idle@10000", "rss_mb"), m("idle@10000", "rss_mb", "aps")
    add(
        "RSS at 10,000 tasks ≤ APScheduler's",
        None if ours is None or aps is None else ours <= aps,
        f"{fmt(ours)} vs {fmt(aps)} MB",
    )
    ours_d, aps_d = m("idle@10000", "rss_delta_mb"), m("idle@10000", "rss_delta_mb", "aps")
    add(
        "RSS added by scheduler + 10,000 tasks (excl. imports)",
        None,
        f"{fmt(ours_d)} vs {fmt(aps_d)} MB",
        info=True,
    )

    ours, q = m("progress", "sync_msgs_per_s"), m("progress", "sync_msgs_per_s", "quiv140")
    add(
        "progress ≥ 250,000 msg/s (sync callback)",
        None if ours is None else ours >= 250_000,
        f"{fmt(ours)} msg/s",
    )
    r = _ratio(ours, q)
    add(
        "progress ≥ 10x quiv 1.4.0 (sync callback)",
        None if r is None else r >= 10,
        f"{fmt_ratio(r)} ({fmt(q)})",
    )
    ooo = [m("progress", f"{k}_out_of_order") for k in ("sync", "async")]
    add(
        "progress delivered in order",
        None if any(x is None for x in ooo) else all(x == 0 for x in ooo if x is not None),
        f"{fmt(ooo[0])} / {fmt(ooo[1])} out of order (sync / async)",
    )
    lag = m("progress", "sync_timer_max_lag_ms")
    add(
        "main loop not starved: 1 ms timer fires within 10 ms (sync)",
        None if lag is None else lag <= 10,
        f"max lag {fmt(lag)} ms",
    )
    ours, q = m("progress", "async_msgs_per_s"), m("progress", "async_msgs_per_s", "quiv140")
    lag = m("progress", "async_timer_max_lag_ms")
    add(
        "progress with an async callback",
        None,
        f"{fmt(ours)} msg/s, {fmt_ratio(_ratio(ours, q))} quiv 1.4.0, timer max lag {fmt(lag)} ms",
        info=True,
    )

    v, mx = m("cancel", "p99_ms"), m("cancel", "max_ms")
    add(
        "cancellation observed ≤ 2 ms after cancel_job returns (p99)",
        None if v is None else v <= 2.0,
        f"p99 {fmt(v)} ms, max {fmt(mx)} ms",
    )

    v = m("retention", "rss_growth_mb")
    add(
        "RSS after 100,000 finished jobs within 20 MB of after 1,000",
        None if v is None else v <= 20.0,
        f"+{fmt(v)} MB",
    )

    api = sorted(
        (int(key.split("|")[0].split("@")[1]), key.split("|")[0])
        for key in summary["status"]
        if key.startswith("jobs_api@") and key.endswith("|ours")
    )
    if api:
        add(
            "GET /jobs?limit=50 latency (p50 / p99)",
            None,
            "; ".join(
                f"{size:,} jobs: {fmt(m(case, 'p50_ms'))} / {fmt(m(case, 'p99_ms'))} ms" for size, case in api
            ),
            info=True,
        )

    ours, q = m("import", "import_s"), m("import", "import_s", "quiv140")
    r = _ratio(ours, q)
    add(
        "import ≤ 0.6x quiv 1.4.0",
        None if r is None else r <= 0.6,
        f"{fmt(ours)} vs {fmt(q)} s ({fmt_ratio(r)})",
    )
    ours, q = m("import", "import_min_s"), m("import", "import_min_s", "quiv140")
    add(
        "import, fastest runs (less noise)",
        None,
        f"{fmt(ours)} vs {fmt(q)} s ({fmt_ratio(_ratio(ours, q))})",
        info=True,
    )
    return out


# --------------------------------------------------------------------------- markdown


@dataclass(frozen=True)
class Report:
    markdown: str
    docs_section: str
    terminal: str


def _cell(summary: dict[str, Any], fig: Fig, target: str) -> str:
    row = summary["rows"].get(f"{fig.case}|{target}|{fig.metric}")
    st = summary["status"].get(f"{fig.case}|{target}")
    if row is None or row["median"] is None:
        if st is None:
            return ""
        if st.get("error") or st.get("timeout"):
            return "error"
        if st.get("skipped"):
            return "n/a"
        return "—"
    text = fmt(row["median"])
    if row["n"] > 1:
        text += f" ({fmt(row['min'])} to {fmt(row['max'])})"
    return text


def _sizes(cases: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    parts = []
    for case in cases:
        if case["key"] not in keys:
            continue
        p = {k: v for k, v in case["params"].items() if k not in ("mode", "timeout", "phase", "settle_s")}
        desc = ", ".join(
            f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
            for k, v in p.items()
        )
        slow = [t for t in case["targets"] if t in SLOW]
        if case["slow_params"] and slow:
            sp = ", ".join(
                f"{k}={v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
                for k, v in case["slow_params"].items()
            )
            desc += f"; {'/'.join(slow)}: {sp}"
        if case.get("slow_max_reps") and slow:
            desc += f"; {'/'.join(slow)}: {case['slow_max_reps']} repetition(s)"
        if case.get("max_reps"):
            desc += f"; {case['max_reps']} repetition(s)"
        parts.append(f"`{case['key']}`: {desc} [{', '.join(case['targets'])}]")
    return "; ".join(parts)


def _table(summary: dict[str, Any], section: Section, all_targets: list[str]) -> list[str]:
    # Only the targets measured in this section get a column.
    targets = [t for t in all_targets if any(f"{c}|{t}" in summary["status"] for c in section.cases)]
    if not targets:
        return []
    peers = [t for t in targets if t != "ours"]
    show_ratio = "ours" in targets
    head = ["figure", *[PEER_LABEL[t] for t in targets]]
    if show_ratio:
        head += [f"ours / {PEER_LABEL[p]}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fig in section.figs:
        cells = [_cell(summary, fig, t) for t in targets]
        if not any(cells):
            continue
        arrow = {"lower": " (↓)", "higher": " (↑)"}.get(fig.better, "")
        row = [fig.label + arrow, *cells]
        if show_ratio:
            ours = med(summary, fig.case, "ours", fig.metric)
            row += [fmt_ratio(_ratio(ours, med(summary, fig.case, p, fig.metric))) for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _machine_line(meta: dict[str, Any]) -> str:
    return (
        f"{meta['date']} · {meta['nproc']} CPUs ({meta['cpu']}) · Python {meta['python']} · "
        f"{meta['platform']} · load average {meta['loadavg_start'][0]:.2f} at start, "
        f"{meta['loadavg_end'][0]:.2f} at end · ours from {meta.get('ours_source', 'working tree')} "
        f"at commit {meta['git']}"
    )


def render_markdown(
    meta: dict[str, Any],
    cases: list[dict[str, Any]],
    summary: dict[str, Any],
    records: list[dict[str, Any]],
    png_name: str | None = None,
) -> Report:
    targets = [t for t in ("ours", "quiv140", "aps", "aps-sqlite") if t in meta["targets"]]
    case_keys = [c["key"] for c in cases]
    body: list[str] = []
    body.append(f"Machine: {_machine_line(meta)}.")
    body.append("")
    body.append(
        f"Mode `{meta['mode']}`, {meta['reps']} repetition(s) interleaved; each cell is the median over "
        "repetitions with (min to max); ratios are ours ÷ peer on the medians "
        "(↑: higher is better, ↓: lower is better). "
        f"Run took {meta['run_s'] / 60:.1f} min."
    )
    body.append("")
    body.append(
        "Versions: " + "; ".join(f"{PEER_LABEL[t]} {meta['versions'].get(t, '?')}" for t in targets) + "."
    )
    body.append("")

    body.append("### Targets")
    body.append("")
    body.append("| | target | measured |")
    body.append("|---|---|---|")
    for chk in summary["targets_check"]:
        body.append(f"| **{chk['status']}** | {chk['target']} | {chk['figure']} |")
    body.append("")

    for section in _sections(case_keys):
        present = [k for k in section.cases if k in case_keys]
        if not present:
            continue
        body.append(f"### {section.title}")
        body.append("")
        body.append(section.what)
        body.append("")
        body.append(f"Sizes: {_sizes(cases, tuple(present))}.")
        body.append("")
        body += _table(summary, section, targets)
        body.append("")

    failures = [r for r in records if r.get("status") in ("error", "timeout")]
    if failures:
        body.append("### Failed measurements")
        body.append("")
        for r in failures:
            body.append(
                f"- `{r['case']}` {r['target']} rep {r['rep'] + 1}: {r['status']}: {r.get('error', '')}"
            )
        body.append("")
    section_text = "\n".join(body)

    md = "# quiv benchmark results\n\n" + section_text
    if png_name:
        md += (
            f"\n![Dispatch latency distribution, cost per job as tasks grow, idle CPU and RSS]({png_name})\n"
        )
    terminal = ["", "TARGETS (ours)"]
    for chk in summary["targets_check"]:
        terminal.append(f"  {chk['status']:4}  {chk['target']}: {chk['figure']}")
    return Report(markdown=md, docs_section=section_text, terminal="\n".join(terminal))


BEGIN = "<!-- bench:begin (generated by bench/run.py; edits between these markers are overwritten) -->"
END = "<!-- bench:end -->"


def update_docs(path: Path, meta: dict[str, Any], section: str) -> None:
    """Replace the generated block of ``docs/benchmarks.md`` with the latest results."""
    block = (
        f"{BEGIN}\n\n## Latest results ({meta['date']})\n\n{section}\n"
        "![Dispatch latency distribution, cost per job as the number of scheduled tasks grows, "
        "idle CPU and RSS]"
        "(img/benchmarks.png)\n\n"
        f"{END}"
    )
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN.split(" (")[0] in text and END in text:
        text = re.sub(
            re.escape(BEGIN.split(" (")[0]) + r".*?" + re.escape(END), lambda _m: block, text, flags=re.S
        )
    else:
        text = (text.rstrip() + "\n\n" if text else "# Benchmarks\n\n") + block + "\n"
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- comparing two runs

#: The two medians must differ by more than this fraction (of the before median) to be called a change.
COMPARE_TOLERANCE = 0.10


def _verdict(fig: Fig, before: dict[str, Any], after: dict[str, Any]) -> str:
    """``better`` / ``worse`` when each median lies outside the other run's min-to-max range and
    they differ by more than 10%; ``~`` otherwise (within the noise the two runs show)."""
    b, a = before["median"], after["median"]
    if b is None or a is None or fig.better not in ("lower", "higher"):
        return ""
    if b != 0 and abs(a - b) / abs(b) <= COMPARE_TOLERANCE:
        return "~"
    if before["min"] <= a <= before["max"] or after["min"] <= b <= after["max"]:
        return "~"
    return "better" if (a < b) == (fig.better == "lower") else "worse"


def _range_cell(row: dict[str, Any] | None) -> str:
    if row is None or row["median"] is None:
        return "—"
    text = fmt(row["median"])
    if row["n"] > 1:
        text += f" ({fmt(row['min'])} to {fmt(row['max'])})"
    return text


def render_comparison(before: dict[str, Any], after: dict[str, Any], targets: list[str]) -> str:
    """Markdown: each figure of ``targets`` in two result files side by side, then both targets checks.

    ``before`` and ``after`` are the JSON payloads ``bench/run.py`` writes.
    """
    rows_b: dict[str, Any] = before["summary"]
    rows_a: dict[str, Any] = after["summary"]
    keys = [c["key"] for c in before["cases"]]
    keys += [c["key"] for c in after["cases"] if c["key"] not in keys]

    def sizes(payload: dict[str, Any], case: str, target: str) -> dict[str, Any] | None:
        for c in payload["cases"]:
            if c["key"] == case:
                params = {**c["params"], **(c["slow_params"] if target in SLOW else {})}
                return {k: v for k, v in params.items() if k != "timeout"}
        return None

    def when(payload: dict[str, Any]) -> str:
        meta = payload["meta"]
        return f"{meta['date']}, {meta['mode']}, {meta['reps']} rep(s), ours at {meta['git']}"

    out = [
        f"Before: {when(before)}.",
        f"After: {when(after)}.",
        "",
        "Cells: median over repetitions (min to max). ratio = after ÷ before. verdict: better / worse when "
        "each median lies outside the other run's min-to-max range and they differ by more than "
        f"{COMPARE_TOLERANCE:.0%}, `~` otherwise (within the noise of the two runs).",
        "",
        "| scenario | metric | before | after | ratio | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for section in _sections(keys):
        for fig in section.figs:
            for target in targets:
                b = rows_b.get(f"{fig.case}|{target}|{fig.metric}")
                a = rows_a.get(f"{fig.case}|{target}|{fig.metric}")
                if b is None and a is None:
                    continue
                arrow = {"lower": " (↓)", "higher": " (↑)"}.get(fig.better, "")
                case = fig.case if len(targets) == 1 else f"{fig.case} ({PEER_LABEL[target]})"
                ratio = _ratio(a["median"] if a else None, b["median"] if b else None)
                verdict = _verdict(fig, b, a) if a is not None and b is not None else ""
                if a is not None and b is not None:
                    sb, sa = sizes(before, fig.case, target), sizes(after, fig.case, target)
                    if sb != sa:
                        verdict = f"sizes differ: {sb} → {sa}"
                out.append(
                    f"| {case} | {fig.label}{arrow} | {_range_cell(b)} | {_range_cell(a)} | "
                    f"{fmt_ratio(ratio)} | {verdict} |"
                )
    checks_b = {c["target"]: c for c in before.get("targets", [])}
    checks_a = {c["target"]: c for c in after.get("targets", [])}
    names = list(checks_b) + [n for n in checks_a if n not in checks_b]
    if names:
        out += ["", "| target (ours) | before | after |", "|---|---|---|"]
        for name in names:
            cells = []
            for checks in (checks_b, checks_a):
                c = checks.get(name)
                cells.append("—" if c is None else f"**{c['status']}** {c['figure']}")
            out.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(out)
