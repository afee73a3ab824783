"""PostgreSQL, several schedulers in this process: tasks are adopted by name, the schema is shared.

Each ``Quiv`` on the same database is a worker of its own (its own
``worker_id``), which is all the cross-process behaviour needs: the tables
are the only thing the instances share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from quiv import ConfigurationError, Event, Quiv, TaskStatus
from quiv._durable.schema import SCHEMA_VERSION

from .durable_support import DEADLINE, Events, shutdown_together, sql, workers


@pytest.fixture(autouse=True)
def _stop_together(pg_url: str, make_quiv: Callable[..., Quiv]) -> Iterator[None]:
    """Shut the test's schedulers down in parallel, before its database is dropped."""
    yield
    shutdown_together()


def noop() -> None:
    """A handler that does nothing."""


def other() -> None:
    """Another handler: the definition hash covers options, not the function."""


def test_one_name_is_one_task_in_every_instance(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """The second instance declaring a name gets the first one's id and fires no TASK_ADDED."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2)
    events = Events(a, b)
    first = a.add_task("report", noop, interval=60, delay=60)
    second = b.add_task("report", noop, interval=60, delay=60)
    assert first == second
    assert events.count(Event.TASK_ADDED, source=0) == 1
    assert events.count(Event.TASK_ADDED, source=1) == 0
    assert events.count(Event.TASK_UPDATED) == 0
    assert [t.id for t in b.get_all_tasks()] == [first]
    assert a.get_task(first) == b.get_task(first)


def test_a_changed_interval_updates_the_row_and_fires_task_updated(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Declaring the name with a new interval keeps the id, stores the interval, starts a new schedule."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2)
    events = Events(a, b)
    task_id = a.add_task("report", noop, interval=60, delay=60)
    before = a.get_task(task_id)
    assert b.add_task("report", noop, interval=600, delay=600) == task_id
    ((task, _none),) = events.wait_count(Event.TASK_UPDATED, 1, source=1)
    assert task.id == task_id
    assert task.interval_seconds == 600
    assert events.count(Event.TASK_UPDATED, source=0) == 0
    after = a.get_task(task_id)
    assert after.interval_seconds == 600
    assert before.next_run_at is not None
    assert after.next_run_at is not None
    assert (after.next_run_at - before.next_run_at).total_seconds() > 500
    assert sql(pg_conninfo, "SELECT count(*) FROM quiv_tasks") == [(1,)]


def test_changed_arguments_update_the_row_but_keep_the_schedule(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """New arguments are a new definition (TASK_UPDATED) but not a new schedule: next_run_at stays."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2)
    events = Events(b)
    task_id = a.add_task("greet", print, interval=60, delay=60, args=("hello",))
    before = a.get_task(task_id)
    assert b.add_task("greet", print, interval=60, delay=60, args=("bye",)) == task_id
    events.wait_count(Event.TASK_UPDATED, 1)
    after = b.get_task(task_id)
    assert after.args == ("bye",)
    assert after.next_run_at == before.next_run_at


def test_a_restart_with_the_same_definition_changes_nothing(
    pg_url: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Same name, same options, another function object: same id and next run, no task event at all."""
    ((first, _),) = workers(make_quiv, pg_url, 1)
    task_id = first.add_task("report", noop, interval=60, delay=60)
    first.start()
    before = first.get_task(task_id)
    first.shutdown()

    ((second, _),) = workers(make_quiv, pg_url, 1)
    events = Events(second)
    assert second.add_task("report", other, interval=60, delay=60) == task_id
    second.start()
    after = second.get_task(task_id)
    assert after.next_run_at == before.next_run_at
    assert [e for _i, e, _t, _j in events.seen if e.name.startswith("TASK_")] == []


def test_a_duplicate_name_in_one_scheduler_is_refused(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """The name is the identity: a second task of that name in the same scheduler is an error."""
    ((a, _),) = workers(make_quiv, pg_url, 1)
    a.add_task("report", noop, interval=60)
    with pytest.raises(ConfigurationError, match="report"):
        a.add_task("report", other, interval=30)
    a.start()
    with pytest.raises(ConfigurationError, match="report"):
        a.add_task("report", noop, interval=60)
    rows = sql(pg_conninfo, "SELECT interval_seconds FROM quiv_tasks")
    assert rows == [(60.0,)]


def test_a_removed_name_can_be_added_again(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """After remove_task, the name is free again in the scheduler that removed it."""
    ((a, _),) = workers(make_quiv, pg_url, 1)
    old = a.add_task("report", noop, interval=60, delay=60)
    a.start()
    a.remove_task(old)
    new = a.add_task("report", noop, interval=30, delay=30)
    assert new != old
    assert [t.id for t in a.get_all_tasks()] == [new]


def test_update_task_refuses_what_the_code_owns(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """``func``, ``task_name`` and ``progress_callback`` cannot change at run time; nothing else changes."""
    ((a, _),) = workers(make_quiv, pg_url, 1)
    task_id = a.add_task("report", noop, interval=60, delay=60)
    a.start()
    changes: list[dict[str, object]] = [
        {"func": other},
        {"task_name": "renamed"},
        {"progress_callback": print},
    ]
    for change in changes:
        with pytest.raises(ConfigurationError, match=next(iter(change))):
            a.update_task(task_id, interval=5, **change)  # type: ignore[arg-type]
    task = a.get_task(task_id)
    assert (task.task_name, task.interval_seconds) == ("report", 60)


def test_a_newer_schema_is_refused(pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]) -> None:
    """Tables written by a newer quiv: start() and add_task() refuse, naming both versions."""
    ((a, _),) = workers(make_quiv, pg_url, 1)
    a.start()
    a.shutdown()
    newer = SCHEMA_VERSION + 1
    sql(pg_conninfo, "UPDATE quiv_meta SET value = %s WHERE key = 'schema_version'", (str(newer),))

    ((b, _),) = workers(make_quiv, pg_url, 1)
    with pytest.raises(ConfigurationError, match="newer") as caught:
        b.start()
    assert f"version {newer}" in str(caught.value)
    assert f"({SCHEMA_VERSION})" in str(caught.value)
    ((c, _),) = workers(make_quiv, pg_url, 1)
    with pytest.raises(ConfigurationError, match="newer"):
        c.add_task("report", noop, interval=60)
    assert sql(pg_conninfo, "SELECT count(*) FROM quiv_workers") == [(0,)]


def test_four_instances_starting_at_once_create_the_schema_once(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Four schedulers start together on an empty database: no error, one schema_version row."""
    instances = [q for q, _ in workers(make_quiv, pg_url, 4)]
    barrier = threading.Barrier(len(instances))
    errors: list[BaseException] = []

    def start_now(scheduler: Quiv) -> None:
        try:
            barrier.wait(DEADLINE)
            scheduler.start()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start_now, args=(q,)) for q in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    assert errors == []
    assert all(q.running for q in instances)
    assert sql(pg_conninfo, "SELECT key, value FROM quiv_meta") == [("schema_version", str(SCHEMA_VERSION))]
    assert sql(pg_conninfo, "SELECT count(*) FROM quiv_workers") == [(4,)]


def test_four_instances_declaring_one_name_at_once_make_one_task(
    pg_url: str, pg_conninfo: str, make_quiv: Callable[..., Quiv]
) -> None:
    """Four first declarations of one name race on an empty database: one row, one id, one TASK_ADDED."""
    instances = [q for q, _ in workers(make_quiv, pg_url, 4)]
    events = Events(*instances)
    barrier = threading.Barrier(len(instances))
    ids: list[str] = []
    errors: list[BaseException] = []

    def declare(scheduler: Quiv) -> None:
        try:
            barrier.wait(DEADLINE)
            ids.append(scheduler.add_task("shared", noop, interval=60, delay=60))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=declare, args=(q,)) for q in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    assert errors == []
    assert len(set(ids)) == 1
    assert len(ids) == 4
    assert events.count(Event.TASK_ADDED) == 1
    assert events.count(Event.TASK_UPDATED) == 0
    assert sql(pg_conninfo, "SELECT count(*) FROM quiv_tasks") == [(1,)]


def test_a_pause_survives_a_restart_of_every_instance(pg_url: str, make_quiv: Callable[..., Quiv]) -> None:
    """Paused by one instance, the task is still paused when a new instance declares it again."""
    (a, _), (b, _) = workers(make_quiv, pg_url, 2)
    task_id = a.add_task("report", noop, interval=60, delay=60)
    b.add_task("report", noop, interval=60, delay=60)
    a.start()
    b.start()
    b.pause_task(task_id)
    a.shutdown()
    b.shutdown()
    ((c, _),) = workers(make_quiv, pg_url, 1)
    assert c.add_task("report", noop, interval=60, delay=60) == task_id
    c.start()
    assert c.get_task(task_id).status is TaskStatus.PAUSED
