"""The application: the lifespan runs the scheduler, the router controls it.

Run it from the repository root with::

    uvicorn examples.fastapi_app.main:app

then open http://127.0.0.1:8000/quiv/dashboard (or /docs for the API).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import RedirectResponse

from examples.fastapi_app.logging_setup import configure_logging
from examples.fastapi_app.routes.reports import router as reports_router
from examples.fastapi_app.scheduler import scheduler
from examples.fastapi_app.security import COOKIE, require_operator, tokens_match
from quiv.fastapi import quiv_lifespan, quiv_router

logger = logging.getLogger(__name__)


@asynccontextmanager
async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The application's own startup and shutdown, around the scheduler's."""
    configure_logging()
    logger.info("application starting")  # open database pools etc. here: jobs can use them
    yield
    logger.info("application stopped")  # close them here: every job has ended by now


app = FastAPI(
    title="quiv example",
    lifespan=quiv_lifespan(scheduler, autodiscover=f"{__package__}.tasks", lifespan=app_lifespan),
)
# Queuing reports costs workers: the same token as the control API guards it.
# The OpenAPI document says what the token check answers, so clients (and
# schemathesis, which CI runs against this app) know to expect it.
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or wrong token."}}
app.include_router(reports_router, dependencies=[Depends(require_operator)], responses=UNAUTHORIZED)
app.include_router(
    quiv_router(scheduler, title="quiv example", dependencies=[Depends(require_operator)]),
    prefix="/quiv",
    responses=UNAUTHORIZED,
)


@app.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/quiv/dashboard")


@app.get("/login", include_in_schema=False)
def login(token: str = Query()) -> RedirectResponse:
    """Store the API token in a cookie so the dashboard and its WebSocket can use it."""
    expected = os.environ.get("EXAMPLE_API_TOKEN", "")
    if expected and not tokens_match(token, expected):
        raise HTTPException(status_code=401, detail="wrong token")
    response = RedirectResponse("/quiv/dashboard", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response
