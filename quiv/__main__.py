"""``python -m quiv``: the ``quiv`` command line (see :mod:`quiv.cli`)."""

from __future__ import annotations

from quiv.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
