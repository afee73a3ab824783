"""Paging and filtering jobs in SQL: the store's queries, ``get_all_jobs`` and ``count_jobs``.

The store tests write rows straight into a :class:`SQLiteStore` and compare
every read with the same selection made in Python. The query-plan tests run
``EXPLAIN QUERY PLAN`` on the very statements the store executes, and count
SQLite's virtual machine steps: deterministic evidence that a page costs its
size and not the size of the history, where a timing would be noisy.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from quiv import ConfigurationError, Event, InvalidArgumentError, JobStatus, Quiv, SchedulerStoppedError
from quiv._store.base import JobQuery, JobRow
from quiv._store.sqlite import SQLiteStore
from quiv.models import Job, Task
from quiv.testing import ManualClock

DEADLINE = 10.0
STATUSES = ("scheduled", "running", "completed", "cancelled", "failed")
TASKS = ("task-a", "task-b", "task-c")
T0 = 1_700_000_000.0


def job_row(number: int, task_id: str = "task-a", status: str = "completed", started: float = 0.0) -> JobRow:
    """A finished (or running) job row; ``started`` counts seconds from ``T0``."""
    ended = None if status in ("scheduled", "running") else T0 + started + 0.5
    return JobRow(
        id=f"job-{number:05d}",
        task_id=task_id,
        task_name=task_id.upper(),
        status=status,
        started_at=T0 + started,
        ended_at=ended,
        duration_seconds=None if ended is None else 0.5,
        error_message="boom" if status == "failed" else None,
        attempt=1,
        retry_of=None,
    )


def select(rows: Sequence[JobRow], query: JobQuery) -> list[JobRow]:
    """What ``list_jobs(query)`` must return, computed in Python."""
    chosen = [
        row
        for row in rows
        if (query.task_id is None or row.task_id == query.task_id)
        and (query.status is None or row.status == query.status)
    ]
    chosen.sort(key=lambda row: (row.started_at, row.id), reverse=query.newest_first)
    end = None if query.limit is None else query.offset + query.limit
    return chosen[query.offset : end]


def ids(rows: Sequence[JobRow | Job]) -> list[str]:
    return [row.id for row in rows]


@pytest.fixture
def store() -> Iterator[SQLiteStore]:
    store = SQLiteStore()
    yield store
    store.close()


@pytest.fixture
def history(store: SQLiteStore) -> list[JobRow]:
    """30 rows over three tasks and every status, with ties on the start time, written out of order."""
    rows = [job_row(n, TASKS[n % 3], STATUSES[n % 5], started=float(n // 4)) for n in range(30)]
    store.write([], [], rows[::-1])
    return rows


# ------------------------------------------------------------------ store
def test_the_default_query_reads_every_job_oldest_first(store: SQLiteStore, history: list[JobRow]) -> None:
    assert store.list_jobs(JobQuery()) == select(history, JobQuery())
    assert ids(store.list_jobs(JobQuery()))[:5] == [
        "job-00000",
        "job-00001",
        "job-00002",
        "job-00003",
        "job-00004",
    ]
    assert store.count_matching(JobQuery()) == 30


@pytest.mark.parametrize("task_id", [None, "task-a", "task-c", "no-such-task"])
@pytest.mark.parametrize("status", [None, "completed", "running", "failed"])
@pytest.mark.parametrize("newest_first", [False, True])
def test_each_filter_combination_reads_and_counts_like_python(
    store: SQLiteStore, history: list[JobRow], task_id: str | None, status: str | None, newest_first: bool
) -> None:
    everything = JobQuery(task_id=task_id, status=status, newest_first=newest_first)
    expected = select(history, everything)
    assert store.list_jobs(everything) == expected
    assert store.count_matching(everything) == len(expected)
    page = JobQuery(task_id=task_id, status=status, newest_first=newest_first, limit=2, offset=1)
    assert store.list_jobs(page) == expected[1:3]
    assert store.count_matching(page) == len(expected), "counting ignores the page and the order"


def test_ties_on_the_start_time_are_ordered_by_id_both_ways(store: SQLiteStore) -> None:
    rows = [job_row(n, started=5.0) for n in (3, 1, 4, 2)] + [
        job_row(0, started=4.0),
        job_row(9, started=6.0),
    ]
    store.write([], [], rows)
    oldest_first = ["job-00000", "job-00001", "job-00002", "job-00003", "job-00004", "job-00009"]
    assert ids(store.list_jobs(JobQuery())) == oldest_first
    assert ids(store.list_jobs(JobQuery(newest_first=True))) == oldest_first[::-1]
    assert ids(store.list_jobs(JobQuery(newest_first=True, limit=2, offset=1))) == ["job-00004", "job-00003"]


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("size", [1, 3, 7, 30])
def test_pages_cover_every_job_once(
    store: SQLiteStore, history: list[JobRow], newest_first: bool, size: int
) -> None:
    seen: list[JobRow] = []
    for offset in range(0, 31, size):
        page = store.list_jobs(JobQuery(newest_first=newest_first, limit=size, offset=offset))
        assert len(page) == min(size, 30 - offset)
        seen += page
    assert seen == select(history, JobQuery(newest_first=newest_first))


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [
        (0, 0, []),
        (None, 0, list(range(30))),
        (None, 28, [28, 29]),
        (100, 25, [25, 26, 27, 28, 29]),
        (5, 29, [29]),
        (5, 30, []),
        (5, 1000, []),
        (2**70, 0, list(range(30))),
        (None, 2**70, []),
        (2**70, 2**70, []),
    ],
)
def test_limit_and_offset_edges(
    store: SQLiteStore, history: list[JobRow], limit: int | None, offset: int, expected: list[int]
) -> None:
    """Past the end a page is empty; ints beyond SQLite's 64 bits mean "all" and "past the end"."""
    oldest_first = select(history, JobQuery())
    page = store.list_jobs(JobQuery(limit=limit, offset=offset))
    assert page == [oldest_first[i] for i in expected]


