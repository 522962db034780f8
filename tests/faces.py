"""One test body for the blocking ``Client`` and the ``AsyncClient`` (asyncio and trio).

A test that takes the ``api`` and ``client`` fixtures runs three times: ``[sync]`` drives
the blocking ``Client`` (its calls block the test's event loop, which is harmless: the
bundled server runs in its own thread), ``[asyncio]`` and ``[trio]`` the ``AsyncClient``.
:class:`Api` hides the one difference (``await`` or not). The ``flavor``, ``api`` and
``client`` fixtures are in ``conftest.py``; a module using them also sets
``anyio_backend`` from ``flavor`` (see :func:`backend_of`).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from aichatonline import AsyncClient, Client
from aichatonline.testing import LocalServer
from tests.helpers import SAFE_TIMEOUT, fast

__all__ = ["END", "Api", "backend_of"]

#: What ``Api.next`` returns at the end of an iterator.
END = object()


class Api:
    """One face of the SDK: the blocking ``Client`` or the ``AsyncClient``."""

    def __init__(self, flavor: str) -> None:
        self.flavor = flavor
        self.sync = flavor == "sync"

    def client(self, server: LocalServer, **options: Any) -> Any:
        """A client of ``server`` (no back-off, a safe time bound, unless ``options`` say)."""
        if "max_retries" not in options:
            options.setdefault("retry_policy", fast())
        options.setdefault("timeout", SAFE_TIMEOUT)
        kind = Client if self.sync else AsyncClient
        return kind(base_url=server.base_url, **options)

    async def __call__(self, value: Any) -> Any:
        """The result of a client call: awaited when the call was async."""
        return await value if inspect.isawaitable(value) else value

    async def next(self, iterator: Any) -> Any:
        """The next item, or ``END``."""
        try:
            return next(iterator) if self.sync else await iterator.__anext__()
        except (StopIteration, StopAsyncIteration):
            return END

    async def drain(self, iterator: Any, into: list[Any] | None = None) -> list[Any]:
        """Every item to the end (``into`` keeps those read before an error)."""
        items = [] if into is None else into
        while (item := await self.next(iterator)) is not END:
            items.append(item)
        return items

    async def collect(self, iterator: Any) -> tuple[list[Any], Exception | None]:
        """The items until the end or an error, and that error."""
        items: list[Any] = []
        try:
            while (item := await self.next(iterator)) is not END:
                items.append(item)
        except Exception as exc:  # noqa: BLE001 - the caller checks it
            return items, exc
        return items, None

    async def close(self, thing: Any) -> None:
        """``close()`` or ``await aclose()``."""
        if self.sync:
            thing.close()
        else:
            await thing.aclose()

    @contextlib.asynccontextmanager
    async def entered(self, thing: Any) -> AsyncIterator[Any]:
        """``with thing`` or ``async with thing``."""
        if self.sync:
            with thing as entered:
                yield entered
        else:
            async with thing as entered:
                yield entered

    async def both(self, first: Callable[[], Any], second: Callable[[], Any]) -> None:
        """Run two calls at the same time (two threads, or two tasks)."""
        if self.sync:
            errors: list[BaseException] = []

            def run(call: Callable[[], Any]) -> None:
                try:
                    call()
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(call,)) for call in (first, second)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            if errors:
                raise errors[0]
        else:
            async with anyio.create_task_group() as group:
                group.start_soon(first)
                group.start_soon(second)


def backend_of(flavor: str) -> str:
    """The event loop a test of ``flavor`` runs on (the blocking client's: asyncio)."""
    return "trio" if flavor == "trio" else "asyncio"
