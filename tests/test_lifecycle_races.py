"""Races between a call and its own limits, a close, a cancellation or another thread.

- Token fetch single flight: a waiter is not handed a failure the fetcher brought on
  itself (its own ``Timeout(total=...)``, its ``max_retries=0``); it fetches for itself.
  A failure no retry mends (a 403) is still shared: one token request for both callers.
  Blocking client (threads) and async client (tasks, asyncio and trio).
- A call cancelled while its request body is being sent (a server that does not read)
  leaves no connection behind: the pool's counter is back to 0 and the server sees each
  connection closed by the client (asyncio and trio).
- ``Stream.close()`` from another thread while the iterating thread hands out the pieces
  of a batch: no ``ValueError: generator already executing`` anywhere, the loop ends at
  once, the connection is given back.
- ``close()`` / ``aclose()`` during a retry back-off (503, ``Retry-After: 5``) ends the
  wait: ``stream.close()`` and ``client.close()`` from another thread, ``stream.aclose()``
  and ``client.aclose()`` from another task; also a token fetch in its back-off.
- ``Client.close()`` while other threads create streams: no ``RuntimeError: Set changed
  size during iteration``, only ``InvalidRequestError`` ("the client is closed") after it.
- The blocking client's connect phase shares one ``Timeout(total=...)`` deadline between
  all the addresses a host name resolves to.
- Event loops ended with ``loop.close()`` alone (no ``shutdown_asyncgens``) are not kept
  alive by the SDK once the client has moved on to the next loop.
- ``stream.text`` read from another thread is never more than one piece ahead of what the
  iterating thread has received, and always a prefix of the answer.

Not covered: a write failing on a connection its owner aborted, taken for a stale
keep-alive connection and re-sent (blocking client). The only owner that aborts a
connection in the middle of a send is ``Client.close()``, and the re-send it would cause is
refused by the closed pool, so no test through the public API tells the two apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

from aichatonline import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    InvalidRequestError,
    StreamInterrupted,
    Timeout,
)
from aichatonline.testing import Fault, LocalServer
from tests import hostile
from tests.helpers import (
    TOTAL,
    await_server,
    elapsed_error,
    fast,
    pool_active_requests,
)

pytestmark = pytest.mark.usefixtures("isolated")

PROMPT = "Tell me a long story"
#: The back-off the server asks for; closing must end it long before.
RETRY_AFTER = 5.0
#: How soon after a close the iteration must have ended (the back-off is 5 s).
PROMPTLY = 1.0


@contextlib.contextmanager
def fast_switching() -> Iterator[None]:
    """Threads switch every microsecond (the races below need it), restored after."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _token_requests(server: hostile.HostileServer) -> list[hostile.Request]:
    return [r for r in server.requests if r.path == hostile.TOKEN_PATH]


# --------------------------------------------------------------------------- cancelled mid-body

#: A request body far larger than the socket buffers: its send blocks while nobody reads.
BIG_PROMPT = "x" * (8 * 1024 * 1024)
CANCEL_AFTER = 0.2
#: The server reads nothing for this long (the cancellation comes first), then reads.
NOT_READING = 0.5


def _read_until_the_client_leaves(ends: list[tuple[str, int]]) -> hostile.Handler:
    """A chat handler that does not read for ``NOT_READING`` s, then reads until the client
    closes the connection (``ends`` gets ``("closed", bytes)``) or 3 s pass (``("open",
    bytes)``: the client kept the connection)."""

    def handle(request: hostile.Request, conn: hostile.Conn) -> bool:
        conn.pause(NOT_READING)  # the server does not read bodies: this reads nothing
        sock, received = conn.sock, 0
        end = time.monotonic() + 3.0
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                break
            except OSError:  # a reset: the client closed it
                ends.append(("closed", received))
                return False
            if not data:
                ends.append(("closed", received))
                return False
            received += len(data)
        ends.append(("open", received))
        return False

    return handle