def test_rewritten_rows_move_between_filters(store: SQLiteStore) -> None:
    """A job is written running, then finished: the indexes follow the new status."""
    running = [job_row(n, status="running", started=float(n)) for n in range(4)]
    store.write([], [], running)
    assert store.count_matching(JobQuery(status="running")) == 4
    finished = [job_row(0, status="completed"), job_row(2, status="failed", started=2.0)]
    store.write([], [], finished)
    assert ids(store.list_jobs(JobQuery(status="running", newest_first=True))) == ["job-00003", "job-00001"]
    assert ids(store.list_jobs(JobQuery(status="failed"))) == ["job-00002"]
    assert store.count_matching(JobQuery(status="running")) == 2
    assert store.count_jobs() == {"running": 2, "completed": 1, "failed": 1}


def test_count_jobs_groups_by_status(store: SQLiteStore, history: list[JobRow]) -> None:
    assert store.count_jobs() == dict.fromkeys(STATUSES, 6)
    assert SQLiteStore.count_jobs(store) == {s: store.count_matching(JobQuery(status=s)) for s in STATUSES}


def test_an_empty_store_reads_nothing(store: SQLiteStore) -> None:
    assert store.list_jobs(JobQuery(newest_first=True, limit=50)) == []
    assert store.count_matching(JobQuery(task_id="task-a", status="failed")) == 0
    assert store.count_jobs() == {}


_rows = st.lists(
    st.builds(
        lambda n, task, status, started: job_row(n, task, status, float(started)),
        st.integers(0, 60),
        st.sampled_from(TASKS),
        st.sampled_from(STATUSES),
        st.integers(0, 5),  # few distinct start times: many ties
    ),
    max_size=40,
)
_queries = st.builds(
    JobQuery,
    task_id=st.none() | st.sampled_from(TASKS),
    status=st.none() | st.sampled_from(STATUSES),
    newest_first=st.booleans(),
    limit=st.none() | st.integers(0, 12),
    offset=st.integers(0, 45),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_rows, then=_rows, queries=st.lists(_queries, min_size=1, max_size=5))
