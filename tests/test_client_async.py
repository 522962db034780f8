"""The ``AsyncClient`` on asyncio and on trio against the local server: every fault, the time
limits, the shared token fetch, 200 concurrent streams, leaving early (cancellation
included), bad input and configuration.

``test_client_sync.py`` is its twin: the same cases, in the same order and under the same
names, for the blocking ``Client``. A case added here gets its twin there.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator

import anyio
import pytest

from aichatonline import (
    AsyncClient,
    AsyncStream,
    InvalidRequestError,
)
from aichatonline.testing import LocalServer
from tests.helpers import (
    PROMPT,
    REPLY,
    SAFE_TIMEOUT,
    await_server,
    fast,
    pool_active_requests,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
async def client(server: LocalServer, anyio_backend: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(
        base_url=server.base_url, retry_policy=fast(), timeout=SAFE_TIMEOUT
    ) as made:
        yield made


async def _drain(stream: AsyncStream) -> list[str]:
    async with stream:
        return [piece async for piece in stream]


# --------------------------------------------------------------------------- leaving early


async def _left_early(
    client: AsyncClient, server: LocalServer, disconnects: int, streams: int = 1
) -> None:
    assert await await_server(server, lambda s: s.disconnects == disconnects + streams)
    assert pool_active_requests(client) == 0
    server.delay = 0.0
    assert await client.complete(PROMPT) == "".join(server.pieces_for(PROMPT))


async def test_break_out_of_a_with_block(client: AsyncClient, paced: LocalServer) -> None:
    before = paced.disconnects
    async with client.stream(PROMPT) as stream:
        async for _ in stream:
            break
    assert stream.text == paced.pieces_for(PROMPT)[0]
    await _left_early(client, paced, before)


async def test_break_out_of_a_bare_for_loop(client: AsyncClient, paced: LocalServer) -> None:
    # No aclose(): the stream, dropped at once, is closed when it is collected.
    before = paced.disconnects
    async for _ in client.stream(PROMPT):
        break
    gc.collect()
    await _left_early(client, paced, before)


async def test_break_then_close(client: AsyncClient, paced: LocalServer) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    async for _ in stream:
        break
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    await _left_early(client, paced, before)


async def test_close_mid_stream(client: AsyncClient, paced: LocalServer) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    await stream.__anext__()
    await stream.__anext__()
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert stream.text == "".join(paced.pieces_for(PROMPT)[:2])
    await _left_early(client, paced, before)


async def test_exception_in_the_consumer(client: AsyncClient, paced: LocalServer) -> None:
    before = paced.disconnects

    async def consume() -> None:
        async with client.stream(PROMPT) as stream:
            async for _ in stream:
                raise KeyError("the consumer failed")

    with pytest.raises(KeyError):
        await consume()
    await _left_early(client, paced, before)


@pytest.mark.parametrize("with_block", [True, False], ids=["with", "bare-for"])
async def test_cancellation_mid_stream(
    client: AsyncClient, paced: LocalServer, with_block: bool
) -> None:
    before = paced.disconnects
    pieces: list[str] = []
    with anyio.move_on_after(0.4) as scope:
        stream = client.stream(PROMPT)
        if with_block:
            async with stream:
                async for piece in stream:
                    pieces.append(piece)
        else:
            async for piece in stream:
                pieces.append(piece)
    assert scope.cancelled_caught
    assert 1 <= len(pieces) < 40
    assert stream.text == "".join(pieces)
    await _left_early(client, paced, before)


async def test_cancelling_a_task_group_of_streams(client: AsyncClient, paced: LocalServer) -> None:
    before = paced.disconnects
    await client.get_token()
    started = 0

    async def consume() -> None:
        nonlocal started
        async for _ in client.stream(PROMPT):
            started += 1

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(consume)
        await anyio.sleep(0.3)
        group.cancel_scope.cancel()
    assert started >= 5
    await _left_early(client, paced, before, streams=5)


async def test_garbage_collection_of_an_abandoned_stream(
    client: AsyncClient, paced: LocalServer
) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    await stream.__anext__()
    del stream
    gc.collect()
    await _left_early(client, paced, before)


async def test_an_unstarted_stream_sends_nothing(client: AsyncClient, server: LocalServer) -> None:
    stream = client.stream(PROMPT)
    await stream.aclose()
    async with client.stream(PROMPT):
        pass
    assert server.requests == []


# --------------------------------------------------------------------------- configuration


async def test_own_connections_are_closed_by_close(server: LocalServer, anyio_backend: str) -> None:
    async with AsyncClient(base_url=server.base_url, retry_policy=fast()) as client:
        assert await client.complete(PROMPT) == REPLY
        assert server.open_connections == 1
        assert not client.is_closed
    assert client.is_closed
    assert await await_server(server, lambda s: s.open_connections == 0)
    sent = len(server.requests)
    with pytest.raises(InvalidRequestError, match="closed"):
        await client.complete(PROMPT)
    assert len(server.requests) == sent
