"""The blocking ``Client`` against the local server: every fault, the time limits, the token
cache, leaving a stream early, bad input, configuration, and use without an event loop.

``test_client_async.py`` is its twin: the same cases, in the same order and under the same
names, for the ``AsyncClient`` on asyncio and trio. A case added here gets its twin there.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import trio

import aichatonline
from aichatonline import (
    DEFAULT_BASE_URL,
    APIError,
    Client,
    InvalidRequestError,
    RetryPolicy,
    Stream,
    Timeout,
)
from aichatonline.testing import Fault, LocalServer
from tests.helpers import (
    BAD_MESSAGES,
    BAD_OPTIONS,
    PROMPT,
    REPLY,
    SAFE_TIMEOUT,
    closed_port,
    fast,
    pool_active_requests,
    recording_hooks,
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


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("messages", BAD_MESSAGES)
def test_bad_messages_fail_before_any_request(
    client: Client, server: LocalServer, messages: object
) -> None:
    with pytest.raises(InvalidRequestError):
        client.stream(messages)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        client.complete(messages)  # type: ignore[arg-type]
    assert server.requests == []


def test_bad_conversation_id_and_token(client: Client, server: LocalServer) -> None:
    with pytest.raises(InvalidRequestError):
        client.stream(PROMPT, conversation_id="")
    with pytest.raises(InvalidRequestError):
        client.complete(PROMPT, conversation_id=123)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        client.token = ""
    with pytest.raises(InvalidRequestError):
        client.token = 42  # type: ignore[assignment]
    assert server.requests == []


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_bad_options_fail_in_the_constructor(server: LocalServer, options: dict) -> None:
    with pytest.raises(InvalidRequestError):
        Client(**{"base_url": server.base_url, **options})
    assert server.requests == []


def test_proxy_and_http_client_together_are_refused(server: LocalServer) -> None:
    with httpx.Client() as own, pytest.raises(InvalidRequestError, match="proxy"):
        Client(base_url=server.base_url, proxy="http://127.0.0.1:3128", http_client=own)
    assert server.requests == []


# --------------------------------------------------------------------------- configuration


def test_base_url_falls_back_to_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url + "/")
    with Client(retry_policy=fast()) as client:
        assert client.base_url == server.base_url
        assert client.complete(PROMPT) == REPLY
    assert len(server.chat_requests) == 1


def test_explicit_base_url_wins_over_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    with Client(base_url=server.base_url, retry_policy=fast()) as client:
        assert client.complete(PROMPT) == REPLY


def test_base_url_defaults_to_the_real_service() -> None:
    with Client() as client:
        assert client.base_url == DEFAULT_BASE_URL == "https://aichatonlineorg.erweima.ai"
        assert client.proxy is None
        assert client.max_retries == 2
        assert client.timeout == aichatonline.DEFAULT_TIMEOUT
        assert client.timeout.total is None


def test_proxy_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICHATONLINE_PROXY", "socks5://127.0.0.1:1080")
    with Client() as client:
        assert client.proxy == "socks5://127.0.0.1:1080"
    with Client(proxy="https://127.0.0.1:3128", base_url="http://127.0.0.1:1") as client:
        assert client.proxy == "https://127.0.0.1:3128"


def test_an_https_proxy_in_front_of_an_https_service_is_taken_by_the_blocking_client() -> None:
    # httpcore runs TLS inside TLS on blocking sockets too (the SDK's own stack could not).
    with Client(
        base_url="https://example.invalid", proxy="https://user:pw-1234@127.0.0.1:3128"
    ) as client:
        assert client.proxy == "https://user:pw-1234@127.0.0.1:3128"
        assert "pw-1234" not in repr(client)


def test_own_http_client_is_used_and_left_open(server: LocalServer) -> None:
    seen: list[str] = []
    with httpx.Client(event_hooks=recording_hooks(seen)) as own:
        client = Client(base_url=server.base_url, http_client=own, retry_policy=fast())
        assert client.complete(PROMPT) == REPLY
        assert "".join(client.stream(PROMPT)) == REPLY
        # Every request went through your client.
        assert seen == [
            "GET /api/v1/user/getUniqueId",
            "POST /aichatonline/api/chat/gpt",
            "POST /aichatonline/api/chat/gpt",
        ]
        client.close()
        assert not own.is_closed
        assert own.get(server.base_url + "/nowhere").status_code == 404


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


def test_timeout_forms_are_accepted(server: LocalServer) -> None:
    forms = [
        5.0,
        None,
        Timeout(total=5.0, connect=1.0, read=2.0, write=1.0, pool=1.0),
        Timeout(5.0, first_piece=3.0),
        httpx.Timeout(3.0),
    ]
    for timeout in forms:
        with Client(base_url=server.base_url, timeout=timeout, retry_policy=fast()) as client:
            assert client.complete(PROMPT) == REPLY
    # A number sets the four per-operation limits, as in httpx; no whole-call bound.
    with Client(base_url=server.base_url, timeout=2.5) as client:
        assert client.timeout == Timeout(connect=2.5, read=2.5, write=2.5, pool=2.5)
        assert (client.timeout.total, client.timeout.first_piece) == (None, None)
    with Client(base_url=server.base_url, timeout=httpx.Timeout(3.0, connect=1.0)) as client:
        assert client.timeout == Timeout(3.0, connect=1.0)
    with Client(base_url=server.base_url, timeout=None) as client:
        assert client.timeout == Timeout(None)
        assert client.timeout.total is None
        client.timeout = 4  # converted, as httpx's setter does
        assert client.timeout == Timeout(4.0)


def test_max_retries_is_a_shortcut_for_the_policy(server: LocalServer) -> None:
    with Client(base_url=server.base_url, max_retries=5) as client:
        assert client.max_retries == 5
        assert client.retry_policy.max_retries == 5
        client.max_retries = 1
        assert client.retry_policy.max_retries == 1


def test_max_retries_zero_sends_one_request(server: LocalServer) -> None:
    server.inject(Fault(status=503))
    with Client(base_url=server.base_url, max_retries=0) as client, pytest.raises(APIError):
        client.complete(PROMPT)
    assert len(server.chat_requests) == 1


def test_set_testing_turns_the_back_off_off(server: LocalServer) -> None:
    slow = RetryPolicy(max_retries=2, initial_backoff=2.0, max_backoff=2.0, jitter=0.0)
    server.inject(Fault(status=503), Fault(status=503))
    with aichatonline.set_testing(True), Client(base_url=server.base_url, retry_policy=slow) as c:
        assert aichatonline.is_testing()
        started = time.monotonic()
        assert c.complete(PROMPT) == REPLY
        assert time.monotonic() - started < 1.0
    assert not aichatonline.is_testing()
    assert len(server.chat_requests) == 3


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
