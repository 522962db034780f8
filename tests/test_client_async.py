"""The ``AsyncClient`` on asyncio and on trio against the local server: every fault, the time
bound, the shared token fetch, 200 concurrent streams, leaving early (cancellation included)
and bad input."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.to_thread
import httpx
import pytest

from aichatonline import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncClient,
    AsyncStream,
    InvalidRequestError,
    RateLimitError,
    RetryPolicy,
    StreamInterrupted,
    Timeout,
    format_prompt,
)
from aichatonline.testing import Fault, LocalServer, reply_for
from tests.helpers import (
    COMPLETE_CASES,
    MARGIN,
    PROMPT,
    SAFE_TIMEOUT,
    STREAM_CASES,
    TOTAL,
    Case,
    assert_ours,
    case_params,
    closed_port,
    fast,
    isolate,
    pool_active_requests,
    pool_connections,
    verify,
)

pytestmark = pytest.mark.anyio

REPLY = reply_for(PROMPT)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch)


@pytest.fixture
def server(aichatonline_server: LocalServer) -> LocalServer:
    return aichatonline_server


@pytest.fixture
async def client(server: LocalServer, anyio_backend: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.base_url, retry_policy=fast(), timeout=SAFE_TIMEOUT) as made:
        yield made


async def run_stream(
    client: AsyncClient, prompt: str = PROMPT
) -> tuple[list[str], AsyncStream, Exception | None]:
    """Iterate a stream to its end; return the pieces, the stream and the error, if any."""
    pieces: list[str] = []
    stream = client.stream(prompt)
    try:
        async with stream:
            async for piece in stream:
                pieces.append(piece)
    except Exception as exc:  # noqa: BLE001 - any error, to check that it is one of ours
        return pieces, stream, exc
    return pieces, stream, None


async def wait_for(server: LocalServer, predicate: Callable[[LocalServer], bool]) -> bool:
    """``server.wait_for`` without blocking the event loop."""
    return await anyio.to_thread.run_sync(server.wait_for, predicate, 5.0)


# --------------------------------------------------------------------------- the happy path


async def test_stream_delivers_the_servers_pieces_exactly(
    client: AsyncClient, server: LocalServer
) -> None:
    pieces, stream, exc = await run_stream(client)
    assert exc is None
    assert pieces == server.pieces_for(PROMPT)
    assert stream.text == "".join(pieces) == REPLY
    (request,) = server.chat_requests
    assert request.json() == {"conversationId": stream.conversation_id, "prompt": PROMPT}
    assert "chars=" in repr(stream)


async def test_complete_returns_the_whole_answer(client: AsyncClient, server: LocalServer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert await client.complete(messages) == reply_for(format_prompt(messages))
    assert server.chat_requests[0].json()["prompt"] == "System: Be brief.\nUser: Hi\nAssistant:"


async def test_anext_and_exhaustion(client: AsyncClient, server: LocalServer) -> None:
    stream = client.stream(PROMPT, conversation_id="myconv1234")
    first = await stream.__anext__()
    assert first == server.pieces_for(PROMPT)[0]
    rest = [piece async for piece in stream]
    assert first + "".join(rest) == REPLY
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert server.chat_requests[0].json()["conversationId"] == "myconv1234"


# --------------------------------------------------------------------------- the fault matrix


@pytest.mark.parametrize("case", case_params(STREAM_CASES))
async def test_fault_stream(case: Case, server: LocalServer, anyio_backend: str) -> None:
    server.inject(*case.faults)
    async with AsyncClient(server.base_url, **case.client_options()) as client:  # type: ignore[arg-type]
        pieces, stream, exc = await run_stream(client)
        verify(case, server, pieces=pieces, text=stream.text, exc=exc)
        assert pool_active_requests(client) == 0
        assert await client.complete(PROMPT) == REPLY


@pytest.mark.parametrize("case", case_params(COMPLETE_CASES))
async def test_fault_complete(case: Case, server: LocalServer, anyio_backend: str) -> None:
    server.inject(*case.faults)
    async with AsyncClient(server.base_url, **case.client_options()) as client:  # type: ignore[arg-type]
        text: str | None = None
        exc: Exception | None = None
        try:
            text = await client.complete(PROMPT)
        except Exception as caught:  # noqa: BLE001 - any error, to check that it is one of ours
            exc = caught
        verify(case, server, pieces=None, text=text, exc=exc)
        assert pool_active_requests(client) == 0
        assert await client.complete(PROMPT) == REPLY


async def test_complete_restarts_a_dropped_stream_from_scratch(
    client: AsyncClient, server: LocalServer
) -> None:
    server.inject(Fault(drop_after=3), Fault(variant=True))
    assert await client.complete(PROMPT) == f"Variant 1: {REPLY}"
    assert len(server.chat_requests) == 2


async def test_connection_refused_is_an_api_connection_error(anyio_backend: str) -> None:
    async with AsyncClient(f"http://127.0.0.1:{closed_port()}", retry_policy=fast(1)) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.complete(PROMPT)
        assert isinstance(info.value.__cause__, httpx.ConnectError)
        with pytest.raises(APIConnectionError):
            await client.get_token()


# --------------------------------------------------------------------------- the time bound


async def _elapsed_error(
    call: Callable[[], Awaitable[object]], *, total: float
) -> tuple[BaseException, float]:
    start = time.monotonic()
    try:
        await call()
    except Exception as exc:  # noqa: BLE001 - any error, to check that it is one of ours
        elapsed = time.monotonic() - start
        assert_ours(exc)
        assert elapsed <= total + MARGIN, f"ran {elapsed:.2f}s past a {total}s bound"
        return exc, elapsed
    raise AssertionError("the call did not fail")


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, APITimeoutError) or (
        isinstance(exc, StreamInterrupted) and isinstance(exc.__cause__, APITimeoutError)
    )


async def _drain(stream: AsyncStream) -> list[str]:
    async with stream:
        return [piece async for piece in stream]


@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_total_bounds_a_stall_before_the_first_line(
    server: LocalServer, anyio_backend: str, mode: str
) -> None:
    server.inject(Fault(stall=5.0))
    timeout = Timeout(total=TOTAL, read=10.0)
    async with AsyncClient(server.base_url, timeout=timeout, retry_policy=fast()) as client:

        async def call() -> object:
            if mode == "stream":
                return await _drain(client.stream(PROMPT))
            return await client.complete(PROMPT)

        exc, elapsed = await _elapsed_error(call, total=TOTAL)
        assert isinstance(exc, APITimeoutError)
        assert elapsed >= TOTAL - 0.1
        assert await client.complete(PROMPT) == REPLY


async def test_total_bounds_a_stall_mid_stream(server: LocalServer, anyio_backend: str) -> None:
    server.inject(Fault(stall=5.0, stall_after=3))
    timeout = Timeout(total=TOTAL, read=10.0)
    async with AsyncClient(server.base_url, timeout=timeout, retry_policy=fast()) as client:
        stream = client.stream(PROMPT)
        pieces: list[str] = []

        async def consume() -> None:
            async with stream:
                async for piece in stream:
                    pieces.append(piece)

        exc, _ = await _elapsed_error(consume, total=TOTAL)
        assert isinstance(exc, StreamInterrupted)
        assert isinstance(exc.__cause__, APITimeoutError)
        assert pieces == server.pieces_for(PROMPT)[:3]
        assert exc.partial == "".join(pieces) == stream.text


async def test_number_timeout_bounds_the_whole_call(
    server: LocalServer, anyio_backend: str
) -> None:
    server.inject(Fault(stall=5.0, stall_after=2))
    async with AsyncClient(server.base_url, timeout=TOTAL, retry_policy=fast()) as client:
        exc, _ = await _elapsed_error(lambda: client.complete(PROMPT), total=TOTAL)
        assert _timed_out(exc)


async def test_total_bounds_a_paced_stream_that_never_stalls(
    server: LocalServer, anyio_backend: str
) -> None:
    server.pieces, server.delay = 100, 0.05
    async with AsyncClient(server.base_url, timeout=Timeout(total=TOTAL, read=10.0)) as client:
        exc, _ = await _elapsed_error(lambda: _drain(client.stream(PROMPT)), total=TOTAL)
        assert _timed_out(exc)


async def test_total_bounds_a_stalled_token_fetch(server: LocalServer, anyio_backend: str) -> None:
    server.inject(Fault(endpoint="token", stall=5.0))
    async with AsyncClient(server.base_url, timeout=Timeout(total=TOTAL, read=10.0)) as client:
        exc, _ = await _elapsed_error(lambda: client.complete(PROMPT), total=TOTAL)
        assert isinstance(exc, APITimeoutError)
    assert not server.chat_requests


async def test_total_bounds_retries_and_back_off(server: LocalServer, anyio_backend: str) -> None:
    server.always = Fault(status=503)
    policy = RetryPolicy(max_retries=20, initial_backoff=0.3, max_backoff=0.3, jitter=0.0)
    async with AsyncClient(server.base_url, timeout=TOTAL, retry_policy=policy) as client:
        exc, _ = await _elapsed_error(lambda: client.complete(PROMPT), total=TOTAL)
        assert isinstance(exc, APIError)
    assert 2 <= len(server.chat_requests) <= 5


async def test_total_bounds_repeated_read_timeouts(server: LocalServer, anyio_backend: str) -> None:
    server.always = Fault(stall=5.0)
    timeout = Timeout(total=TOTAL, read=0.2)
    async with AsyncClient(server.base_url, timeout=timeout, retry_policy=fast(20)) as client:
        exc, _ = await _elapsed_error(lambda: client.complete(PROMPT), total=TOTAL)
        assert isinstance(exc, APITimeoutError)
    assert len(server.chat_requests) >= 2


async def test_retry_after_longer_than_the_time_left_fails_at_once(
    server: LocalServer, anyio_backend: str
) -> None:
    server.inject(Fault(status=429, retry_after="5"))
    async with AsyncClient(server.base_url, timeout=TOTAL, retry_policy=fast()) as client:
        exc, elapsed = await _elapsed_error(lambda: client.complete(PROMPT), total=TOTAL)
        assert isinstance(exc, RateLimitError)
        assert elapsed < TOTAL - 0.1
    assert len(server.chat_requests) == 1


async def test_retry_after_is_honoured(server: LocalServer, anyio_backend: str) -> None:
    server.inject(Fault(status=429, retry_after="0.3"))
    async with AsyncClient(server.base_url, retry_policy=fast()) as client:
        start = time.monotonic()
        assert await client.complete(PROMPT) == REPLY
        assert time.monotonic() - start >= 0.25
    assert len(server.chat_requests) == 2


# --------------------------------------------------------------------------- the token


async def test_token_is_fetched_once_and_a_warm_chat_is_one_round_trip(
    client: AsyncClient, server: LocalServer
) -> None:
    assert client.token is None
    assert await client.complete(PROMPT) == REPLY
    token = client.token
    server.reset()
    for _ in range(3):
        assert await client.complete(PROMPT) == REPLY
        assert "".join(await _drain(client.stream(PROMPT))) == REPLY
    assert len(server.requests) == 6
    assert {r.headers["uniqueid"] for r in server.requests} == {token}
    assert server.tokens_issued == 0
    assert len(pool_connections(client)) == 1
    assert server.open_connections == 1


async def test_get_token_caches_and_refreshes(client: AsyncClient, server: LocalServer) -> None:
    token = await client.get_token()
    assert token == client.token
    assert await client.get_token() == token
    assert server.tokens_issued == 1
    fresh = await client.get_token(refresh=True)
    assert fresh != token
    assert server.tokens_issued == 2
    await client.complete(PROMPT)
    assert server.chat_requests[0].headers["uniqueid"] == fresh


async def test_a_stale_token_is_replaced_once(client: AsyncClient, server: LocalServer) -> None:
    client.token = "stale-token-from-yesterday"
    assert await client.complete(PROMPT) == REPLY
    assert [r.headers["uniqueid"] for r in server.chat_requests] == [
        "stale-token-from-yesterday",
        client.token,
    ]
    assert server.tokens_issued == 1


async def test_expired_tokens_are_refreshed_mid_session(
    client: AsyncClient, server: LocalServer
) -> None:
    assert await client.complete(PROMPT) == REPLY
    server.expire_tokens()
    pieces, _, exc = await run_stream(client)
    assert exc is None
    assert pieces == server.pieces_for(PROMPT)
    assert server.tokens_issued == 2


async def test_200_tasks_share_one_token_fetch(server: LocalServer, anyio_backend: str) -> None:
    server.pieces = 3
    server.inject(Fault(endpoint="token", stall=0.3))
    expected = "".join(server.pieces_for(PROMPT))
    results: list[str] = []
    async with AsyncClient(server.base_url, retry_policy=fast()) as client:

        async def call() -> None:
            results.append(await client.complete(PROMPT))

        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(call)
        assert pool_active_requests(client) == 0
    assert results == [expected] * 200
    assert server.tokens_issued == 1
    assert len(server.token_requests) == 1
    assert len(server.chat_requests) == 200


async def test_200_concurrent_streams_are_all_exact(
    server: LocalServer, anyio_backend: str
) -> None:
    server.pieces = 4
    expected = server.pieces_for(PROMPT)
    results: dict[int, list[str]] = {}
    async with AsyncClient(server.base_url, retry_policy=fast()) as client:
        await client.get_token()

        async def one(index: int) -> None:
            pieces, _, exc = await run_stream(client, PROMPT)
            assert exc is None
            results[index] = pieces

        async with anyio.create_task_group() as group:
            for index in range(200):
                group.start_soon(one, index)
        assert pool_active_requests(client) == 0
    assert len(results) == 200
    assert all(pieces == expected for pieces in results.values())
    assert len(server.chat_requests) == 200
    assert len({r.json()["conversationId"] for r in server.chat_requests}) == 200


# --------------------------------------------------------------------------- leaving early


@pytest.fixture
def paced(server: LocalServer) -> LocalServer:
    """A server whose answers take about two seconds, so a client can leave mid-stream."""
    server.pieces, server.delay = 40, 0.05
    return server


async def _left_early(client: AsyncClient, server: LocalServer, disconnects: int) -> None:
    assert await wait_for(server, lambda s: s.disconnects == disconnects + 1)
    assert pool_active_requests(client) == 0
    server.delay = 0.0
    assert await client.complete(PROMPT) == "".join(server.pieces_for(PROMPT))


async def test_break_out_of_an_async_with_block(client: AsyncClient, paced: LocalServer) -> None:
    before = paced.disconnects
    async with client.stream(PROMPT) as stream:
        async for _ in stream:
            break
    assert stream.text == paced.pieces_for(PROMPT)[0]
    await _left_early(client, paced, before)


async def test_break_then_aclose(client: AsyncClient, paced: LocalServer) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    async for _ in stream:
        break
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
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


@pytest.mark.parametrize("with_block", [True, False], ids=["async-with", "bare-async-for"])
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
    assert await wait_for(paced, lambda s: s.disconnects == before + 5)
    assert pool_active_requests(client) == 0
    paced.delay = 0.0
    assert await client.complete(PROMPT) == "".join(paced.pieces_for(PROMPT))


async def test_garbage_collection_of_an_abandoned_stream(
    client: AsyncClient, paced: LocalServer
) -> None:
    before = paced.disconnects
    stream = client.stream(PROMPT)
    await stream.__anext__()
    del stream
    gc.collect()
    # The event loop's async generator hooks close the abandoned generator.
    for _ in range(50):
        await anyio.sleep(0.02)
        if paced.disconnects == before + 1:
            break
    await _left_early(client, paced, before)


async def test_an_unstarted_stream_sends_nothing(client: AsyncClient, server: LocalServer) -> None:
    stream = client.stream(PROMPT)
    await stream.aclose()
    async with client.stream(PROMPT):
        pass
    assert server.requests == []


# --------------------------------------------------------------------------- bad input


BAD_MESSAGES = [
    pytest.param([], id="empty-list"),
    pytest.param([{"role": "user"}], id="no-content"),
    pytest.param([{"role": "robot", "content": "x"}], id="bad-role"),
    pytest.param([{"role": "user", "content": None}], id="content-none"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("messages", BAD_MESSAGES)
async def test_bad_messages_fail_before_any_request(
    client: AsyncClient, server: LocalServer, messages: object
) -> None:
    with pytest.raises(InvalidRequestError):
        client.stream(messages)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        await client.complete(messages)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        client.stream(PROMPT, conversation_id="")
    assert server.requests == []


async def test_bad_options_fail_in_the_constructor(server: LocalServer, anyio_backend: str) -> None:
    for options in (
        {"base_url": "ftp://example.com"},
        {"proxy": "gopher://127.0.0.1:70"},
        {"timeout": -1},
        {"max_retries": -1},
    ):
        with pytest.raises(InvalidRequestError):
            AsyncClient(**{"base_url": server.base_url, **options})  # type: ignore[arg-type]
    async with httpx.AsyncClient() as own:
        with pytest.raises(InvalidRequestError):
            AsyncClient(server.base_url, proxy="http://127.0.0.1:3128", http_client=own)
    assert server.requests == []


# --------------------------------------------------------------------------- configuration


async def test_base_url_falls_back_to_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url)
    async with AsyncClient(retry_policy=fast()) as client:
        assert client.base_url == server.base_url
        assert await client.complete(PROMPT) == REPLY


async def test_own_http_client_is_used_and_left_open(
    server: LocalServer, anyio_backend: str
) -> None:
    async with httpx.AsyncClient() as own:
        client = AsyncClient(server.base_url, http_client=own, retry_policy=fast())
        assert await client.complete(PROMPT) == REPLY
        await client.aclose()
        assert not own.is_closed
        assert (await own.get(server.base_url + "/nowhere")).status_code == 404


async def test_own_client_is_closed_by_aclose(server: LocalServer, anyio_backend: str) -> None:
    async with AsyncClient(server.base_url, retry_policy=fast()) as client:
        await client.complete(PROMPT)
        http = client._transport.http
    assert http.is_closed
    assert await wait_for(server, lambda s: s.open_connections == 0)
