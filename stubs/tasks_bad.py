"""Calling a declared task with wrong arguments is a type error, as for any function."""

from __future__ import annotations

from quiv import Quiv

scheduler = Quiv()


@scheduler.task(60)
def cleanup(days: int, _job_id: str | None = None) -> int:
    return days


cleanup("thirty")  # type: ignore[arg-type]
cleanup()  # type: ignore[call-arg]
cleanup(1, "job", 3)  # type: ignore[call-arg]
cleanup(1, _job_id=7)  # type: ignore[arg-type]
cleanup(1, unknown=True)  # type: ignore[call-arg]
result: str = cleanup(1)  # type: ignore[assignment]
scheduler.task(cron=5)  # type: ignore[arg-type]
scheduler.task(60, misfire="later")  # type: ignore[arg-type]
