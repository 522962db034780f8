"""The blocking ``Client`` against the local server: every fault, the time limits, the token
cache, leaving a stream early, bad input, configuration, and use without an event loop.

``test_client_async.py`` is its twin: the same cases, in the same order and under the same
names, for the ``AsyncClient`` on asyncio and trio. A case added here gets its twin there.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import trio

from aichatonline import (
    Client,
    InvalidRequestError,
    Stream,
)
from aichatonline.testing import LocalServer
from tests.helpers import (
    PROMPT,
    REPLY,
    SAFE_TIMEOUT,
    fast,
    pool_active_requests,
)

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture
def client(server: LocalServer) -> Iterator[Client]:
    with Client(base_url=server.base_url, retry_policy=fast(), timeout=SAFE_TIMEOUT) as made:
        yield made


# --------------------------------------------------------------------------- leaving early


def _left_early(client: Client, server: LocalServer, disconnects: int, streams: int = 1) -> None:
    assert server.wait_for(lambda s: s.disconnects == disconnects + streams, 5)
    # A stream dropped without close() is closed soon after, by the SDK's closer thread.
    assert server.wait_for(lambda s: pool_active_requests(client) == 0, 2)
    server.delay = 0.0
    assert client.complete(PROMPT) == "".join(server.pieces_for(PROMPT))


def test_break_out_of_a_with_block(client: Client, paced: LocalServer) -> None:
    before = paced.disconnects
    with client.stream(PROMPT) as stream:
        for _ in stream:
            break
    assert stream.text == paced.pieces_for(PROMPT)[0]
    _left_early(client, paced, before)


def test_break_out_of_a_bare_for_loop(client: Client, paced: LocalServer) -> None:
    before = paced.disconnects
    for _ in client.stream(PROMPT):
        break
    _left_early(client, paced, before)


def test_break_then_close(client: Client, paced: LocalServer) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    for _ in stream:
        break
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    _left_early(client, paced, before)


def test_close_mid_stream(client: Client, paced: LocalServer) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    next(stream)
    next(stream)
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.text == "".join(paced.pieces_for(PROMPT)[:2])
    _left_early(client, paced, before)


def test_exception_in_the_consumer(client: Client, paced: LocalServer) -> None:
    before = paced.disconnects

    def consume() -> None:
        with client.stream(PROMPT) as stream:
            for _ in stream:
                raise KeyError("the consumer failed")

    with pytest.raises(KeyError):
        consume()
    _left_early(client, paced, before)


@pytest.mark.parametrize("with_block", [True, False], ids=["with", "bare-for"])
def test_close_from_another_thread_mid_stream(
    client: Client, paced: LocalServer, with_block: bool
) -> None:
    # The blocking twin of cancelling an async stream: another thread closes it, and the
    # iterating thread's loop simply ends.
    before = paced.disconnects
    pieces: list[str] = []
    stream = client.stream(PROMPT)
    closer = threading.Timer(0.4, stream.close)
    closer.start()
    if with_block:
        with stream:
            for piece in stream:
                pieces.append(piece)
    else:
        for piece in stream:
            pieces.append(piece)
    closer.join()
    assert 1 <= len(pieces) < 40
    assert stream.text == "".join(pieces)
    _left_early(client, paced, before)


def test_closing_streams_that_other_threads_iterate(client: Client, paced: LocalServer) -> None:
    before = paced.disconnects
    client.get_token()
    streams = [client.stream(PROMPT) for _ in range(5)]
    started = threading.Semaphore(0)

    def consume(stream: Stream) -> int:
        count = 0
        for _ in stream:
            if count == 0:
                started.release()
            count += 1
        return count

    with ThreadPoolExecutor(5) as pool:
        counts = pool.map(consume, streams)
        for _ in streams:
            assert started.acquire(timeout=5)
        for stream in streams:
            stream.close()
        assert all(1 <= count < 40 for count in counts)
    _left_early(client, paced, before, streams=5)


def test_garbage_collection_of_an_abandoned_stream(client: Client, paced: LocalServer) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    next(stream)
    del stream
    gc.collect()
    _left_early(client, paced, before)


def test_an_unstarted_stream_sends_nothing(client: Client, server: LocalServer) -> None:
    stream = client.stream(PROMPT)
    stream.close()
    with client.stream(PROMPT):
        pass
    assert server.requests == []


# --------------------------------------------------------------------------- configuration


def test_own_connections_are_closed_by_close(server: LocalServer) -> None:
    with Client(base_url=server.base_url, retry_policy=fast()) as client:
        assert client.complete(PROMPT) == REPLY
        assert server.open_connections == 1
        assert not client.is_closed
    assert client.is_closed
    assert server.wait_for(lambda s: s.open_connections == 0, 5)
    sent = len(server.requests)
    with pytest.raises(InvalidRequestError, match="closed"):
        client.complete(PROMPT)
    assert len(server.requests) == sent


# --------------------------------------------------------------------------- no event loop


def test_blocking_client_inside_a_running_asyncio_loop(server: LocalServer) -> None:
    async def main() -> tuple[str, str]:
        with Client(base_url=server.base_url, retry_policy=fast()) as client:
            return client.complete(PROMPT), "".join(client.stream(PROMPT))

    assert asyncio.run(main()) == (REPLY, REPLY)


def test_blocking_client_inside_a_running_trio_loop(server: LocalServer) -> None:
    async def main() -> str:
        with Client(base_url=server.base_url, retry_policy=fast()) as client:
            return client.complete(PROMPT)

    assert trio.run(main) == REPLY


def test_blocking_client_in_a_plain_thread(server: LocalServer) -> None:
    results: list[str] = []
    with Client(base_url=server.base_url, retry_policy=fast()) as client:
        thread = threading.Thread(target=lambda: results.append(client.complete(PROMPT)))
        thread.start()
        thread.join(10)
    assert results == [REPLY]
