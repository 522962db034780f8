"""Issue 8, items 1 and 2: timeouts mean what they mean in httpx, and ``total`` always holds.

1. A number (or an ``httpx.Timeout``) sets the per-operation limits only: a long, healthy
   answer is never cut because it is long. ``Timeout(first_piece=...)`` bounds the wait for
   the first text piece (retryable). A limit that fires is an ``APITimeoutError`` whose
   ``limit``/``seconds`` and message name it, and nothing claims the peer closed.
2. ``Timeout(total=...)`` bounds the whole call in every phase, on the sync client too,
   against servers that trickle one byte at a time (each byte well within the read limit).

Every behaviour runs on the sync client and on the async client under asyncio and trio,
against the raw-socket servers of ``tests/hostile.py``. Times are scaled down: a trickle of
one byte every 0.2 s against ``Timeout(total=0.5)``; a slow stream of about 1.2 s against
``timeout=0.5``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from aichatonline import (
    APITimeoutError,
    AsyncClient,
    Client,
    RetryPolicy,
    ServerError,
    StreamInterrupted,
    Timeout,
)
from tests import hostile
from tests.helpers import fast

PROMPT = "Tell me about the weather"
SLOW = [f"piece {i}; " for i in range(7)]  # one every 0.2 s: about 1.2 s in all
EVERY = 0.2
TOTAL = 0.5
TRICKLE = 0.2  # seconds between two bytes: well within every read limit in play
MARGIN = 0.5  # allowed past a bound (thread wake-ups, closing sockets, a loaded machine)


pytestmark = pytest.mark.usefixtures("isolated")


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every error chained to it (causes and contexts)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def assert_never_says_peer_closed(exc: BaseException | None) -> None:
    for error in chain(exc):
        for text in (str(error), repr(error)):
            assert "peer closed" not in text.lower(), text
            assert "server disconnected" not in text.lower(), text


def assert_timeout(exc: BaseException | None, limit: str, seconds: float) -> None:
    """``exc`` is the ``APITimeoutError`` of ``limit`` and says so."""
    assert isinstance(exc, APITimeoutError), repr(exc)
    assert exc.limit == limit, repr(exc)
    assert exc.seconds == seconds
    assert limit in str(exc), str(exc)
    assert f"{seconds:g}" in str(exc), str(exc)
    assert_never_says_peer_closed(exc)


# --------------------------------------------------------------------------- 1. numbers


#: The three ways of saying "0.5 s for each operation" (built in the test: ``Timeout(0.5)``
#: is new in this round).
NUMBER_FORMS = {
    "number": lambda: 0.5,
    "httpx.Timeout": lambda: httpx.Timeout(0.5),
    "Timeout": lambda: Timeout(0.5),
}


@pytest.mark.parametrize("form", list(NUMBER_FORMS))
def test_number_is_a_per_operation_limit_a_slow_stream_completes_sync(form: str) -> None:
    timeout = NUMBER_FORMS[form]()
    with hostile.HostileServer(hostile.route(chat=hostile.stream(SLOW, EVERY))) as server:
        with Client(base_url=server.base_url, timeout=timeout, retry_policy=fast(0)) as client:
            outcome = hostile.drain(client.stream(PROMPT))
        assert outcome.error is None, outcome
        assert outcome.pieces == SLOW
        assert outcome.text == "".join(SLOW)
        assert outcome.seconds > 2 * 0.5  # the answer really took longer than the number
        assert len(server.chat_requests) == 1


@pytest.mark.anyio
async def test_number_is_a_per_operation_limit_a_slow_stream_completes_async(
    anyio_backend: str,
) -> None:
    with hostile.HostileServer(hostile.route(chat=hostile.stream(SLOW, EVERY))) as server:
        async with AsyncClient(
            base_url=server.base_url, timeout=0.5, retry_policy=fast(0)
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
        assert outcome.error is None, outcome
        assert outcome.pieces == SLOW
        assert outcome.text == "".join(SLOW)
        assert outcome.seconds > 2 * 0.5
        assert len(server.chat_requests) == 1


def _check_number_limits(client: Client | AsyncClient) -> None:
    limits = client.timeout
    assert (limits.connect, limits.read, limits.write, limits.pool) == (5, 5, 5, 5)
    assert limits.total is None
    assert limits.first_piece is None
    client.timeout = 7  # converted the same way
    assert client.timeout.read == 7
    assert client.timeout.total is None


def test_number_sets_connect_read_write_pool_and_no_total_sync() -> None:
    with Client(base_url="http://127.0.0.1:9", timeout=5) as client:
        _check_number_limits(client)


@pytest.mark.anyio
async def test_number_sets_connect_read_write_pool_and_no_total_async(anyio_backend: str) -> None:
    async with AsyncClient(base_url="http://127.0.0.1:9", timeout=5) as client:
        _check_number_limits(client)


def test_default_timeout_has_no_whole_call_bound() -> None:
    with Client(base_url="http://127.0.0.1:9") as client:
        limits = client.timeout
    assert limits.total is None
    assert limits.first_piece is None
    assert (limits.connect, limits.read, limits.write, limits.pool) == (10, 60, 30, 30)


# --------------------------------------------------------------------------- 1. first_piece

#: Accepts the chat request and never answers; answers with a head and then nothing.
NEVER_ANSWERS = hostile.silent(give_up=5.0)
HEAD_THEN_NOTHING = hostile.silent(give_up=5.0, then=hostile.CHUNKED_HEAD)
FIRST_PIECE = 0.4


@pytest.mark.parametrize("silence", [NEVER_ANSWERS, HEAD_THEN_NOTHING], ids=["no-head", "head"])
def test_first_piece_fires_per_attempt_and_is_retried_sync(silence: hostile.Handler) -> None:
    timeout = Timeout(first_piece=FIRST_PIECE)
    with hostile.HostileServer(hostile.route(chat=silence)) as server:
        with Client(base_url=server.base_url, timeout=timeout, retry_policy=fast(1)) as client:
            outcome = hostile.drain(client.stream(PROMPT))
        assert_timeout(outcome.error, "first_piece", FIRST_PIECE)
        assert outcome.text == ""
        assert len(server.chat_requests) == 2  # retryable; each attempt its own window
        assert 2 * FIRST_PIECE - 0.1 <= outcome.seconds <= 2 * FIRST_PIECE + MARGIN


@pytest.mark.anyio
@pytest.mark.parametrize("silence", [NEVER_ANSWERS, HEAD_THEN_NOTHING], ids=["no-head", "head"])
async def test_first_piece_fires_per_attempt_and_is_retried_async(
    anyio_backend: str, silence: hostile.Handler
) -> None:
    timeout = Timeout(first_piece=FIRST_PIECE)
    with hostile.HostileServer(hostile.route(chat=silence)) as server:
        async with AsyncClient(
            base_url=server.base_url, timeout=timeout, retry_policy=fast(1)
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
        assert_timeout(outcome.error, "first_piece", FIRST_PIECE)
        assert outcome.text == ""
        assert len(server.chat_requests) == 2
        assert 2 * FIRST_PIECE - 0.1 <= outcome.seconds <= 2 * FIRST_PIECE + MARGIN


def test_first_piece_timeout_then_a_healthy_answer_sync() -> None:
    chat = [NEVER_ANSWERS, hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        timeout = Timeout(first_piece=FIRST_PIECE)
        with Client(base_url=server.base_url, timeout=timeout, retry_policy=fast(1)) as client:
            assert client.complete(PROMPT) == "Hello"
        assert len(server.chat_requests) == 2


@pytest.mark.anyio
async def test_first_piece_timeout_then_a_healthy_answer_async(anyio_backend: str) -> None:
    chat = [NEVER_ANSWERS, hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        timeout = Timeout(first_piece=FIRST_PIECE)
        async with AsyncClient(
            base_url=server.base_url, timeout=timeout, retry_policy=fast(1)
        ) as client:
            assert await client.complete(PROMPT) == "Hello"
        assert len(server.chat_requests) == 2


# --------------------------------------------------------------------------- 1. read, connect

#: A head, one piece, then silence.
ONE_PIECE_THEN_NOTHING = hostile.silent(
    give_up=5.0, then=hostile.CHUNKED_HEAD + hostile.chunk(hostile.ndjson("Hel"))
)
READ = 0.5


def _check_read_timeout_after_text(outcome: hostile.Outcome) -> None:
    assert outcome.pieces == ["Hel"]
    assert isinstance(outcome.error, StreamInterrupted), repr(outcome.error)
    assert outcome.error.partial == "Hel"
    assert_timeout(outcome.error.__cause__, "read", READ)
    assert_never_says_peer_closed(outcome.error)
    assert outcome.seconds <= READ + MARGIN


def test_read_timeout_names_read_sync() -> None:
    with hostile.HostileServer(hostile.route(chat=ONE_PIECE_THEN_NOTHING)) as server:
        timeout = Timeout(read=READ)
        with Client(base_url=server.base_url, timeout=timeout, retry_policy=fast(0)) as client:
            outcome = hostile.drain(client.stream(PROMPT))
    _check_read_timeout_after_text(outcome)


@pytest.mark.anyio
async def test_read_timeout_names_read_async(anyio_backend: str) -> None:
    with hostile.HostileServer(hostile.route(chat=ONE_PIECE_THEN_NOTHING)) as server:
        timeout = Timeout(read=READ)
        async with AsyncClient(
            base_url=server.base_url, timeout=timeout, retry_policy=fast(0)
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
    _check_read_timeout_after_text(outcome)


def test_connect_timeout_names_connect_sync() -> None:
    with (
        hostile.unaccepting() as url,
        Client(base_url=url, timeout=Timeout(connect=READ), retry_policy=fast(0)) as client,
    ):
        outcome = hostile.drain(client.stream(PROMPT))
    assert_timeout(outcome.error, "connect", READ)
    assert outcome.seconds <= READ + MARGIN


@pytest.mark.anyio
async def test_connect_timeout_names_connect_async(anyio_backend: str) -> None:
    with hostile.unaccepting() as url:
        async with AsyncClient(
            base_url=url, timeout=Timeout(connect=READ), retry_policy=fast(0)
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
    assert_timeout(outcome.error, "connect", READ)
    assert outcome.seconds <= READ + MARGIN


# --------------------------------------------------------------------------- 2. total, every phase

_LENGTH_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 200\r\n\r\n"
)
_TOKEN_BODY = b'{"code":200,"data":"' + hostile.TOKEN.encode() + b'"}'
_TOKEN_RESPONSE = hostile.response(200, _TOKEN_BODY)
_TOKEN_HEAD = _TOKEN_RESPONSE[: -len(_TOKEN_BODY)]
_LINE = hostile.ndjson("this line arrives one byte at a time")

#: phase -> (server options, route options): each holds the call in that phase for longer
#: than ``TOTAL``, one byte every ``TRICKLE`` seconds (or not at all).
PHASES: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "response-head": ({}, {"chat": hostile.trickle(hostile.CHUNKED_HEAD, TRICKLE)}),
    "body": ({}, {"chat": hostile.trickle(_LINE, TRICKLE, then=_LENGTH_HEAD)}),
    "token-head": ({}, {"token_": hostile.trickle(_TOKEN_RESPONSE, TRICKLE)}),
    "token-body": ({}, {"token_": hostile.trickle(_TOKEN_BODY, TRICKLE, then=_TOKEN_HEAD)}),
    # The server reads the request head, never the body: sending blocks once buffers fill.
    "sending": ({"read_bodies": False}, {"chat": hostile.silent(give_up=4.0)}),
}
#: Big enough to fill the loopback socket buffers in the "sending" phase.
BIG_PROMPT = "x" * (16 * 1024 * 1024)


def _prompt(phase: str) -> str:
    return BIG_PROMPT if phase == "sending" else PROMPT


def _check_total(outcome: hostile.Outcome) -> None:
    assert TOTAL - 0.1 <= outcome.seconds <= TOTAL + MARGIN, (outcome.seconds, outcome.error)
    assert_timeout(outcome.error, "total", TOTAL)
    assert outcome.text == ""


@pytest.mark.parametrize("phase", list(PHASES))
def test_total_holds_in_every_phase_sync(phase: str) -> None:
    server_options, route_options = PHASES[phase]
    handler = hostile.route(**route_options)  # type: ignore[arg-type]
    server = hostile.HostileServer(handler, **server_options)  # type: ignore[arg-type]
    with (
        server,
        Client(
            base_url=server.base_url, timeout=Timeout(total=TOTAL), retry_policy=fast(0)
        ) as client,
    ):
        if phase == "sending":  # a server that reads no bodies answers one request only
            client.token = hostile.TOKEN
        outcome = hostile.drain(client.stream(_prompt(phase)))
    _check_total(outcome)


@pytest.mark.anyio
@pytest.mark.parametrize("phase", list(PHASES))
async def test_total_holds_in_every_phase_async(anyio_backend: str, phase: str) -> None:
    server_options, route_options = PHASES[phase]
    handler = hostile.route(**route_options)  # type: ignore[arg-type]
    with hostile.HostileServer(handler, **server_options) as server:  # type: ignore[arg-type]
        async with AsyncClient(
            base_url=server.base_url, timeout=Timeout(total=TOTAL), retry_policy=fast(0)
        ) as client:
            if phase == "sending":  # a server that reads no bodies answers one request only
                client.token = hostile.TOKEN
            outcome = await hostile.adrain(client.stream(_prompt(phase)))
    _check_total(outcome)


def test_total_holds_while_connecting_sync() -> None:
    with (
        hostile.unaccepting() as url,
        Client(base_url=url, timeout=Timeout(total=TOTAL), retry_policy=fast(0)) as client,
    ):
        outcome = hostile.drain(client.stream(PROMPT))
    _check_total(outcome)


@pytest.mark.anyio
async def test_total_holds_while_connecting_async(anyio_backend: str) -> None:
    with hostile.unaccepting() as url:
        async with AsyncClient(
            base_url=url, timeout=Timeout(total=TOTAL), retry_policy=fast(0)
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
    _check_total(outcome)


#: A back-off (5 s) longer than what is left of the call.
LONG_BACKOFF = RetryPolicy(max_retries=2, initial_backoff=5.0, max_backoff=5.0, jitter=0.0)


def _check_backoff(outcome: hostile.Outcome, server: hostile.HostileServer) -> None:
    # Waiting past the bound is wrong; giving up at once with the last error, or a total
    # timeout at the bound, both hold it.
    assert isinstance(outcome.error, (ServerError, APITimeoutError)), repr(outcome.error)
    if isinstance(outcome.error, APITimeoutError):
        assert_timeout(outcome.error, "total", TOTAL)
    assert outcome.seconds <= TOTAL + MARGIN
    assert len(server.chat_requests) == 1


def test_total_holds_during_back_off_sync() -> None:
    with hostile.HostileServer(hostile.route(chat=hostile.reply(500))) as server:
        with Client(
            base_url=server.base_url, timeout=Timeout(total=TOTAL), retry_policy=LONG_BACKOFF
        ) as client:
            outcome = hostile.drain(client.stream(PROMPT))
        _check_backoff(outcome, server)


@pytest.mark.anyio
async def test_total_holds_during_back_off_async(anyio_backend: str) -> None:
    with hostile.HostileServer(hostile.route(chat=hostile.reply(500))) as server:
        async with AsyncClient(
            base_url=server.base_url, timeout=Timeout(total=TOTAL), retry_policy=LONG_BACKOFF
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
        _check_backoff(outcome, server)


def test_total_bounds_a_healthy_slow_stream_with_a_total_message() -> None:
    """The one way to cut a long answer is asking for it: ``total``, named as such."""
    server = hostile.HostileServer(hostile.route(chat=hostile.stream(SLOW, EVERY)))
    with (
        server,
        Client(
            base_url=server.base_url, timeout=Timeout(total=0.5), retry_policy=fast(0)
        ) as client,
    ):
        started = time.monotonic()
        outcome = hostile.drain(client.stream(PROMPT))
    assert isinstance(outcome.error, StreamInterrupted), repr(outcome.error)
    assert outcome.error.partial == outcome.text == "".join(outcome.pieces)
    assert 0 < len(outcome.pieces) < len(SLOW)
    assert_timeout(outcome.error.__cause__, "total", 0.5)
    assert_never_says_peer_closed(outcome.error)
    assert time.monotonic() - started <= 0.5 + MARGIN
