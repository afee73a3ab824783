"""The database drops every connection, or refuses them for a while: the processes ride it out."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from .conftest import admin_execute
from .pgproxy import LostCommitProxy
from .procs import Cluster, audit_duplicates, slot_holes, unexplained_misses, wait_until

TASKS = [f"t{n}" for n in range(6)]
OUTAGE_STARTS = "quiv keeps retrying"
OUTAGE_ENDS = re.compile(r"quiv reached its database again after [0-9.]+ s")


def _terminate_all(database: str) -> int:
    """End every session on the test's database (quiv's pools, its LISTEN connections, the handlers')."""
    import psycopg

    from .conftest import _conninfo, server_url

    with psycopg.connect(_conninfo(server_url()), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def _outage_lines(log: str) -> tuple[int, int]:
    """How many times a process's log says an outage began, and how many times one ended."""
    return log.count(OUTAGE_STARTS), len(OUTAGE_ENDS.findall(log))


def _completed_after(cluster: Cluster, after: float) -> dict[str, int]:
    counts = dict.fromkeys(TASKS, 0)
    for job in cluster.jobs():
        if job["status"] == "completed" and job["started_at"] > after:
            counts[job["task_name"]] += 1
    return counts


@pytest.mark.slow
def test_connections_killed_and_refused(cluster: Cluster, pg_url: str) -> None:
    """Two outages while three processes run six one-second tasks.

    First every session on the database is terminated once (they reconnect
    at once); then the database refuses connections for three seconds while
    its sessions are terminated again. The processes carry on afterwards
    under the same worker ids, no slot runs twice, every slot between a
    task's first and last run either ran or is recorded ``missed`` (slots
    due during the outage may run late), and each process logs each outage
    at most once when it starts and once when it ends (the second outage,
    longer than a heartbeat, is noticed by every process).
    """
    database = make_url(pg_url).database
    assert database
    procs = _three_processes(cluster)

    cut = cluster.now()
    assert _terminate_all(database) >= len(procs), "each process had sessions to lose"
    wait_until(
        lambda: min(_completed_after(cluster, cut).values()) >= 2, 20.0, "every task to run after the cut"
    )
    first = {p.label: _outage_lines(p.stderr()) for p in procs}
    for label, (starts, ends) in first.items():
        assert starts <= 1, f"{label} logged the first outage {starts} times"
        assert ends == starts, f"{label}: {starts} outage starts, {ends} ends after the first outage"

    admin_execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    try:
        _terminate_all(database)
        wait_until(
            lambda: all(_outage_lines(p.stderr())[0] > first[p.label][0] for p in procs),
            10.0,
            "every process to notice that the database is gone",
        )
        time.sleep(3.0)  # the outage itself: the database stays away this long
    finally:
        admin_execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    back = cluster.now()
    wait_until(
        lambda: all(_outage_lines(p.stderr())[1] > first[p.label][1] for p in procs),
        15.0,
        "every process to log that its database is back",
    )
    wait_until(
        lambda: min(_completed_after(cluster, back).values()) >= 2, 20.0, "every task to run after the outage"
    )
    beats = dict(cluster.rows("SELECT id, heartbeat_at FROM quiv_workers"))
    assert set(beats) == {p.worker for p in procs}, "the same workers, none presumed dead"
    assert all(at > back for at in beats.values()), "every process beats again"

    _stop_and_check(cluster, procs, outages=first)


#: A command that restarts the test server (run as given, split like a shell would). The test that
#: uses it restarts the whole server, so it runs only when asked: CI sets it when it is root.
RESTART = os.environ.get("QUIV_TEST_RESTART_POSTGRES", "").strip()


@pytest.mark.slow
@pytest.mark.skipif(
    not RESTART,
    reason="restarts the PostgreSQL server: set QUIV_TEST_RESTART_POSTGRES to the command that does it "
    "(for example 'pg_ctlcluster 15 main restart') to run it",
)
def test_a_server_restart(cluster: Cluster, pg_url: str) -> None:
    """The PostgreSQL server restarts while three processes run six one-second tasks.

    Every connection is gone at once, the LISTEN ones included, and the
    server is back a moment later. The processes carry on under the same
    worker ids; no slot runs twice; every slot between a task's first and
    last run ran or is recorded ``missed``; and each process logs the outage
    once when it starts and once when it ends (its LISTEN connection is lost
    in any case; the pool's pre-ping replaces the other dead connections).
    """
    procs = _three_processes(cluster)

    subprocess.run(shlex.split(RESTART), check=True, timeout=120, capture_output=True)
    back = cluster.now()
    wait_until(
        lambda: min(_completed_after(cluster, back).values()) >= 2,
        30.0,
        "every task to run after the restart",
    )
    wait_until(
        lambda: all(_outage_lines(p.stderr())[1] == _outage_lines(p.stderr())[0] for p in procs),
        15.0,
        "every process that logged the outage to log that its database is back",
    )
    beats = dict(cluster.rows("SELECT id, heartbeat_at FROM quiv_workers"))
    assert set(beats) == {p.worker for p in procs}, "the same workers, none presumed dead"
    assert all(at > back for at in beats.values()), "every process beats again"
    for proc in procs:  # the LISTEN connection, at least, was lost: every process saw the outage
        assert _outage_lines(proc.stderr())[0] == 1, proc.stderr()
    _stop_and_check(cluster, procs, outages=1)


def test_a_claim_whose_commit_answer_is_lost(cluster: Cluster, pg_url: str) -> None:
    """The server commits a claim, but the answer to its COMMIT never reaches the process.

    A proxy between the processes and PostgreSQL drops the ``CommandComplete``
    of one claim transaction's COMMIT and closes that connection. The job
    row exists, ``running`` under the claiming worker, which believes the
    claim failed and whose heartbeat keeps the sweep away. The task must not
    stay blocked: once the database answers again the claiming process ends
    that job as ``abandoned`` (firing ``JOB_FAILED``), and the task's later
    slots run again, each once.
    """
    url = make_url(pg_url)
    proxy = LostCommitProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        cluster.url = url.set(
            host="127.0.0.1", port=proxy.port, query={"sslmode": "disable", "gssencmode": "disable"}
        ).render_as_string(hide_password=False)
        settings = {"heartbeat_seconds": 0.5, "dead_after_seconds": 2.0, "poll_seconds": 1.0}
        config = {"tasks": [{"name": "tick", "interval": 1.0, "fixed_interval": True}], "quiv": settings}
        cluster.start({"p0": config, "p1": config})
        wait_until(lambda: len(_runs(cluster, 0.0)) >= 2, 20.0, "two runs of tick")

        proxy.arm(b"INSERT INTO quiv_jobs", b"RETURNING")
        assert proxy.cut.wait(10.0), "no claim went through the proxy"
        cut = cluster.now()
        phantom = wait_until(lambda: cluster.running("tick"), 5.0, "the claimed job's row")
        assert not cluster.audit("tick") or phantom["id"] not in {r[2] for r in cluster.audit("tick")}

        ended = wait_until(lambda: cluster.ended(phantom["id"]), 10.0, "the job nobody runs to be ended")
        assert ended["status"] == "abandoned", ended
        assert ended["ended_at"] - cut < 5.0, "ended as soon as the claimer reached the database again"
        claimer = cluster.by_worker(phantom["worker"])
        wait_until(
            lambda: [e for e in claimer.events("job_failed") if e["job"] == phantom["id"]],
            5.0,
            "JOB_FAILED for it in the process that claimed it",
        )
        wait_until(lambda: len(_runs(cluster, cut)) >= 2, 10.0, "tick to run again after the lost answer")
        cluster.stop_all()
        assert not audit_duplicates(cluster.audit())
    finally:
        proxy.close()


def _three_processes(cluster: Cluster) -> list[Any]:
    """Three processes running the six one-second tasks, returned once every task ran twice."""
    settings: dict[str, Any] = {"heartbeat_seconds": 1.0, "dead_after_seconds": 10.0, "poll_seconds": 1.0}
    config = {
        "tasks": [{"name": name, "interval": 1.0, "fixed_interval": True} for name in TASKS],
        "quiv": settings,
    }
    procs = cluster.start({"p0": config, "p1": config, "p2": config})
    wait_until(lambda: min(_completed_after(cluster, 0.0).values()) >= 2, 20.0, "every task to run twice")
    return procs


def _stop_and_check(cluster: Cluster, procs: list[Any], outages: dict[str, tuple[int, int]] | int) -> None:
    """Pause everything, stop the processes, then check the logs, the audit and every task's slots.

    ``outages``: each process's outage lines before the last outage (it logs
    that one once), or how many outage starts a process may log at most.
    """
    procs[0].send("pause_all")
    wait_until(
        lambda: cluster.rows("SELECT count(*) FROM quiv_jobs WHERE status = 'running'")[0][0] == 0,
        15.0,
        "the running jobs to end after pausing every task",
    )
    cluster.stop_all()

    for proc in procs:
        log = proc.stderr()
        starts, ends = _outage_lines(log)
        if isinstance(outages, int):
            assert starts <= outages, f"{proc.label} logged {starts} outage starts:\n{log}"
        else:
            before = outages[proc.label][0]
            assert starts == before + 1, (
                f"{proc.label} logged the second outage {starts - before} times:\n{log}"
            )
        assert ends == starts, f"{proc.label} logged {starts} outage starts but {ends} ends:\n{log}"
        assert "Traceback" not in log, f"{proc.label} logged an exception:\n{log}"

    audit = cluster.audit()
    assert not audit_duplicates(audit), audit_duplicates(audit)
    jobs = {job["id"]: job for job in cluster.jobs()}
    for task, slot, job_id, _worker, _pid, _at in audit:
        assert jobs[job_id]["status"] == "completed", (task, slot, jobs[job_id])
    for name in TASKS:
        rows = [j for j in jobs.values() if j["task_name"] == name]
        rows.sort(key=lambda j: j["scheduled_for"])
        assert {j["status"] for j in rows} <= {"completed", "missed"}, rows
        slots = [j["scheduled_for"] for j in rows]
        holes = slot_holes(slots)
        assert not holes, f"task {name}: slots neither run nor recorded missed between {holes}"
        unexplained = unexplained_misses(rows)
        assert not unexplained, f"task {name}: slots missed for no reason the history shows: {unexplained}"
        ran = {j["id"] for j in rows if j["status"] == "completed"}
        assert ran == {row[2] for row in audit if row[0] == name}, "every completed job left one audit row"


def _runs(cluster: Cluster, after: float) -> list[dict[str, Any]]:
    return [j for j in cluster.jobs("tick") if j["status"] == "completed" and j["started_at"] > after]