@pytest.mark.anyio
async def test_cancelled_while_sending_the_body_leaks_no_connection(anyio_backend: str) -> None:
    ends: list[tuple[str, int]] = []
    handler = hostile.route(chat=_read_until_the_client_leaves(ends))
    with hostile.HostileServer(handler, read_bodies=False) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(0)) as client:
            client.token = hostile.TOKEN  # straight to the chat request
            for _ in range(3):
                with anyio.move_on_after(CANCEL_AFTER) as scope:
                    await client.complete(BIG_PROMPT)
                assert scope.cancelled_caught
            assert pool_active_requests(client) == 0
            assert await anyio.to_thread.run_sync(server.wait_for, lambda: len(ends) == 3, 15.0)
            assert len(server.chat_requests) == 3
            # Each connection was closed by the client, after part of the body only (the
            # cancellation came in the middle of the send).
            for how, received in ends:
                assert how == "closed", f"the client kept the connection open: {ends}"
                assert received < len(BIG_PROMPT), ends


# --------------------------------------------------------------------------- close mid-batch


def _iterate_only(stream: Any, errors: list[BaseException]) -> None:
    """Iterate ``stream``, doing nothing else (most of the time is in the SDK)."""
    try:
        for _ in stream:
            pass
    except BaseException as exc:  # noqa: BLE001 (the test reports it)
        errors.append(exc)


#: An answer whose pieces come at once, in large batches, then nothing for 5 s.
BURST = [f"piece {i:04d}; " for i in range(2000)]
BURST_THEN_SILENCE = hostile.raw(
    hostile.CHUNKED_HEAD, hostile.chunk(b"".join(hostile.ndjson(p) for p in BURST)), 5.0
)
ROUNDS_MID_BATCH = 60


def test_stream_close_while_another_thread_hands_out_a_batch() -> None:
    burst_text = "".join(BURST)
    failures: list[str] = []
    with (
        hostile.HostileServer(hostile.route(chat=BURST_THEN_SILENCE)) as server,
        Client(base_url=server.base_url, retry_policy=fast(0)) as client,
        fast_switching(),
    ):
        client.token = hostile.TOKEN
        for round_ in range(ROUNDS_MID_BATCH):
            stream = client.stream(PROMPT)
            errors: list[BaseException] = []
            thread = threading.Thread(target=_iterate_only, args=(stream, errors))
            thread.start()
            while not stream.text and thread.is_alive():  # the first pieces are out
                pass
            try:
                stream.close()  # must not raise "generator already executing"
            except BaseException as exc:  # noqa: BLE001 (the test reports it)
                failures.append(f"round {round_}: close() raised {exc!r}")
            thread.join(2.0)  # the server sends nothing more for 5 s
            if thread.is_alive():
                failures.append(f"round {round_}: the loop kept running after close()")
                thread.join(10)
            failures += [f"round {round_}: the loop raised {exc!r}" for exc in errors]
            if pool_active_requests(client) != 0:
                failures.append(f"round {round_}: the connection was not given back")
            if not burst_text.startswith(stream.text) or stream.completed:
                failures.append(f"round {round_}: text {len(stream.text)} chars, completed")
            if failures:
                break
    assert failures == []


# --------------------------------------------------------------------------- close in a back-off


def _backoff(server: LocalServer, endpoint: str = "chat") -> None:
    server.inject(Fault(endpoint=endpoint, status=503, retry_after=f"{RETRY_AFTER:g}"))  # type: ignore[arg-type]


