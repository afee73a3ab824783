"""``quiv_lifespan``: start the scheduler with the application and stop it with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, overload

from quiv._config import DEFAULT_SHUTDOWN_TIMEOUT
from quiv._exceptions import InvalidArgumentError
from quiv.fastapi._stream import streams_of

if TYPE_CHECKING:
    from quiv import Quiv

__all__ = ["quiv_lifespan"]

StateT = TypeVar("StateT", bound="Mapping[str, Any] | None")

#: How long the lifespan's shutdown waits for running jobs, by default (as ``Quiv.shutdown``).


@overload
def quiv_lifespan(
    scheduler: Quiv,
    *,
    autodiscover: str | Sequence[str] = (),
    lifespan: None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> Callable[[Any], AbstractAsyncContextManager[None]]: ...
@overload
def quiv_lifespan(
    scheduler: Quiv,
    *,
    autodiscover: str | Sequence[str] = (),
    lifespan: Callable[[Any], AbstractAsyncContextManager[StateT]],
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> Callable[[Any], AbstractAsyncContextManager[StateT]]: ...
def quiv_lifespan(
    scheduler: Quiv,
    *,
    autodiscover: str | Sequence[str] = (),
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A lifespan for ``FastAPI(lifespan=...)`` that runs ``scheduler`` while the app serves.

    On startup it imports the ``autodiscover`` packages (so their
    ``@scheduler.task`` declarations run), then calls ``start()`` on the
    server's event loop, which becomes the scheduler's main loop. On
    shutdown it calls ``shutdown(shutdown_timeout)`` on a worker thread, so
    the loop keeps delivering the last events while running jobs wind down,
    then closes the live streams built for the scheduler.

    ``lifespan`` is the application's own lifespan: it is entered first and
    left last, so what it sets up (a database pool, say) exists before the
    first job runs and after the last one ends. Whatever state it yields is
    passed on to Starlette.
    """
    packages = (autodiscover,) if isinstance(autodiscover, str) else tuple(autodiscover)
    for package in packages:
        if not isinstance(package, str) or not package:
            raise InvalidArgumentError(f"autodiscover takes dotted package names, got {package!r}")
    if (
        isinstance(shutdown_timeout, bool)
        or not isinstance(shutdown_timeout, (int, float))
        or not 0 <= shutdown_timeout < float("inf")
    ):
        raise InvalidArgumentError(
            f"shutdown_timeout must be a finite number of seconds >= 0, got {shutdown_timeout!r}"
        )

    @asynccontextmanager
    async def run_scheduler(app: Any) -> AsyncIterator[Any]:
        if lifespan is None:
            async with _running(scheduler, packages, float(shutdown_timeout)):
                yield None
        else:
            async with lifespan(app) as state, _running(scheduler, packages, float(shutdown_timeout)):
                yield state

    return run_scheduler


@asynccontextmanager
async def _running(
    scheduler: Quiv, packages: tuple[str, ...], shutdown_timeout: float
) -> AsyncIterator[None]:
    if packages:
        scheduler.autodiscover(*packages)
    loop = asyncio.get_running_loop()
    scheduler.start()  # called on the server's loop: the scheduler adopts it as its main loop
    if scheduler.main_loop is not loop:
        scheduler.logger.warning(
            "quiv_lifespan: the scheduler delivers callbacks to another event loop than the server's "
            "(was it given main_loop=, or used by another running loop first?)"
        )
    try:
        yield
    finally:
        # Shut down first: the loop stays free to deliver the last events to connected clients.
        await asyncio.to_thread(scheduler.shutdown, shutdown_timeout)
        for stream in streams_of(scheduler):
            await stream.aclose()
