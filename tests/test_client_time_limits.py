"""Time limits mean what they mean in httpx: per operation, named when they fire.

- A number (or an ``httpx.Timeout``, or ``Timeout(n)``) sets the connect, read, write and
  pool limits only: a long, healthy answer is never cut because it is long, and a silence
  longer than the number is a read timeout. The default has no whole-call bound either.
- ``Timeout(first_piece=...)`` bounds the wait for the first text piece of each attempt
  (retryable), and only that wait: a later silence is the read limit's business.
- A limit that fires is an ``APITimeoutError`` whose ``limit``/``seconds`` and message name
  it (``read``, ``connect``, ``first_piece``), and nothing in the chain blames the peer.
- ``Retry-After`` is honoured; one longer than the time left fails at once. ``timeout=`` and
  ``max_retries=`` given to one call apply to that call only. A huge timeout is fine.

``Timeout(total=...)``: ``test_client_total_bound.py``. Every test runs on the blocking
``Client`` and on the ``AsyncClient`` under asyncio and trio (``tests/faces.py``), against
the bundled server or the raw-socket servers of ``tests/hostile.py``. Times are scaled
down: a slow stream of about 1.2 s against a limit of 0.5 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import aichatonline
from aichatonline import (
    APIError,
    APITimeoutError,
    RateLimitError,
    StreamInterrupted,
    Timeout,
)
from aichatonline.testing import Fault, LocalServer
from tests import hostile
from tests.faces import Api, backend_of
from tests.helpers import (
    MARGIN,
    PROMPT,
    REPLY,
    SAFE_TIMEOUT,
    TOTAL,
    assert_never_says_peer_closed,
    assert_timed_out,
    fast,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]

SLOW = [f"piece {i}; " for i in range(7)]  # one every 0.2 s: about 1.2 s in all
EVERY = 0.2


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


# --------------------------------------------------------------------------- a number

#: The three ways of saying "0.5 s for each operation".
NUMBER_FORMS: dict[str, Callable[[], Any]] = {
    "number": lambda: 0.5,
    "httpx.Timeout": lambda: httpx.Timeout(0.5),
    "Timeout": lambda: Timeout(0.5),
}


@pytest.mark.parametrize("form", list(NUMBER_FORMS))
async def test_a_number_is_a_per_operation_limit_a_slow_stream_completes(
    api: Api, form: str
) -> None:
    timeout = NUMBER_FORMS[form]()
    with hostile.HostileServer(hostile.route(chat=hostile.stream(SLOW, EVERY))) as server:
        client = api.kind(base_url=server.base_url, timeout=timeout, retry_policy=fast(0))
        async with api.entered(client):
            outcome = await api.run(client.stream(PROMPT))
        assert outcome.error is None, outcome
        assert outcome.pieces == SLOW
        assert outcome.text == "".join(SLOW)
        assert outcome.seconds > 2 * 0.5  # the answer really took longer than the number
        assert len(server.chat_requests) == 1


async def test_a_number_timeout_lets_a_long_answer_finish(api: Api, server: LocalServer) -> None:
    # timeout=<number> limits each operation, as in httpx: an answer that takes longer than
    # the number, but never goes silent that long, completes.
    server.pieces, server.delay = 10, 0.08  # 0.8 s an answer
    expected = "".join(server.pieces_for(PROMPT))
    async with api.entered(api.client(server, timeout=TOTAL, retry_policy=fast(0))) as client:
        assert client.timeout == Timeout(TOTAL)
        assert client.timeout.total is None
        started = time.monotonic()
        assert await api(client.complete(PROMPT)) == expected
        assert time.monotonic() - started > TOTAL
        started = time.monotonic()
        assert "".join((await api.run(client.stream(PROMPT))).pieces) == expected
        assert time.monotonic() - started > TOTAL


async def test_a_number_timeout_limits_each_silence(api: Api, server: LocalServer) -> None:
    server.inject(Fault(stall=5.0, stall_after=2))
    async with api.entered(api.client(server, timeout=TOTAL, retry_policy=fast(0))) as client:
        stream = client.stream(PROMPT)
        exc, _ = await api.failure(lambda: api.drain(stream), within=TOTAL)
        assert isinstance(exc, StreamInterrupted)
        assert_timed_out(exc, "read", TOTAL)
        assert exc.partial == "".join(server.pieces_for(PROMPT)[:2])


async def test_a_number_sets_connect_read_write_pool_and_no_total(api: Api) -> None:
    async with api.entered(api.kind(base_url="http://127.0.0.1:9", timeout=5)) as client:
        limits = client.timeout
        assert (limits.connect, limits.read, limits.write, limits.pool) == (5, 5, 5, 5)
        assert limits.total is None
        assert limits.first_piece is None
        client.timeout = 7  # converted the same way
        assert client.timeout.read == 7
        assert client.timeout.total is None


async def test_the_default_timeout_has_no_whole_call_bound(api: Api) -> None:
    async with api.entered(api.kind(base_url="http://127.0.0.1:9")) as client:
        limits = client.timeout
    assert limits == aichatonline.DEFAULT_TIMEOUT
    assert limits.total is None
    assert limits.first_piece is None
    assert (limits.connect, limits.read, limits.write, limits.pool) == (10, 60, 30, 30)


async def test_a_huge_timeout_is_fine(api: Api, server: LocalServer) -> None:
    async with api.entered(api.kind(base_url=server.base_url, timeout=1e10)) as client:
        assert await api(client.complete("Hi")) == "".join(server.pieces_for("Hi"))


# --------------------------------------------------------------------------- first_piece

#: Accepts the chat request and never answers; answers with a head and then nothing.
NEVER_ANSWERS = hostile.silent(give_up=5.0)
HEAD_THEN_NOTHING = hostile.silent(give_up=5.0, then=hostile.CHUNKED_HEAD)
FIRST_PIECE = 0.4


@pytest.mark.parametrize("silence", [NEVER_ANSWERS, HEAD_THEN_NOTHING], ids=["no-head", "head"])
async def test_first_piece_fires_per_attempt_and_is_retried(
    api: Api, silence: hostile.Handler
) -> None:
    timeout = Timeout(first_piece=FIRST_PIECE)
    with hostile.HostileServer(hostile.route(chat=silence)) as server:
        client = api.kind(base_url=server.base_url, timeout=timeout, retry_policy=fast(1))
        async with api.entered(client):
            outcome = await api.run(client.stream(PROMPT))
        assert isinstance(outcome.error, APITimeoutError), outcome
        assert_timed_out(outcome.error, "first_piece", FIRST_PIECE)
        assert outcome.text == ""
        assert len(server.chat_requests) == 2  # retryable; each attempt its own window
        assert 2 * FIRST_PIECE - 0.1 <= outcome.seconds <= 2 * FIRST_PIECE + MARGIN


async def test_first_piece_timeout_then_a_healthy_answer(api: Api) -> None:
    chat = [NEVER_ANSWERS, hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        timeout = Timeout(first_piece=FIRST_PIECE)
        client = api.kind(base_url=server.base_url, timeout=timeout, retry_policy=fast(1))
        async with api.entered(client):
            assert await api(client.complete(PROMPT)) == "Hello"
        assert len(server.chat_requests) == 2


# --------------------------------------------------------------------------- read, connect

#: A head, one piece, then silence.
ONE_PIECE_THEN_NOTHING = hostile.silent(
    give_up=5.0, then=hostile.CHUNKED_HEAD + hostile.chunk(hostile.ndjson("Hel"))
)
READ = 0.5


async def test_a_read_timeout_names_read(api: Api) -> None:
    with hostile.HostileServer(hostile.route(chat=ONE_PIECE_THEN_NOTHING)) as server:
        timeout = Timeout(read=READ)
        client = api.kind(base_url=server.base_url, timeout=timeout, retry_policy=fast(0))
        async with api.entered(client):
            outcome = await api.run(client.stream(PROMPT))
    assert outcome.pieces == ["Hel"]
    assert isinstance(outcome.error, StreamInterrupted), repr(outcome.error)
    assert outcome.error.partial == "Hel"
    assert isinstance(outcome.error.__cause__, APITimeoutError)
    assert_timed_out(outcome.error.__cause__, "read", READ)
    assert_never_says_peer_closed(outcome.error)
    assert outcome.seconds <= READ + MARGIN


async def test_a_connect_timeout_names_connect(api: Api) -> None:
    with hostile.unaccepting() as url:
        client = api.kind(base_url=url, timeout=Timeout(connect=READ), retry_policy=fast(0))
        async with api.entered(client):
            outcome = await api.run(client.stream(PROMPT))
    assert isinstance(outcome.error, APITimeoutError), outcome
    assert_timed_out(outcome.error, "connect", READ)
    assert outcome.seconds <= READ + MARGIN


# --------------------------------------------------------------------------- Retry-After


async def test_retry_after_is_honoured(api: Api, server: LocalServer) -> None:
    server.inject(Fault(status=429, retry_after="0.3"))
    async with api.entered(api.client(server)) as client:
        start = time.monotonic()
        assert await api(client.complete(PROMPT)) == REPLY
        assert time.monotonic() - start >= 0.25
    assert len(server.chat_requests) == 2


async def test_retry_after_longer_than_the_time_left_fails_at_once(
    api: Api, server: LocalServer
) -> None:
    server.inject(Fault(status=429, retry_after="5"))
    async with api.entered(api.client(server, timeout=Timeout(total=TOTAL))) as client:
        exc, elapsed = await api.failure(lambda: client.complete(PROMPT), within=TOTAL)
        assert isinstance(exc, RateLimitError)
        assert exc.retry_after == 5.0
        assert elapsed < TOTAL - 0.1
    assert len(server.chat_requests) == 1


# --------------------------------------------------------------------------- one call


async def test_per_call_timeout_and_max_retries(api: Api, client: Any, server: LocalServer) -> None:
    server.inject(Fault(stall=5.0))
    timeout = Timeout(total=TOTAL, read=10.0)
    exc, _ = await api.failure(lambda: client.complete(PROMPT, timeout=timeout), within=TOTAL)
    assert_timed_out(exc, "total", TOTAL)
    server.inject(Fault(status=503))
    with pytest.raises(APIError):
        await api(client.complete(PROMPT, max_retries=0))
    assert len(server.chat_requests) == 2
    # The client's own settings are untouched.
    assert client.timeout == SAFE_TIMEOUT
    assert client.max_retries == 2
    assert await api(client.complete(PROMPT)) == REPLY
