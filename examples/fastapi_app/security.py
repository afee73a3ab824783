"""An optional guard for the control API, the dashboard and the WebSocket alike.

Set ``EXAMPLE_API_TOKEN`` to require it; unset, everything is open (fine on
localhost, not elsewhere). The dependency takes an ``HTTPConnection`` so the
same function guards HTTP routes and the WebSocket. Browsers cannot put
headers on a WebSocket, so the token is also accepted from a cookie, which
``GET /login?token=...`` sets.
"""

from __future__ import annotations

import os
import secrets

from fastapi import HTTPException
from fastapi.requests import HTTPConnection

COOKIE = "example_token"


def tokens_match(given: str, expected: str) -> bool:
    """Compare in constant time. As bytes: ``compare_digest`` refuses non-ASCII str (a 500, not a 401)."""
    return secrets.compare_digest(given.encode(), expected.encode())


def require_operator(connection: HTTPConnection) -> None:
    """Let the request through if no token is configured or it carries the right one."""
    expected = os.environ.get("EXAMPLE_API_TOKEN")
    if not expected:
        return
    header = connection.headers.get("authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None
    given = given or connection.cookies.get(COOKIE)
    if given is None or not tokens_match(given, expected):
        raise HTTPException(status_code=401, detail="missing or wrong token")