def test_any_history_any_query_matches_python(
    first: list[JobRow], then: list[JobRow], queries: list[JobQuery]
) -> None:
    """Rows written in two batches (the second rewrites some of the first), then read back."""
    final = {row.id: row for row in first + then}
    store = SQLiteStore()
    try:
        store.write([], [], list({row.id: row for row in first}.values()))
        store.write([], [], list({row.id: row for row in then}.values()))
        for query in queries:
            assert store.list_jobs(query) == select(list(final.values()), query)
            assert store.count_matching(query) == len(
                select(list(final.values()), JobQuery(query.task_id, query.status))
            )
    finally:
        store.close()


# ------------------------------------------------------------- query plans
def statements_of(store: SQLiteStore, read: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SQL statements (and their parameters) that ``read`` makes the store execute."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(store._engine, "before_cursor_execute", record)
    try:
        read()
    finally:
        event.remove(store._engine, "before_cursor_execute", record)
    assert seen, "the read executed no statement"
    return seen


def query_plan(store: SQLiteStore, statement: str, parameters: Any) -> list[str]:
    with store._engine.connect() as conn:
        return [str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]


def fill(store: SQLiteStore, count: int) -> None:
    """``count`` jobs of the three tasks, mostly completed, one every second."""
    rows = [
        job_row(n, TASKS[n % 3], "failed" if n % 10 == 0 else "completed", float(n)) for n in range(count)
    ]
    store.write([], [], rows)


PAGE_READS: dict[str, tuple[JobQuery, str]] = {
    "newest 50 of all": (JobQuery(newest_first=True, limit=50), "ix_quiv_job_started"),
    "newest 50 with a status": (
        JobQuery(status="failed", newest_first=True, limit=50),
        "ix_quiv_job_status_started",
    ),
    "newest 50 of a task": (
        JobQuery(task_id="task-b", newest_first=True, limit=50),
        "ix_quiv_job_task_started",
    ),
    "oldest 50 of all": (JobQuery(limit=50), "ix_quiv_job_started"),
    "a deep page": (JobQuery(newest_first=True, limit=50, offset=500), "ix_quiv_job_started"),
    "the whole history": (JobQuery(), "ix_quiv_job_started"),
}
COUNTS: dict[str, tuple[JobQuery, str]] = {
    "count with a status": (JobQuery(status="failed"), "COVERING INDEX ix_quiv_job_status_started"),
    "count of a task": (JobQuery(task_id="task-b"), "COVERING INDEX ix_quiv_job_task_started"),
    "count of all": (JobQuery(), "COVERING INDEX"),
}


def assert_indexed(plan: list[str], index: str) -> None:
    assert plan, "no plan"
    assert any(index in line for line in plan), f"{index} unused: {plan}"
    for line in plan:
        assert "TEMP B-TREE" not in line, f"the rows are sorted in a temporary b-tree: {plan}"
        assert "INDEX" in line, f"a table scan without an index: {plan}"


@pytest.mark.parametrize("name", list(PAGE_READS))
def test_page_reads_walk_an_index_in_order(store: SQLiteStore, name: str) -> None:
    fill(store, 2000)
    query, index = PAGE_READS[name]
    ((statement, parameters),) = statements_of(store, lambda: store.list_jobs(query))
    assert_indexed(query_plan(store, statement, parameters), index)


@pytest.mark.parametrize("name", list(COUNTS))
def test_counts_read_a_covering_index(store: SQLiteStore, name: str) -> None:
    fill(store, 2000)
    query, index = COUNTS[name]
    ((statement, parameters),) = statements_of(store, lambda: store.count_matching(query))
    assert_indexed(query_plan(store, statement, parameters), index)


def test_both_filters_use_an_index_and_no_sort(store: SQLiteStore) -> None:
    """With a task and a status, one index orders the page and the other filter is checked per row."""
    fill(store, 2000)
    query = JobQuery(task_id="task-b", status="failed", newest_first=True, limit=50)
    for read in (lambda: store.list_jobs(query), lambda: store.count_matching(query)):
        ((statement, parameters),) = statements_of(store, read)
        assert_indexed(query_plan(store, statement, parameters), "ix_quiv_job_")


def vm_steps(store: SQLiteStore, query: JobQuery) -> int:
    """How many SQLite virtual machine instructions reading the page of ``query`` takes."""
    ((statement, parameters),) = statements_of(store, lambda: store.list_jobs(query))
    steps = 0

    def step() -> int:
        nonlocal steps
        steps += 1
        return 0

    raw = store._engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert connection is not None
        connection.set_progress_handler(step, 1)
        try:
            rows = connection.execute(statement, parameters).fetchall()
        finally:
            connection.set_progress_handler(None, 1)
    finally:
        raw.close()
    assert len(rows) == query.limit
    return steps


@pytest.mark.parametrize(
    "name", ["newest 50 of all", "newest 50 with a status", "newest 50 of a task", "oldest 50 of all"]
)
def test_a_page_costs_the_same_with_100_times_the_history(name: str) -> None:
    query, _ = PAGE_READS[name]
    costs = []
    for count in (1_000, 100_000):
        store = SQLiteStore()
        try:
            fill(store, count)
            costs.append(vm_steps(store, query))
        finally:
            store.close()
    small, large = costs
    assert large <= small * 1.1, f"{name}: {small} steps with 1,000 jobs, {large} with 100,000"


# -------------------------------------------------------------- scheduler
def _noop() -> None:
    pass


def _fail() -> None:
    raise ValueError("boom")


@pytest.fixture
def jobs_made(
    make_quiv: Callable[..., Quiv], manual_clock: ManualClock
) -> Iterator[tuple[Quiv, dict[str, Any]]]:
    """Five finished jobs of two tasks, one second apart, and a sixth still running."""
    scheduler = make_quiv(clock=manual_clock)
    ended: queue.Queue[Job] = queue.Queue()

    def on_end(_event: Event, _task: Task, job: Job) -> None:
        ended.put(job)

    scheduler.add_listener(Event.JOB_COMPLETED, on_end)
    scheduler.add_listener(Event.JOB_FAILED, on_end)
    ok = scheduler.add_task("ok", _noop, interval=3600, delay=3600)
    bad = scheduler.add_task("bad", _fail, interval=3600, delay=3600)
    started, release = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        release.wait(DEADLINE)

    slow = scheduler.add_task("slow", block, interval=3600, delay=3600)
    scheduler.start()
    order: list[str] = []
    for task_id in (ok, bad, ok, bad, ok):
        scheduler.run_task_immediately(task_id)
        order.append(ended.get(timeout=DEADLINE).id)
        manual_clock.advance(1)
    scheduler.run_task_immediately(slow)
    assert started.wait(DEADLINE)
    running = [job.id for job in scheduler.get_all_jobs(status="running")]
    assert len(running) == 1
    yield scheduler, {"ok": ok, "bad": bad, "slow": slow, "order": [*order, *running]}
    release.set()


def test_get_all_jobs_keeps_its_old_answers(jobs_made: tuple[Quiv, dict[str, Any]]) -> None:
    scheduler, made = jobs_made
    order = made["order"]
    assert ids(scheduler.get_all_jobs()) == order
    assert ids(scheduler.get_all_jobs("completed")) == [order[0], order[2], order[4]]
    assert ids(scheduler.get_all_jobs(JobStatus.RUNNING)) == [order[5]]


def test_get_all_jobs_filters_orders_and_pages(jobs_made: tuple[Quiv, dict[str, Any]]) -> None:
    scheduler, made = jobs_made
    order = made["order"]
    assert ids(scheduler.get_all_jobs(newest_first=True)) == order[::-1]
    assert ids(scheduler.get_all_jobs(task_id=made["ok"])) == [order[0], order[2], order[4]]
    assert ids(scheduler.get_all_jobs("failed", task_id=made["bad"], newest_first=True)) == [
        order[3],
        order[1],
    ]
    assert ids(scheduler.get_all_jobs("failed", task_id=made["ok"])) == []
    assert ids(scheduler.get_all_jobs(limit=2)) == order[:2]
    assert ids(scheduler.get_all_jobs(limit=2, offset=3, newest_first=True)) == [order[2], order[1]]
    assert ids(scheduler.get_all_jobs(offset=4)) == order[4:]
    assert scheduler.get_all_jobs(limit=0) == []
    assert scheduler.get_all_jobs(offset=6) == []
    (running,) = scheduler.get_all_jobs(task_id=made["slow"], limit=5)
    assert running.status is JobStatus.RUNNING
    assert running.ended_at is None


def test_count_jobs_counts_with_the_same_filters(jobs_made: tuple[Quiv, dict[str, Any]]) -> None:
    scheduler, made = jobs_made
    assert scheduler.count_jobs() == 6
    assert scheduler.count_jobs("completed") == 3
    assert scheduler.count_jobs(JobStatus.FAILED) == 2
    assert scheduler.count_jobs("running") == 1
    assert scheduler.count_jobs(task_id=made["ok"]) == 3
    assert scheduler.count_jobs("failed", task_id=made["bad"]) == 2
    assert scheduler.count_jobs("failed", task_id=made["ok"]) == 0
    assert scheduler.count_jobs(task_id="no-such-task") == 0
    assert scheduler.count_jobs() == sum(scheduler.stats().jobs_by_status.values())


def test_before_the_first_job_and_after_shutdown(make_quiv: Callable[..., Quiv]) -> None:
    scheduler = make_quiv()
    assert scheduler.get_all_jobs(limit=5, newest_first=True) == []
    assert scheduler.count_jobs("failed", task_id="x") == 0
    scheduler.shutdown()
    with pytest.raises(SchedulerStoppedError):
        scheduler.get_all_jobs(limit=5)
    with pytest.raises(SchedulerStoppedError):
        scheduler.count_jobs()


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        ({"limit": -1}, ConfigurationError, "limit must be >= 0, got -1"),
        ({"limit": 1.5}, InvalidArgumentError, "limit must be an int >= 0 or None, got float 1.5"),
        ({"limit": True}, InvalidArgumentError, "limit must be an int"),
        ({"limit": "10"}, InvalidArgumentError, "got str '10'"),
        ({"offset": -3}, ConfigurationError, "offset must be >= 0, got -3"),
        ({"offset": None}, InvalidArgumentError, "offset must be an int >= 0, got NoneType None"),
        ({"offset": 2.0}, InvalidArgumentError, "offset must be an int"),
        ({"newest_first": 1}, InvalidArgumentError, "newest_first must be a bool, got 1"),
        ({"newest_first": None}, InvalidArgumentError, "newest_first must be a bool"),
        ({"task_id": 3}, InvalidArgumentError, "task_id must be a str or None, got int 3"),
        ({"status": "done"}, ConfigurationError, "unknown job status 'done'"),
    ],
)
def test_get_all_jobs_rejects_bad_arguments(
    make_quiv: Callable[..., Quiv], arguments: dict[str, Any], error: type[Exception], words: str
) -> None:
    scheduler = make_quiv()
    with pytest.raises(error) as caught:
        scheduler.get_all_jobs(**arguments)
    assert type(caught.value) is error, (
        "a bad value is a ConfigurationError, a bad type an InvalidArgumentError"
    )
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"task_id": b"task"}, InvalidArgumentError),
        ({"status": "finished"}, ConfigurationError),
        ({"status": 3}, ConfigurationError),
    ],
)
def test_count_jobs_rejects_bad_arguments(
    make_quiv: Callable[..., Quiv], arguments: dict[str, Any], error: type[Exception]
) -> None:
    scheduler = make_quiv()
    with pytest.raises(error) as caught:
        scheduler.count_jobs(**arguments)
    assert type(caught.value) is error
