"""The one scheduler of the application; every other module imports it from here.

Building it needs no event loop, so module level is fine. It is started and
stopped by the lifespan in ``main.py``, never here.

Where it keeps its state comes from ``QUIV_DATABASE_URL``: unset, a private
temporary database (one process); ``sqlite:///file`` to keep it across
restarts; ``postgresql+psycopg://...`` to share the schedule between
``uvicorn --workers N`` processes (see docs/multiple-processes.md).
"""

from __future__ import annotations

import os

from quiv import Quiv

scheduler = Quiv(pool_size=4, history_retention_seconds=7200, timezone="UTC")

#: How long one step of the example tasks takes (the end-to-end test makes it short).
STEP_SECONDS = float(os.environ.get("EXAMPLE_STEP_SECONDS", "1.0"))
#: How often the heartbeat task runs (a test of several processes makes it short).
HEARTBEAT_SECONDS = float(os.environ.get("EXAMPLE_HEARTBEAT_SECONDS", "30"))
