"""Values made safe for JSON: what the live stream and the cross-process relay send."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel

__all__ = ["jsonable"]


def jsonable(value: object) -> Any:
    """``value`` if JSON can carry it as is (recursively), else its ``repr``."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN or infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return repr(value)
