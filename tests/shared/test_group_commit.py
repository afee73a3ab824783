"""Group commit (``quiv._durable.batching``): writes that arrive together share one call.

The writer is a plain function that records its batches; a gate holds the
first call open so that other threads queue behind it, which is the case
batching is for. Every wait has a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from quiv._durable.batching import GroupCommit

DEADLINE = 10.0


class Writer:
    """Records each batch; the first call waits on ``gate`` when one is set."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: Sequence[int]) -> list[str]:
        self.batches.append(list(items))
        gate, self.gate = self.gate, None
        if gate is not None:
            self.entered.set()
            assert gate.wait(DEADLINE)
        if self.fail_on is not None and self.fail_on in items:
            raise ConnectionError(f"write of {list(items)} failed")
        return [f"wrote {i}" for i in items]


def queued(group: GroupCommit[int, str], count: int) -> None:
    """Wait (with a deadline) until ``count`` submissions wait behind the batch being written."""
    deadline = time.monotonic() + DEADLINE
    while len(group._queue) < count:
        assert time.monotonic() < deadline, f"{len(group._queue)} of {count} queued"
        time.sleep(0.001)


def submit_behind_a_write(
    group: GroupCommit[int, str], writer: Writer, items: Sequence[int]
) -> dict[int, object]:
    """Submit ``items`` from one thread each while the first one's write is held open, then let it go.

    The first item is written alone; the others queue one by one (so their
    arrival order is known) behind it. Returns each item's result or error.
    """
    writer.gate = gate = threading.Event()
    outcomes: dict[int, object] = {}

    def run(item: int) -> None:
        try:
            outcomes[item] = group.submit(item)
        except Exception as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in items]
    threads[0].start()
    assert writer.entered.wait(DEADLINE)
    for count, thread in enumerate(threads[1:], start=1):
        thread.start()
        queued(group, count)
    gate.set()
    for thread in threads:
        thread.join(DEADLINE)
        assert not thread.is_alive()
    return outcomes


def test_a_lone_write_goes_out_at_once_as_a_batch_of_one() -> None:
    writer = Writer()
    group = GroupCommit(writer)
    assert group.submit(7) == "wrote 7"
    assert group.submit(8) == "wrote 8"
    assert writer.batches == [[7], [8]]


def test_writes_that_arrive_during_a_write_share_the_next_one_in_arrival_order() -> None:
    writer = Writer()
    outcomes = submit_behind_a_write(GroupCommit(writer), writer, range(6))
    assert writer.batches == [[0], [1, 2, 3, 4, 5]]
    assert outcomes == {i: f"wrote {i}" for i in range(6)}


def test_a_failed_batch_raises_in_each_of_its_waiters_and_the_next_batch_still_runs() -> None:
    writer = Writer(fail_on=2)
    group = GroupCommit(writer)
    outcomes = submit_behind_a_write(group, writer, range(4))
    assert outcomes[0] == "wrote 0"
    for item in (1, 2, 3):
        assert isinstance(outcomes[item], ConnectionError), outcomes
    assert group.submit(9) == "wrote 9"  # nobody is left leading a dead batch


def test_a_batch_is_at_most_limit_writes_and_the_rest_follow() -> None:
    writer = Writer()
    outcomes = submit_behind_a_write(GroupCommit(writer, limit=3), writer, range(8))
    assert writer.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    assert outcomes == {i: f"wrote {i}" for i in range(8)}


def test_a_writer_that_returns_the_wrong_number_of_results_is_an_error() -> None:
    group: GroupCommit[int, str] = GroupCommit(lambda items: ["one"] * (len(items) + 1))
    with pytest.raises(RuntimeError, match="a batch of 1 writes returned 2 results"):
        group.submit(1)
