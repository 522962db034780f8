"""One test body for the blocking ``Client`` and the ``AsyncClient`` (asyncio and trio).

A test that takes the ``api`` fixture runs three times: ``[sync]`` drives the blocking
``Client`` (its calls block the test's event loop, which is harmless: the servers run in
their own threads), ``[asyncio]`` and ``[trio]`` the ``AsyncClient``. :class:`Api` hides the
differences: ``await`` or not (``await api(call)``), ``with`` or ``async with``, iterating,
closing, waiting, and running things at once (two threads, or two tasks). The
``flavor``, ``api`` and ``client`` fixtures are in ``conftest.py``; a module using them also
sets ``anyio_backend`` from ``flavor`` (see :func:`backend_of`).

What exists for one client only (threads for the blocking one, cancellation and event loops
for the async one) is tested without ``Api``: ``test_blocking_client.py`` and
``test_async_client.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpx

from aichatonline import AsyncClient, Client
from tests.helpers import MARGIN, SAFE_TIMEOUT, assert_ours, fast

__all__ = ["END", "Api", "Outcome", "backend_of"]

#: What ``Api.next`` returns at the end of an iterator.
END = object()


@dataclass
class Outcome:
    """What a stream gave: the pieces, its final ``text``, the error, the time it took."""

    pieces: list[str]
    text: str
    error: Exception | None
    seconds: float
    stream: Any = field(repr=False)


class Api:
    """One face of the SDK: the blocking ``Client`` or the ``AsyncClient``."""

    def __init__(self, flavor: str) -> None:
        self.flavor = flavor
        self.sync = flavor == "sync"

    # -- making things

    @property
    def kind(self) -> type[Any]:
        """``Client`` or ``AsyncClient``."""
        return Client if self.sync else AsyncClient

    def client(self, server: Any, **options: Any) -> Any:
        """A client of ``server`` (anything with a ``base_url``): no back-off and a safe time
        bound, unless ``options`` say otherwise."""
        if "max_retries" not in options:
            options.setdefault("retry_policy", fast())
        options.setdefault("timeout", SAFE_TIMEOUT)
        return self.kind(base_url=server.base_url, **options)

    def http_client(self, **options: Any) -> Any:
        """An ``httpx.Client`` or ``httpx.AsyncClient``: the caller's own, for ``http_client=``."""
        return httpx.Client(**options) if self.sync else httpx.AsyncClient(**options)

    def recording_hooks(self, seen: list[str]) -> dict[str, list[Callable[..., Any]]]:
        """httpx ``event_hooks`` (sync or async) noting each request: ``"GET /path"``."""

        def note(request: httpx.Request) -> None:
            seen.append(f"{request.method} {request.url.path}")

        async def anote(request: httpx.Request) -> None:
            note(request)

        return {"request": [note if self.sync else anote]}

    # -- calling

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
            await self.drain(iterator, items)
        except Exception as exc:  # noqa: BLE001 - the caller checks it
            return items, exc
        return items, None

    async def run(self, stream: Any) -> Outcome:
        """Iterate a stream in its ``with`` block to its end or its error."""
        started, pieces, error = time.monotonic(), [], None
        try:
            async with self.entered(stream):
                await self.drain(stream, pieces)
        except Exception as exc:  # noqa: BLE001 - the caller checks it
            error = exc
        return Outcome(pieces, stream.text, error, time.monotonic() - started, stream)

    async def failure(self, call: Callable[[], Any], *, within: float) -> tuple[Exception, float]:
        """The error of ``call()`` (one of ours), which must come within ``within`` + ``MARGIN``
        seconds; and the seconds it took."""
        started = time.monotonic()
        try:
            await self(call())
        except Exception as exc:  # noqa: BLE001 - any error, to check that it is one of ours
            elapsed = time.monotonic() - started
            assert_ours(exc)
            assert elapsed <= within + MARGIN, f"ran {elapsed:.2f}s past a {within}s bound"
            return exc, elapsed
        raise AssertionError("the call did not fail")

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

    # -- time and company

    async def wait_until(self, predicate: Callable[[], bool], within: float = 5.0) -> bool:
        """Whether ``predicate()`` came true within ``within`` seconds (polled in a worker
        thread, so that neither the event loop nor the servers' threads are held up)."""

        def poll() -> bool:
            deadline = time.monotonic() + within
            while not predicate():
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
            return True

        return await anyio.to_thread.run_sync(poll)

    async def concurrently(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run every call at the same time (threads that start together, or tasks); their
        results in order. An error of any call is raised. A call is a client call of the
        face (blocking, or a coroutine), or an ``async def`` body written for every face."""
        results: list[Any] = [None] * len(calls)
        if self.sync:
            errors: list[BaseException] = []
            start = threading.Barrier(len(calls))

            def run(index: int) -> None:
                try:
                    start.wait(10)
                    results[index] = _to_the_end(calls[index])
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert not any(thread.is_alive() for thread in threads), "a call never ended"
            if errors:
                raise errors[0]
        else:

            async def run_task(index: int) -> None:
                results[index] = await self(calls[index]())

            async with anyio.create_task_group() as group:
                for index in range(len(calls)):
                    group.start_soon(run_task, index)
        return results

    async def both(self, first: Callable[[], Any], second: Callable[[], Any]) -> None:
        """Run two calls at the same time (two threads, or two tasks)."""
        await self.concurrently([first, second])

    @contextlib.asynccontextmanager
    async def background(
        self, call: Callable[[], Any], *, within: float = 10
    ) -> AsyncIterator[None]:
        """Run ``call`` in another thread (blocking face) or task while the block runs; leaving
        the block waits for ``call`` to end, which must come within ``within`` seconds. An
        error ``call`` raises fails the test: a call that expects one catches it itself."""
        if self.sync:
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    _to_the_end(call)
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            try:
                yield
            finally:
                thread.join(within)
            assert not thread.is_alive(), f"the background call ran past {within} s"
            if errors:
                raise errors[0]
        else:

            async def task() -> None:
                await self(call())

            with anyio.fail_after(within):
                async with anyio.create_task_group() as group:
                    group.start_soon(task)
                    yield


def _to_the_end(call: Callable[[], Any]) -> Any:
    """``call()`` in this thread, to its end: a body written once over the faces (an ``async
    def``) runs on an event loop of the thread's own."""
    result = call()
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def backend_of(flavor: str) -> str:
    """The event loop a test of ``flavor`` runs on (the blocking client's: asyncio)."""
    return "trio" if flavor == "trio" else "asyncio"
