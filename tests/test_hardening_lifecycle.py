"""Issue 8, item 5: closing, cancelling, switching event loops.

- Cancelled calls leak no connections: after a storm of cancellations (asyncio
  ``task.cancel()`` and ``wait_for``, anyio cancel scopes on asyncio and trio) the server
  sees at most ``BOUND`` connections open. The storms sweep the moment of cancellation one
  event-loop step at a time, so they also hit the steps between "connected" and "request
  sent" where httpcore's pool keeps a ``NEW, Request Count: 0`` connection forever.
- ``stream.close()`` from another thread (``aclose()`` from another task) ends the
  iterating loop promptly, with no exception anywhere.
- ``client.close()`` while a stream runs: ``StreamInterrupted`` with the text so far, its
  cause an ``APIConnectionError`` saying the client was closed (no text: that error itself).
- An ``AsyncClient`` used on asyncio and then trio (or the reverse) raises
  ``InvalidRequestError``; a second ``asyncio.run`` keeps working.
- An ``AsyncStream`` dropped without ``aclose()`` emits no ``ResourceWarning`` and its
  connection gets closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import threading
import time
import warnings

import anyio
import anyio.lowlevel
import pytest
import trio

from aichatonline import (
    APIConnectionError,
    AsyncClient,
    Client,
    InvalidRequestError,
    StreamInterrupted,
)
from tests import hostile
from tests.helpers import fast

PROMPT = "Tell me a long story"
BOUND = 20  # open connections allowed after a storm (the SDK keeps idle ones for reuse)
STEPS = 32  # cancellation points swept: 0..STEPS-1 event-loop steps after the call starts
REPEAT = 40  # calls cancelled at each step (asyncio task.cancel())
REPEAT_SCOPES = 10  # the same with anyio cancel scopes (asyncio and trio)
PROMPTLY = 0.5
#: An answer slow enough that every call of a storm is cancelled before it comes.
SLOW_ANSWER = hostile.delayed(5.0, hostile.stream())
#: A healthy answer of 40 pieces, one every 0.1 s.
LONG = [f"{i}, " for i in range(40)]


pytestmark = pytest.mark.usefixtures("isolated")


def _check_no_leak(server: hostile.HostileServer) -> None:
    server.wait_for(lambda: server.open_connections <= BOUND, timeout=3.0)
    assert server.open_connections <= BOUND, (
        f"{server.open_connections} connections still open after the storm "
        f"({server.connections} made)"
    )


# --------------------------------------------------------------------------- cancellation storms


async def _asyncio_storm(server: hostile.HostileServer) -> None:
    loop = asyncio.get_running_loop()
    async with AsyncClient(base_url=server.base_url, retry_policy=fast(0)) as client:

        def cancel_after(steps: int, task: asyncio.Task[str]) -> None:
            if steps == 0:
                task.cancel()
            else:
                loop.call_soon(cancel_after, steps - 1, task)

        # task.cancel() at every step of a call's start, REPEAT times each.
        for steps in range(STEPS):
            for _ in range(REPEAT):
                task = asyncio.ensure_future(client.complete(PROMPT))
                cancel_after(steps, task)
                with pytest.raises(asyncio.CancelledError):
                    await task
        # wait_for with random timeouts, 30 calls at a time.
        rng = random.Random(8)

        async def one() -> None:
            # asyncio.TimeoutError is not the builtin one before Python 3.11.
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                await asyncio.wait_for(client.complete(PROMPT), rng.uniform(0, 0.02))

        for _ in range(10):
            await asyncio.gather(*(one() for _ in range(30)))
        _check_no_leak(server)


def test_cancellation_storm_leaks_no_connections_asyncio() -> None:
    with hostile.HostileServer(hostile.route(chat=SLOW_ANSWER)) as server:
        asyncio.run(_asyncio_storm(server))
        assert server.connections >= STEPS  # the storm really opened connections


@pytest.mark.anyio
async def test_cancellation_storm_leaks_no_connections_anyio(anyio_backend: str) -> None:
    async def cancel_after(steps: int, scope: anyio.CancelScope) -> None:
        for _ in range(steps):
            await anyio.lowlevel.checkpoint()
        scope.cancel()

    with hostile.HostileServer(hostile.route(chat=SLOW_ANSWER)) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(0)) as client:
            for steps in range(STEPS):
                for _ in range(REPEAT_SCOPES):
                    with anyio.CancelScope() as scope:
                        async with anyio.create_task_group() as group:
                            group.start_soon(cancel_after, steps, scope)
                            await client.complete(PROMPT)
                    assert scope.cancelled_caught
            _check_no_leak(server)
        assert server.connections >= STEPS


# --------------------------------------------------------------------------- stream.close()


def test_stream_close_from_another_thread_ends_the_loop_sync() -> None:
    server = hostile.HostileServer(hostile.route(chat=hostile.stream(LONG, every=0.1)))
    with server, Client(base_url=server.base_url, retry_policy=fast(0)) as client:
        client.token = hostile.TOKEN  # no token fetch: its idle connection would stay open
        stream = client.stream(PROMPT)
        pieces: list[str] = []
        errors: list[BaseException] = []
        first, ended = threading.Event(), threading.Event()

        def consume() -> None:
            try:
                for piece in stream:
                    pieces.append(piece)
                    first.set()
            except BaseException as exc:  # noqa: BLE001 (the test reports it)
                errors.append(exc)
            finally:
                ended.set()

        thread = threading.Thread(target=consume)
        thread.start()
        try:
            assert first.wait(5)
            closed_at = time.monotonic()
            stream.close()  # must not raise ("generator already executing")
            assert ended.wait(PROMPTLY + 5)
            took = time.monotonic() - closed_at
        finally:
            thread.join(10)
        assert errors == []
        assert took <= PROMPTLY, took
        assert 1 <= len(pieces) < len(LONG)
        assert stream.text == "".join(pieces)
        # The connection of the stopped answer is closed (it cannot be reused).
        assert server.wait_for(lambda: server.open_connections == 0, 2)


@pytest.mark.anyio
async def test_stream_aclose_from_another_task_ends_the_loop_async(anyio_backend: str) -> None:
    with hostile.HostileServer(hostile.route(chat=hostile.stream(LONG, every=0.1))) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(0)) as client:
            client.token = hostile.TOKEN
            stream = client.stream(PROMPT)
            pieces: list[str] = []
            errors: list[BaseException] = []
            first, ended = anyio.Event(), anyio.Event()

            async def consume() -> None:
                try:
                    async for piece in stream:
                        pieces.append(piece)
                        first.set()
                except Exception as exc:  # noqa: BLE001 (the test reports it)
                    errors.append(exc)
                finally:
                    ended.set()

            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                with anyio.fail_after(5):
                    await first.wait()
                closed_at = time.monotonic()
                with anyio.fail_after(5):
                    await stream.aclose()  # must not raise ("already running")
                    await ended.wait()
                took = time.monotonic() - closed_at
            assert errors == []
            assert took <= PROMPTLY, took
            assert 1 <= len(pieces) < len(LONG)
            assert stream.text == "".join(pieces)
            assert server.wait_for(lambda: server.open_connections == 0, 2)


# --------------------------------------------------------------------------- client.close()


def _check_closed_mid_stream(errors: list[Exception], pieces: list[str]) -> None:
    assert len(errors) == 1, errors
    error = errors[0]
    assert isinstance(error, StreamInterrupted), repr(error)
    assert error.partial == "".join(pieces)
    assert len(pieces) >= 2
    cause = error.__cause__
    assert isinstance(cause, APIConnectionError), repr(cause)
    assert "closed" in str(cause).lower(), str(cause)


def _check_closed_before_text(errors: list[Exception], pieces: list[str]) -> None:
    assert len(errors) == 1, errors
    error = errors[0]
    assert isinstance(error, APIConnectionError), repr(error)
    assert not isinstance(error, StreamInterrupted)
    assert "closed" in str(error).lower(), str(error)
    assert pieces == []


def _noting_requests(handler: hostile.Handler) -> tuple[hostile.Handler, threading.Event]:
    """``handler``, and an event set when the first chat request has arrived."""
    arrived = threading.Event()

    def handle(request: hostile.Request, conn: hostile.Conn) -> bool | None:
        arrived.set()
        return handler(request, conn)

    return hostile.route(chat=handle), arrived


def _chat(text_first: bool) -> hostile.Handler:
    return hostile.stream(LONG, every=0.1) if text_first else hostile.silent(give_up=5.0)


@pytest.mark.parametrize("text_first", [True, False], ids=["mid-stream", "before-text"])
def test_client_close_ends_a_running_stream_sync(text_first: bool) -> None:
    handler, arrived = _noting_requests(_chat(text_first))
    with hostile.HostileServer(handler) as server:
        client = Client(base_url=server.base_url, retry_policy=fast(2))
        client.token = hostile.TOKEN  # the call goes straight to the chat request
        stream = client.stream(PROMPT)
        pieces: list[str] = []
        errors: list[Exception] = []
        two_pieces = threading.Event()

        def consume() -> None:
            try:
                for piece in stream:
                    pieces.append(piece)
                    if len(pieces) == 2:
                        two_pieces.set()
            except Exception as exc:  # noqa: BLE001 (the test looks at it)
                errors.append(exc)

        thread = threading.Thread(target=consume)
        thread.start()
        try:
            assert (two_pieces if text_first else arrived).wait(5)
            client.close()
            thread.join(PROMPTLY + 2)
            assert not thread.is_alive(), "the stream kept running after client.close()"
        finally:
            client.close()
            thread.join(10)
    check = _check_closed_mid_stream if text_first else _check_closed_before_text
    check(errors, pieces)


@pytest.mark.anyio
@pytest.mark.parametrize("text_first", [True, False], ids=["mid-stream", "before-text"])
async def test_client_aclose_ends_a_running_stream_async(
    anyio_backend: str, text_first: bool
) -> None:
    handler, arrived = _noting_requests(_chat(text_first))
    with hostile.HostileServer(handler) as server:
        client = AsyncClient(base_url=server.base_url, retry_policy=fast(2))
        client.token = hostile.TOKEN
        stream = client.stream(PROMPT)
        pieces: list[str] = []
        errors: list[Exception] = []
        two_pieces, ended = anyio.Event(), anyio.Event()

        async def consume() -> None:
            try:
                async for piece in stream:
                    pieces.append(piece)
                    if len(pieces) == 2:
                        two_pieces.set()
            except Exception as exc:  # noqa: BLE001 (the test looks at it)
                errors.append(exc)
            finally:
                ended.set()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                with anyio.fail_after(5):
                    if text_first:
                        await two_pieces.wait()
                    else:
                        assert await anyio.to_thread.run_sync(arrived.wait, 5)
                await client.aclose()
                with anyio.fail_after(PROMPTLY + 2):
                    await ended.wait()
        finally:
            await client.aclose()
    check = _check_closed_mid_stream if text_first else _check_closed_before_text
    check(errors, pieces)


# --------------------------------------------------------------------------- event loops


def _ask_on(backend: str, client: AsyncClient) -> str:
    async def ask() -> str:
        return await client.complete(PROMPT)

    if backend == "asyncio":
        return asyncio.run(ask())
    return trio.run(ask)


def _close_on(backend: str, client: AsyncClient) -> None:
    if backend == "asyncio":
        asyncio.run(client.aclose())
    else:
        trio.run(client.aclose)


@pytest.mark.parametrize(("first", "second"), [("asyncio", "trio"), ("trio", "asyncio")])
def test_async_client_on_a_second_backend_is_an_invalid_request(first: str, second: str) -> None:
    with hostile.HostileServer(hostile.route()) as server:
        client = AsyncClient(base_url=server.base_url, retry_policy=fast(0))
        try:
            assert _ask_on(first, client) == "Hello"
            with pytest.raises(InvalidRequestError) as caught:
                _ask_on(second, client)
        except BaseException:
            with contextlib.suppress(Exception):  # best effort: the failure is the one above
                _close_on(first, client)
            raise
        message = str(caught.value).lower()
        assert "asyncio" in message or "trio" in message or "backend" in message, message
        _close_on(first, client)  # the client still closes on its own backend


def test_async_client_survives_a_second_asyncio_run() -> None:
    with hostile.HostileServer(hostile.route()) as server:
        client = AsyncClient(base_url=server.base_url, retry_policy=fast(0))
        try:
            assert _ask_on("asyncio", client) == "Hello"
            assert _ask_on("asyncio", client) == "Hello"
        finally:
            with contextlib.suppress(Exception):  # closing is the next test's business
                _close_on("asyncio", client)


def test_async_client_closes_after_several_asyncio_runs() -> None:
    with hostile.HostileServer(hostile.route()) as server:
        client = AsyncClient(base_url=server.base_url, retry_policy=fast(0))
        assert _ask_on("asyncio", client) == "Hello"
        assert _ask_on("asyncio", client) == "Hello"
        _close_on("asyncio", client)  # a third loop: no raw "Event loop is closed"
        assert server.wait_for(lambda: server.open_connections == 0, 2)


# --------------------------------------------------------------------------- garbage collection


@pytest.mark.anyio
async def test_abandoned_stream_emits_no_resource_warning(anyio_backend: str) -> None:
    with hostile.HostileServer(hostile.route(chat=hostile.stream(LONG, every=0.1))) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(0)) as client:
            client.token = hostile.TOKEN

            async def abandon() -> None:
                stream = client.stream(PROMPT)
                async for _ in stream:
                    break  # and no aclose(): the stream is dropped

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                await abandon()
                for _ in range(3):
                    gc.collect()
                    await anyio.sleep(0.1)  # let the event loop run any finalizer
            leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
            assert leaks == [], [str(w.message) for w in leaks]
            # The dropped stream's connection was closed (not kept, not leaked).
            assert server.wait_for(lambda: server.open_connections == 0, 2)
