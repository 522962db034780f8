"""``Timeout(total=...)`` bounds the whole call, in every phase, and says so.

Whatever holds a call up (a connection that is never accepted, a request body the server
does not read, a response head or body trickling in one byte at a time, each byte well
within the read limit; a stalled token fetch, a stall before or after the first line, a
paced answer that never stalls, retries and their back-off, a wait for a pooled
connection), the call ends within ``total`` (plus a margin for a loaded machine) with an
``APITimeoutError`` of the ``total`` limit, or a ``StreamInterrupted`` carrying the text so
far whose cause is one. It is the one way to cut a long, healthy answer: asking for it.

Every test runs on the blocking ``Client`` and on the ``AsyncClient`` under asyncio and trio
(``tests/faces.py``), against the bundled server or the raw-socket servers of
``tests/hostile.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import anyio
import httpx
import pytest

from aichatonline import (
    APIError,
    APITimeoutError,
    RetryPolicy,
    ServerError,
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
    TOTAL,
    assert_never_says_peer_closed,
    assert_timed_out,
    fast,
    timeout_of,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


# --------------------------------------------------------------------------- the bundled server


@pytest.mark.parametrize("mode", ["stream", "complete"])
async def test_total_bounds_a_stall_before_the_first_line(
    api: Api, server: LocalServer, mode: str
) -> None:
    server.inject(Fault(stall=5.0))
    async with api.entered(api.client(server, timeout=Timeout(total=TOTAL, read=10.0))) as client:

        def call() -> object:
            if mode == "stream":
                return api.drain(client.stream(PROMPT))
            return client.complete(PROMPT)

        exc, elapsed = await api.failure(call, within=TOTAL)
        assert_timed_out(exc, "total", TOTAL)
        assert elapsed >= TOTAL - 0.1
        assert await api(client.complete(PROMPT)) == REPLY


async def test_total_bounds_a_stall_mid_stream(api: Api, server: LocalServer) -> None:
    server.inject(Fault(stall=5.0, stall_after=3))
    async with api.entered(api.client(server, timeout=Timeout(total=TOTAL, read=10.0))) as client:
        stream = client.stream(PROMPT)
        pieces: list[str] = []

        async def consume() -> None:
            async with api.entered(stream):
                await api.drain(stream, pieces)

        exc, _ = await api.failure(consume, within=TOTAL)
        assert isinstance(exc, StreamInterrupted)
        assert_timed_out(exc, "total", TOTAL)
        assert pieces == server.pieces_for(PROMPT)[:3]
        assert exc.partial == "".join(pieces) == stream.text


async def test_total_bounds_a_paced_stream_that_never_stalls(api: Api, server: LocalServer) -> None:
    # Every read is quick, but the whole answer would take 5 s.
    server.pieces, server.delay = 100, 0.05
    timeout = Timeout(total=TOTAL, read=10.0)
    async with api.entered(api.kind(base_url=server.base_url, timeout=timeout)) as client:
        exc, _ = await api.failure(lambda: api.drain(client.stream(PROMPT)), within=TOTAL)
        assert_timed_out(exc, "total", TOTAL)


async def test_total_cuts_a_fast_stream_with_a_timeout_error(api: Api) -> None:
    # Lines come every half millisecond: the bound runs out between two reads as often as
    # during one. Either way the error is the whole-call timeout, never a socket error.
    with LocalServer(pieces=20000, piece_size=10, delay=0.0005) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(0))) as client:
            await api(client.get_token())
            for step in range(6):
                total = 0.2 + step * 0.013
                client.timeout = Timeout(total=total)
                exc, _ = await api.failure(lambda: client.complete(PROMPT), within=total)
                assert_timed_out(exc, "total", total)


async def test_total_bounds_a_stalled_token_fetch(api: Api, server: LocalServer) -> None:
    server.inject(Fault(endpoint="token", stall=5.0))
    timeout = Timeout(total=TOTAL, read=10.0)
    async with api.entered(api.kind(base_url=server.base_url, timeout=timeout)) as client:
        exc, _ = await api.failure(lambda: client.complete(PROMPT), within=TOTAL)
        assert_timed_out(exc, "total", TOTAL)
    assert not server.chat_requests


async def test_total_bounds_retries_and_back_off(api: Api, server: LocalServer) -> None:
    server.always = Fault(status=503)
    policy = RetryPolicy(max_retries=20, initial_backoff=0.3, max_backoff=0.3, jitter=0.0)
    client = api.kind(base_url=server.base_url, timeout=Timeout(total=TOTAL), retry_policy=policy)
    async with api.entered(client):
        exc, _ = await api.failure(lambda: client.complete(PROMPT), within=TOTAL)
        assert isinstance(exc, APIError)
    assert 2 <= len(server.chat_requests) <= 5


async def test_total_bounds_repeated_read_timeouts(api: Api, server: LocalServer) -> None:
    server.always = Fault(stall=5.0)
    timeout = Timeout(total=TOTAL, read=0.2)
    async with api.entered(api.client(server, timeout=timeout, retry_policy=fast(20))) as client:
        exc, _ = await api.failure(lambda: client.complete(PROMPT), within=TOTAL)
        assert timeout_of(exc) is not None
    assert len(server.chat_requests) >= 2


# --------------------------------------------------------------------------- every phase

PHASE_TOTAL = 0.5
TRICKLE = 0.2  # seconds between two bytes: well within every read limit in play

_LENGTH_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 200\r\n\r\n"
)
_TOKEN_BODY = b'{"code":200,"data":"' + hostile.TOKEN.encode() + b'"}'
_TOKEN_RESPONSE = hostile.response(200, _TOKEN_BODY)
_TOKEN_HEAD = _TOKEN_RESPONSE[: -len(_TOKEN_BODY)]
_LINE = hostile.ndjson("this line arrives one byte at a time")

#: phase -> (server options, route options): each holds the call in that phase for longer
#: than ``PHASE_TOTAL``, one byte every ``TRICKLE`` seconds (or not at all).
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


def _check_total(outcome: object) -> None:
    seconds, error = outcome.seconds, outcome.error  # type: ignore[attr-defined]
    assert PHASE_TOTAL - 0.1 <= seconds <= PHASE_TOTAL + MARGIN, (seconds, error)
    assert isinstance(error, APITimeoutError), repr(error)
    assert_timed_out(error, "total", PHASE_TOTAL)
    assert outcome.text == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize("phase", list(PHASES))
async def test_total_holds_in_every_phase(api: Api, phase: str) -> None:
    server_options, route_options = PHASES[phase]
    handler = hostile.route(**route_options)  # type: ignore[arg-type]
    with hostile.HostileServer(handler, **server_options) as server:  # type: ignore[arg-type]
        timeout = Timeout(total=PHASE_TOTAL)
        client = api.kind(base_url=server.base_url, timeout=timeout, retry_policy=fast(0))
        async with api.entered(client):
            if phase == "sending":  # a server that reads no bodies answers one request only
                client.token = hostile.TOKEN
            prompt = BIG_PROMPT if phase == "sending" else PROMPT
            outcome = await api.run(client.stream(prompt))
    _check_total(outcome)


async def test_total_holds_while_connecting(api: Api) -> None:
    with hostile.unaccepting() as url:
        timeout = Timeout(total=PHASE_TOTAL)
        async with api.entered(api.kind(base_url=url, timeout=timeout, retry_policy=fast(0))) as c:
            outcome = await api.run(c.stream(PROMPT))
    _check_total(outcome)


#: A back-off (5 s) longer than what is left of the call.
LONG_BACKOFF = RetryPolicy(max_retries=2, initial_backoff=5.0, max_backoff=5.0, jitter=0.0)


async def test_total_holds_during_back_off(api: Api) -> None:
    with hostile.HostileServer(hostile.route(chat=hostile.reply(500))) as server:
        timeout = Timeout(total=PHASE_TOTAL)
        client = api.kind(base_url=server.base_url, timeout=timeout, retry_policy=LONG_BACKOFF)
        async with api.entered(client):
            outcome = await api.run(client.stream(PROMPT))
        # Waiting past the bound is wrong; giving up at once with the last error, or a total
        # timeout at the bound, both hold it.
        assert isinstance(outcome.error, (ServerError, APITimeoutError)), repr(outcome.error)
        if isinstance(outcome.error, APITimeoutError):
            assert_timed_out(outcome.error, "total", PHASE_TOTAL)
        assert outcome.seconds <= PHASE_TOTAL + MARGIN
        assert len(server.chat_requests) == 1


async def test_total_bounds_a_healthy_slow_stream_with_a_total_message(api: Api) -> None:
    """The one way to cut a long answer is asking for it: ``total``, named as such."""
    slow = [f"piece {i}; " for i in range(7)]  # one every 0.2 s: about 1.2 s in all
    with hostile.HostileServer(hostile.route(chat=hostile.stream(slow, 0.2))) as server:
        timeout = Timeout(total=0.5)
        client = api.kind(base_url=server.base_url, timeout=timeout, retry_policy=fast(0))
        async with api.entered(client):
            started = time.monotonic()
            outcome = await api.run(client.stream(PROMPT))
    assert isinstance(outcome.error, StreamInterrupted), repr(outcome.error)
    assert outcome.error.partial == outcome.text == "".join(outcome.pieces)
    assert 0 < len(outcome.pieces) < len(slow)
    assert isinstance(outcome.error.__cause__, APITimeoutError)
    assert_timed_out(outcome.error.__cause__, "total", 0.5)
    assert_never_says_peer_closed(outcome.error)
    assert time.monotonic() - started <= 0.5 + MARGIN


# --------------------------------------------------------------------------- a head that trickles


@pytest.fixture
def trickling_head() -> Iterator[str]:
    """A server that answers every request with its status line one byte at a time."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 100:
                if stop.wait(0.1):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    host, port = listener.getsockname()
    yield f"http://{host}:{port}"
    stop.set()
    listener.close()


