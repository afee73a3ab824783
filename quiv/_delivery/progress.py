"""What progress listeners receive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["ProgressReport"]


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """One call of a handler's ``_progress_hook``, as seen by a progress listener."""

    task_id: str
    task_name: str
    job_id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    at: datetime
    """When the hook was called (UTC)."""
