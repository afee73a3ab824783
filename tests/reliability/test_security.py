"""The private database: who can read it, whether its path can be hijacked, where pickles come from."""

from __future__ import annotations

import os
import pickle
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from quiv import DatabaseInitializationError, JobStatus
from quiv._store import sqlite as sqlite_store

from .conftest import RecordedFactory
from .invariants import check_invariants, shutdown_and_check

#: Set if a pickle planted in the database is ever loaded.
PLANTED = threading.Event()


def _planted_payload() -> tuple[str, ...]:
    PLANTED.set()
    return ("planted",)


class Planted:
    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _planted_payload, ()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``tempfile`` at a directory of the test's own, where an attacker's files can be planted."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _store_of(scheduler: Any) -> Any:
    persister = scheduler._writer
    assert persister is not None, "the database is created by add_task/start"
    return persister.store


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_directory_and_database_are_private_whatever_the_umask(
    umask: int, recorded: RecordedFactory, private_tmp: Path
) -> None:
    old = os.umask(umask)
    try:
        scheduler, clock, rec = recorded()
        scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": "t"})
    finally:
        os.umask(old)
    store = _store_of(scheduler)
    directory, path = Path(store.directory), Path(store.path)
    assert directory.parent == private_tmp
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert directory.stat().st_uid == os.getuid() == path.stat().st_uid
    assert path.is_file()
    assert not path.is_symlink()
    assert not directory.is_symlink()
    # Nothing else is created beside the database (the journal lives in memory).
    clock.advance(0)
    rec.wait_terminal(1)
    assert [p.name for p in directory.iterdir()] == [path.name]
    shutdown_and_check(rec)
    assert list(private_tmp.iterdir()) == []


def test_directory_names_are_unpredictable(recorded: RecordedFactory, private_tmp: Path) -> None:
    names = set()
    for n in range(20):
        scheduler, _clock, rec = recorded(start=False)
        scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": f"t{n}"})
        name = Path(_store_of(scheduler).directory).name
        assert name.startswith("quiv-"), name
        assert len(name) >= len("quiv-") + 8, name
        names.add(name)
        shutdown_and_check(rec)
    assert len(names) == 20


def test_a_planted_file_or_symlink_at_the_next_name_is_never_used(
    recorded: RecordedFactory, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker who guesses the next names plants a symlink and a directory there: both are skipped."""
    victim = private_tmp / "victim.txt"
    victim.write_text("precious")
    attacker_dir = private_tmp / "attacker"
    attacker_dir.mkdir()
    (private_tmp / "quiv-guessed1").symlink_to(attacker_dir)
    (private_tmp / "quiv-guessed2").mkdir()
    (private_tmp / "quiv-guessed2" / "quiv.sqlite3").symlink_to(victim)
    names = iter(["guessed1", "guessed2", "fresh0001"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    scheduler, clock, rec = recorded()
    scheduler.add_task("t", rec.handler(), interval=1, kwargs={"key": "t"})
    store = _store_of(scheduler)
    assert Path(store.directory).name == "quiv-fresh0001"
    assert not Path(store.directory).is_symlink()
    assert list(attacker_dir.iterdir()) == []
    assert victim.read_text() == "precious"
    clock.advance(0)
    rec.wait_terminal(1)
    check_invariants(rec)
    shutdown_and_check(rec)
    assert victim.read_text() == "precious"
    assert (private_tmp / "quiv-guessed1").is_symlink()
    assert (private_tmp / "quiv-guessed2").is_dir()


@pytest.mark.parametrize("planted", ["file", "symlink", "dangling-symlink"])
def test_database_file_is_created_exclusively(planted: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = tmp_path / "quiv.sqlite3"
    if planted == "file":
        path.write_text("attacker's")
    elif planted == "symlink":
        path.symlink_to(victim)
    else:
        path.symlink_to(tmp_path / "does-not-exist")
    with pytest.raises(FileExistsError):
        sqlite_store._create_private_file(str(path))
    assert victim.read_text() == "precious"
    assert not (tmp_path / "does-not-exist").exists()


def test_store_refuses_a_directory_with_a_planted_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if mkdtemp handed back a directory someone prepared, SQLite never opens their file."""
    prepared = tmp_path / "prepared"
    prepared.mkdir(mode=0o700)
    victim = tmp_path / "victim.sqlite3"
    victim.write_bytes(b"not yours")
    (prepared / "quiv.sqlite3").symlink_to(victim)
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **_: str(prepared))
    with pytest.raises(DatabaseInitializationError, match=r"quiv\.sqlite3|exists"):
        sqlite_store.SQLiteStore()
    assert victim.read_bytes() == b"not yours"


def test_arguments_are_never_read_back_from_the_database(recorded: RecordedFactory) -> None:
    """Rows planted in the database (a pickle that runs code when loaded) are never unpickled."""
    PLANTED.clear()
    scheduler, clock, rec = recorded(pool_size=2)
    received: list[tuple[Any, ...]] = []

    def handler(*args: Any) -> None:
        received.append(args)

    task_id = scheduler.add_task("t", handler, interval=5, delay=5, args=("original",))
    store = _store_of(scheduler)
    scheduler.get_all_jobs()  # flush: the row exists now
    bomb = pickle.dumps(Planted())
    with store._lock, store._engine.begin() as conn:
        row = dict(
            conn.execute(text("SELECT * FROM quiv_task WHERE id = :id"), {"id": task_id}).mappings().one()
        )
        conn.execute(
            text("UPDATE quiv_task SET args = :bomb, kwargs = :bomb WHERE id = :id"),
            {"bomb": bomb, "id": task_id},
        )
        row.update(id="planted", task_name="planted", args=bomb, kwargs=bomb, next_run_at=0)
        columns = ", ".join(row)
        conn.execute(
            text(f"INSERT INTO quiv_task ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row
        )
    clock.advance(5)
    rec.wait_terminal(1)
    assert received == [("original",)]
    assert scheduler.get_task(task_id).args == ("original",)
    assert [t.id for t in scheduler.get_all_tasks()] == [task_id], "a planted row became a task"
    assert [j.status for j in scheduler.get_all_jobs()] == [JobStatus.COMPLETED]
    assert not PLANTED.is_set(), "a pickle planted in the database was loaded"
    shutdown_and_check(rec)
    assert not PLANTED.is_set()