class _Consumer:
    """Iterates a blocking stream in a thread: its pieces, its error, when it ended."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pieces: list[str] = []
        self.errors: list[Exception] = []
        self.ended_at = 0.0
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            for piece in self.stream:
                self.pieces.append(piece)
        except Exception as exc:  # noqa: BLE001 (the test looks at it)
            self.errors.append(exc)
        finally:
            self.ended_at = time.monotonic()

    def join(self) -> None:
        self.thread.join(RETRY_AFTER + 5)
        assert not self.thread.is_alive()


def _in_backoff(server: LocalServer, requests: Callable[[LocalServer], list[Any]]) -> None:
    """Wait for the 503, and a moment more for the client to read it and start waiting."""
    assert server.wait_for(lambda s: len(requests(s)) >= 1, 5)
    time.sleep(0.2)


async def _ain_backoff(server: LocalServer, requests: Callable[[LocalServer], list[Any]]) -> None:
    assert await await_server(server, lambda s: len(requests(s)) >= 1)
    await anyio.sleep(0.2)


def _chat_requests(server: LocalServer) -> list[Any]:
    return server.chat_requests


def _token_requests_of(server: LocalServer) -> list[Any]:
    return server.token_requests


def _check_client_closed(error: BaseException | None) -> None:
    assert isinstance(error, APIConnectionError), repr(error)
    assert not isinstance(error, StreamInterrupted), repr(error)  # no text came
    assert "closed" in str(error).lower(), str(error)


def test_stream_close_ends_a_retry_backoff_sync(server: LocalServer) -> None:
    _backoff(server)
    with Client(base_url=server.base_url) as client:
        consumer = _Consumer(client.stream(PROMPT))
        _in_backoff(server, _chat_requests)
        closed_at = time.monotonic()
        consumer.stream.close()
        consumer.join()
    assert consumer.ended_at - closed_at <= PROMPTLY, consumer.ended_at - closed_at
    assert consumer.errors == []
    assert consumer.pieces == []
    assert len(server.chat_requests) == 1  # no retry after the close


@pytest.mark.parametrize("phase", ["chat", "token"])
def test_client_close_ends_a_backoff_sync(server: LocalServer, phase: str) -> None:
    # A retry back-off of the chat request, or of the token fetch, ends with the close.
    if phase == "chat":
        _backoff(server)
    else:
        _backoff(server, "token")
    client = Client(base_url=server.base_url)
    try:
        consumer = _Consumer(client.stream(PROMPT))
        _in_backoff(server, _chat_requests if phase == "chat" else _token_requests_of)
        closed_at = time.monotonic()
        client.close()
        consumer.join()
    finally:
        client.close()
    assert consumer.ended_at - closed_at <= PROMPTLY, consumer.ended_at - closed_at
    assert len(consumer.errors) == 1
    _check_client_closed(consumer.errors[0])
    if phase == "chat":
        assert len(server.chat_requests) == 1
    else:
        assert (len(server.token_requests), len(server.chat_requests)) == (1, 0)


async def _aconsume(stream: Any, pieces: list[str]) -> tuple[BaseException | None, float]:
    try:
        async for piece in stream:
            pieces.append(piece)
    except Exception as exc:  # noqa: BLE001 (the test looks at it)
        return exc, time.monotonic()
    return None, time.monotonic()


async def _aclose_in_backoff(
    server: LocalServer,
    client: AsyncClient,
    requests: Callable[[LocalServer], list[Any]],
    close: Callable[[Any], Awaitable[None]],
) -> tuple[BaseException | None, list[str], float]:
    """Iterate a stream in a task; ``close(stream)`` from another once it is in a back-off.
    The stream's error, its pieces and how long after the close it ended."""
    stream = client.stream(PROMPT)
    pieces: list[str] = []
    outcome: list[tuple[BaseException | None, float]] = []

    async def consume() -> None:
        outcome.append(await _aconsume(stream, pieces))

    with anyio.fail_after(RETRY_AFTER + 5):
        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            await _ain_backoff(server, requests)
            closed_at = time.monotonic()
            await close(stream)
    error, ended_at = outcome[0]
    return error, pieces, ended_at - closed_at


