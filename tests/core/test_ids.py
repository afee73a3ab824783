"""Ids are random version-4 UUIDs, unique across threads and across a fork."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from quiv._core.ids import new_id


def test_ids_are_version_4_uuids_in_canonical_form() -> None:
    for _ in range(1000):
        text = new_id()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_ids_from_many_threads_never_repeat() -> None:
    seen: list[list[str]] = []

    def make() -> None:
        seen.append([new_id() for _ in range(5000)])

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for batch in seen for i in batch]
    assert len(set(every)) == len(every) == 40_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads running
def test_a_forked_child_does_not_reuse_the_parents_random_bytes() -> None:
    new_id()  # the parent now holds a batch of unused random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, " ".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    child = set(os.read(read, 4096).decode().split())
    os.close(read)
    os.waitpid(pid, 0)
    parent = {new_id() for _ in range(10)}
    assert len(child) == 10
    assert not child & parent
