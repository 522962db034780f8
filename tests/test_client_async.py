"""The ``AsyncClient`` on asyncio and on trio against the local server: every fault, the time
limits, the shared token fetch, 200 concurrent streams, leaving early (cancellation
included), bad input and configuration.

``test_client_sync.py`` is its twin: the same cases, in the same order and under the same
names, for the blocking ``Client``. A case added here gets its twin there.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

import aichatonline
from aichatonline import (
    DEFAULT_BASE_URL,
    APIError,
    AsyncClient,
    AsyncStream,
    InvalidRequestError,
    RetryPolicy,
    Timeout,
)
from aichatonline.testing import Fault, LocalServer
from tests.helpers import (
    BAD_MESSAGES,
    BAD_OPTIONS,
    PROMPT,
    REPLY,
    SAFE_TIMEOUT,
    arecording_hooks,
    await_server,
    closed_port,
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


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("messages", BAD_MESSAGES)
async def test_bad_messages_fail_before_any_request(
    client: AsyncClient, server: LocalServer, messages: object
) -> None:
    with pytest.raises(InvalidRequestError):
        client.stream(messages)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        await client.complete(messages)  # type: ignore[arg-type]
    assert server.requests == []


async def test_bad_conversation_id_and_token(client: AsyncClient, server: LocalServer) -> None:
    with pytest.raises(InvalidRequestError):
        client.stream(PROMPT, conversation_id="")
    with pytest.raises(InvalidRequestError):
        await client.complete(PROMPT, conversation_id=123)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        client.token = ""
    with pytest.raises(InvalidRequestError):
        client.token = 42  # type: ignore[assignment]
    assert server.requests == []


@pytest.mark.parametrize("options", BAD_OPTIONS)
async def test_bad_options_fail_in_the_constructor(
    server: LocalServer, anyio_backend: str, options: dict
) -> None:
    with pytest.raises(InvalidRequestError):
        AsyncClient(**{"base_url": server.base_url, **options})
    assert server.requests == []


async def test_proxy_and_http_client_together_are_refused(
    server: LocalServer, anyio_backend: str
) -> None:
    async with httpx.AsyncClient() as own:
        with pytest.raises(InvalidRequestError, match="proxy"):
            AsyncClient(base_url=server.base_url, proxy="http://127.0.0.1:3128", http_client=own)
    assert server.requests == []


# --------------------------------------------------------------------------- configuration


async def test_base_url_falls_back_to_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url + "/")
    async with AsyncClient(retry_policy=fast()) as client:
        assert client.base_url == server.base_url
        assert await client.complete(PROMPT) == REPLY
    assert len(server.chat_requests) == 1


async def test_explicit_base_url_wins_over_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    async with AsyncClient(base_url=server.base_url, retry_policy=fast()) as client:
        assert await client.complete(PROMPT) == REPLY


async def test_base_url_defaults_to_the_real_service(anyio_backend: str) -> None:
    async with AsyncClient() as client:
        assert client.base_url == DEFAULT_BASE_URL == "https://aichatonlineorg.erweima.ai"
        assert client.proxy is None
        assert client.max_retries == 2
        assert client.timeout == aichatonline.DEFAULT_TIMEOUT
        assert client.timeout.total is None


async def test_proxy_falls_back_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    monkeypatch.setenv("AICHATONLINE_PROXY", "socks5://127.0.0.1:1080")
    async with AsyncClient() as client:
        assert client.proxy == "socks5://127.0.0.1:1080"
    async with AsyncClient(proxy="https://127.0.0.1:3128") as client:
        assert client.proxy == "https://127.0.0.1:3128"


async def test_own_http_client_is_used_and_left_open(
    server: LocalServer, anyio_backend: str
) -> None:
    seen: list[str] = []
    async with httpx.AsyncClient(event_hooks=arecording_hooks(seen)) as own:
        client = AsyncClient(base_url=server.base_url, http_client=own, retry_policy=fast())
        assert await client.complete(PROMPT) == REPLY
        assert "".join(await _drain(client.stream(PROMPT))) == REPLY
        # Every request went through your client.
        assert seen == [
            "GET /api/v1/user/getUniqueId",
            "POST /aichatonline/api/chat/gpt",
            "POST /aichatonline/api/chat/gpt",
        ]
        await client.aclose()
        assert not own.is_closed
        assert (await own.get(server.base_url + "/nowhere")).status_code == 404


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


async def test_timeout_forms_are_accepted(server: LocalServer, anyio_backend: str) -> None:
    forms = [
        5.0,
        None,
        Timeout(total=5.0, connect=1.0, read=2.0, write=1.0, pool=1.0),
        Timeout(5.0, first_piece=3.0),
        httpx.Timeout(3.0),
    ]
    for timeout in forms:
        async with AsyncClient(
            base_url=server.base_url, timeout=timeout, retry_policy=fast()
        ) as client:
            assert await client.complete(PROMPT) == REPLY
    # A number sets the four per-operation limits, as in httpx; no whole-call bound.
    async with AsyncClient(base_url=server.base_url, timeout=2.5) as client:
        assert client.timeout == Timeout(connect=2.5, read=2.5, write=2.5, pool=2.5)
        assert (client.timeout.total, client.timeout.first_piece) == (None, None)
    async with AsyncClient(
        base_url=server.base_url, timeout=httpx.Timeout(3.0, connect=1.0)
    ) as client:
        assert client.timeout == Timeout(3.0, connect=1.0)
    async with AsyncClient(base_url=server.base_url, timeout=None) as client:
        assert client.timeout == Timeout(None)
        assert client.timeout.total is None
        client.timeout = 4  # converted, as httpx's setter does
        assert client.timeout == Timeout(4.0)


async def test_max_retries_is_a_shortcut_for_the_policy(
    server: LocalServer, anyio_backend: str
) -> None:
    async with AsyncClient(base_url=server.base_url, max_retries=5) as client:
        assert client.max_retries == 5
        assert client.retry_policy.max_retries == 5
        client.max_retries = 1
        assert client.retry_policy.max_retries == 1


async def test_max_retries_zero_sends_one_request(server: LocalServer, anyio_backend: str) -> None:
    server.inject(Fault(status=503))
    async with AsyncClient(base_url=server.base_url, max_retries=0) as client:
        with pytest.raises(APIError):
            await client.complete(PROMPT)
    assert len(server.chat_requests) == 1


async def test_set_testing_turns_the_back_off_off(server: LocalServer, anyio_backend: str) -> None:
    slow = RetryPolicy(max_retries=2, initial_backoff=2.0, max_backoff=2.0, jitter=0.0)
    server.inject(Fault(status=503), Fault(status=503))
    with aichatonline.set_testing(True):
        async with AsyncClient(base_url=server.base_url, retry_policy=slow) as client:
            assert aichatonline.is_testing()
            started = time.monotonic()
            assert await client.complete(PROMPT) == REPLY
            assert time.monotonic() - started < 1.0
    assert not aichatonline.is_testing()
    assert len(server.chat_requests) == 3