@pytest.mark.anyio
async def test_stream_aclose_ends_a_retry_backoff_async(
    anyio_backend: str, server: LocalServer
) -> None:
    _backoff(server)
    async with AsyncClient(base_url=server.base_url) as client:

        async def close(stream: Any) -> None:
            await stream.aclose()

        error, pieces, took = await _aclose_in_backoff(server, client, _chat_requests, close)
    assert took <= PROMPTLY, took
    assert error is None, repr(error)
    assert pieces == []
    assert len(server.chat_requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("phase", ["chat", "token"])
async def test_client_aclose_ends_a_backoff_async(
    anyio_backend: str, server: LocalServer, phase: str
) -> None:
    """The same on the async client, in the back-off of a chat and of a token fetch."""
    if phase == "chat":
        _backoff(server)
    else:
        _backoff(server, "token")
    client = AsyncClient(base_url=server.base_url)
    try:

        async def close(stream: Any) -> None:
            await client.aclose()

        requests = _chat_requests if phase == "chat" else _token_requests_of
        error, pieces, took = await _aclose_in_backoff(server, client, requests, close)
    finally:
        await client.aclose()
    assert took <= PROMPTLY, took
    _check_client_closed(error)
    assert pieces == []
    if phase == "chat":
        assert len(server.chat_requests) == 1
    else:
        assert (len(server.token_requests), len(server.chat_requests)) == (1, 0)


# --------------------------------------------------------------------------- close vs new streams

ROUNDS_CLOSE = 30
#: Streams alive when the client closes (the bigger the set, the longer copying it takes).
LIVE_STREAMS = 300
MAKERS = 3


def _make_streams(
    client: Client, live: list[Any], stop: threading.Event, ended: list[BaseException | None]
) -> None:
    """Create streams until ``stop`` or an error; ``ended`` gets the error (or None)."""
    try:
        while not stop.is_set():
            live.append(client.stream(PROMPT))
        ended.append(None)
    except BaseException as exc:  # noqa: BLE001 (the test looks at it)
        ended.append(exc)


def test_client_close_while_other_threads_create_streams() -> None:
    failures: list[str] = []
    with fast_switching():
        for round_ in range(ROUNDS_CLOSE):
            # Streams start lazily: nothing is ever sent to this port.
            client = Client(base_url="http://127.0.0.1:9", retry_policy=fast(0))
            live: list[Any] = []
            stop = threading.Event()
            ended: list[BaseException | None] = []
            threads = [
                threading.Thread(target=_make_streams, args=(client, live, stop, ended))
                for _ in range(MAKERS)
            ]
            for thread in threads:
                thread.start()
            try:
                while len(live) < LIVE_STREAMS and all(t.is_alive() for t in threads):
                    time.sleep(0.0005)
                try:
                    client.close()
                except BaseException as exc:  # noqa: BLE001 (the test reports it)
                    failures.append(f"round {round_}: close() raised {exc!r}")
                for thread in threads:
                    thread.join(2.0)
            finally:
                stop.set()  # if close() failed, the threads would run on
                for thread in threads:
                    thread.join(10)
                client.close()
            for end in ended:
                if not (isinstance(end, InvalidRequestError) and "closed" in str(end)):
                    failures.append(f"round {round_}: a thread ended with {end!r}")
            if failures:
                break
    assert failures == []


# --------------------------------------------------------------------------- connect deadline

FAKE_HOST = "multi-address.test"


def test_connect_shares_the_total_bound_between_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(hostile.unaccepting()) for _ in range(3)]
        ports = [int(url.rsplit(":", 1)[1]) for url in urls]
        real = socket.getaddrinfo
        looked_up: list[str] = []

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != FAKE_HOST:
                return real(host, port, *args, **kwargs)
            looked_up.append(host)
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", p))
                for p in ports
            ]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        # Three addresses that never answer. httpcore's blocking connect is Python's
        # socket.create_connection, which gives each address the whole connect limit (the
        # SDK sizes it to what is left of the bound when the connect starts), and no socket
        # exists to shut down before one connects: a documented limit of the blocking
        # client, bounded by the addresses times the bound.
        client = Client(
            base_url=f"http://{FAKE_HOST}:1", timeout=Timeout(10, total=TOTAL), max_retries=0
        )
        with client:
            error, _ = elapsed_error(lambda: client.complete(PROMPT), total=len(ports) * TOTAL)
    assert looked_up, "the fake host name was not looked up"
    assert isinstance(error, APITimeoutError), repr(error)
    assert error.limit == "total", repr(error)