#: Each byte of the head comes well within the read limit; only the whole-call bound stops it.
TRICKLE_TIMEOUT = Timeout(total=1.0, connect=0.5, read=0.5, write=0.5, pool=0.5)


async def test_total_holds_while_the_response_head_trickles(api: Api, trickling_head: str) -> None:
    client = api.kind(base_url=trickling_head, timeout=TRICKLE_TIMEOUT, retry_policy=fast(2))
    started = time.monotonic()
    with pytest.raises(APITimeoutError) as info:
        await api(client.get_token())
    assert time.monotonic() - started < 1.8
    assert info.value.limit == "total"
    await api.close(client)


# --------------------------------------------------------------------------- a wait for the pool

#: The whole-call bound of the pool-wait test, and the wait's other limits (far longer).
POOL_WAIT_TIMEOUT = Timeout(total=2.0, connect=10, read=10, write=10, pool=10)


async def test_a_pool_wait_leaves_the_later_phases_less_time(api: Api, server: LocalServer) -> None:
    # Your httpx client has one connection, held by a paced stream for ~1 s; then the token
    # fetch stalls. The read limit must be what is left of the 2 s, not 2 s again.
    server.delay = 0.1
    server.pieces = 10
    async with api.entered(api.http_client(limits=httpx.Limits(max_connections=1))) as http:
        holder = api.kind(base_url=server.base_url, http_client=http, retry_policy=fast(2))
        await api(holder.get_token())
        client = api.kind(
            base_url=server.base_url,
            http_client=http,
            timeout=POOL_WAIT_TIMEOUT,
            retry_policy=fast(2),
        )
        server.inject(Fault(endpoint="token", stall=5.0))
        async with api.background(lambda: holder.complete("hold the connection")):
            await anyio.sleep(0.2)
            started = time.monotonic()
            with pytest.raises(APITimeoutError):
                await api(client.get_token())
            elapsed = time.monotonic() - started
    assert 0 < elapsed < 2.5