# --------------------------------------------------------------------------- closed event loops

LOOPS = 5


def _loops_closed_without_finalizing(client: AsyncClient) -> list[weakref.ref[Any]]:
    """One call on each of ``LOOPS`` new asyncio loops, each ended with ``close()`` alone."""
    references = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # what loop.close() leaves
        for _ in range(LOOPS):
            loop = asyncio.new_event_loop()
            try:
                assert loop.run_until_complete(client.complete(PROMPT))
            finally:
                loop.close()  # no shutdown_asyncgens(), as many frameworks do
            references.append(weakref.ref(loop))
            del loop
        gc.collect()
    return references


def _check_only_the_last_loop_alive(references: list[weakref.ref[Any]]) -> None:
    alive = [i for i, reference in enumerate(references) if reference() is not None]
    # The last loop may still be held by the client's pool, until its next loop.
    assert alive in ([], [LOOPS - 1]), f"loops still alive: {alive} of 0..{LOOPS - 1}"


def _close_on_a_new_loop(client: AsyncClient) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        asyncio.run(client.aclose())


def test_loops_closed_without_finalizing_are_not_kept(server: LocalServer) -> None:
    client = AsyncClient(base_url=server.base_url, retry_policy=fast(0))
    client.token = _a_token(server)  # no token fetch on any of the loops
    try:
        references = _loops_closed_without_finalizing(client)
        _check_only_the_last_loop_alive(references)
    finally:
        _close_on_a_new_loop(client)


def test_loops_closed_without_finalizing_are_not_kept_token_fetched_on_the_first(
    server: LocalServer,
) -> None:
    # As a program does it: the first call fetches the token, on the first loop.
    client = AsyncClient(base_url=server.base_url, retry_policy=fast(0))
    try:
        references = _loops_closed_without_finalizing(client)
        _check_only_the_last_loop_alive(references)
    finally:
        _close_on_a_new_loop(client)


def _a_token(server: LocalServer) -> str:
    """A token from ``server``, fetched by a blocking client (no event loop involved)."""
    with Client(base_url=server.base_url, retry_policy=fast(0)) as client:
        return client.get_token()


# --------------------------------------------------------------------------- text from a thread

ROUNDS_TEXT = 10
TEXT_PIECES = 3000


def test_stream_text_from_another_thread_never_runs_ahead(server: LocalServer) -> None:
    server.pieces = TEXT_PIECES
    expected_pieces = server.pieces_for(PROMPT)
    expected = "".join(expected_pieces)
    longest = max(map(len, expected_pieces))
    worst, samples, not_prefix = 0, 0, 0
    with Client(base_url=server.base_url, retry_policy=fast(0)) as client, fast_switching():
        for _ in range(ROUNDS_TEXT):
            stream = client.stream(PROMPT)
            state = {"received": 0, "done": False}

            def consume(stream: Any = stream, state: dict[str, Any] = state) -> None:
                try:
                    for piece in stream:
                        state["received"] += len(piece)
                finally:
                    state["done"] = True

            thread = threading.Thread(target=consume)
            thread.start()
            while not state["done"]:
                text = stream.text
                received = state["received"]  # read after the text: it only grows
                worst = max(worst, len(text) - received)
                samples += 1
                if not expected.startswith(text):
                    not_prefix += 1
            thread.join(10)
            assert stream.text == expected
    assert samples > ROUNDS_TEXT
    assert not_prefix == 0
    # One piece ahead at most: the consumer may have the piece and not have counted it.
    assert worst <= longest, f"text ran {worst} characters ahead of the consumer"
