"""Shared pieces of the tests: the prompt and its answer, time bounds, retry policies, and
the checks every client test makes on an error (one of ours, no secret in it, the cause
chained, the timeout named).

The fault table is ``tests/faults.py``; the three faces of the SDK ``tests/faces.py``;
fixtures live in ``conftest.py``. This module holds plain functions and data.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import httpx

from aichatonline import (
    AiChatOnlineError,
    APITimeoutError,
    RetryPolicy,
    StreamInterrupted,
    Timeout,
)
from aichatonline.testing import LocalServer, reply_for

PROMPT = "Tell me about the weather"
#: The local server's answer to ``PROMPT``.
REPLY = reply_for(PROMPT)

#: A whole-call bound for tests that should never come near it (it turns a hang into a failure).
SAFE_TIMEOUT = Timeout(total=20.0, read=10.0)
#: Short reads, for the stall cases: a stall of ``STALL`` seconds is a read timeout.
SHORT_READ = Timeout(total=20.0, read=0.2)
#: A short first-piece bound (and a read limit the stalls never reach).
SHORT_FIRST_PIECE = Timeout(total=20.0, read=10.0, first_piece=0.3)
STALL = 2.0
#: The whole-call bound of the time-bound tests (their server stalls for longer).
TOTAL = 0.6
#: The margin allowed past a whole-call bound (thread wake-ups, closing a socket).
MARGIN = 0.5


def fast(max_retries: int = 2, **overrides: float) -> RetryPolicy:
    """A retry policy that never sleeps (unless a ``Retry-After`` asks it to)."""
    options: dict[str, float] = {"initial_backoff": 0.0, "max_backoff": 0.0, "jitter": 0.0}
    options.update(overrides)
    return RetryPolicy(max_retries=max_retries, **options)  # type: ignore[arg-type]


def assert_ours(exc: BaseException | None) -> None:
    """``exc`` is one of the SDK's errors; no httpx, anyio or socket error escaped raw."""
    assert exc is not None, "expected an error"
    assert isinstance(exc, AiChatOnlineError), f"a foreign error escaped: {exc!r}"
    assert not isinstance(exc, httpx.HTTPError)


def assert_no_secret(texts: Iterable[str], secrets: set[str]) -> None:
    """No secret appears in any of ``texts`` (the failure shows where it was found)."""
    secrets = {s for s in secrets if s}
    for text in texts:
        for secret in secrets:
            at = text.find(secret)
            assert at < 0, f"a secret leaked: ...{text[max(0, at - 160) : at + 60]!r}..."


def issued_tokens(server: LocalServer) -> set[str]:
    """Every token a client sent to the server (the ``UniqueId`` header of chat requests)."""
    return {r.headers["uniqueid"] for r in server.chat_requests if "uniqueid" in r.headers}


_E = TypeVar("_E", bound=BaseException)


def find_cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first error of ``kind`` chained below ``exc`` (as a cause or a context): the
    socket's or TLS's own error, under httpx's."""
    seen: set[int] = set()
    current: BaseException | None = exc.__cause__
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether an error of ``kind`` is chained below ``exc``."""
    return find_cause(exc, kind) is not None


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every error chained to it (causes and contexts, all branches)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def error_texts(exc: BaseException) -> list[str]:
    """``str`` and ``repr`` of an error and of every error chained to it."""
    texts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pool_active_requests(client: object) -> int:
    """Responses the client's transport handed out and has not seen closed.

    The SDK's own count (no httpx or httpcore internals). Where the server can say the
    same (``open_connections``, ``disconnects``), tests ask it.
    """
    return int(client._transport.open_responses)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- drivers


def run_stream(
    client: Any, prompt: str = PROMPT, **options: Any
) -> tuple[list[str], Any, Exception | None]:
    """Iterate a ``Client`` stream to its end; return the pieces, the stream and the error."""
    pieces: list[str] = []
    stream = client.stream(prompt, **options)
    try:
        with stream:
            for piece in stream:
                pieces.append(piece)
    except Exception as exc:  # noqa: BLE001 - any error, to check that it is one of ours
        return pieces, stream, exc
    return pieces, stream, None


async def arun_stream(
    client: Any, prompt: str = PROMPT, **options: Any
) -> tuple[list[str], Any, Exception | None]:
    """Iterate an ``AsyncClient`` stream to its end; return the pieces, the stream, the error."""
    pieces: list[str] = []
    stream = client.stream(prompt, **options)
    try:
        async with stream:
            async for piece in stream:
                pieces.append(piece)
    except Exception as exc:  # noqa: BLE001 - any error, to check that it is one of ours
        return pieces, stream, exc
    return pieces, stream, None


def elapsed_error(call: Callable[[], object], *, total: float) -> tuple[BaseException, float]:
    """Run ``call``, which must fail with one of our errors within ``total`` + ``MARGIN``."""
    start = time.monotonic()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any error, to check that it is one of ours
        elapsed = time.monotonic() - start
        assert_ours(exc)
        assert elapsed <= total + MARGIN, f"ran {elapsed:.2f}s past a {total}s bound"
        return exc, elapsed
    raise AssertionError("the call did not fail")


async def aelapsed_error(
    call: Callable[[], Awaitable[object]], *, total: float
) -> tuple[BaseException, float]:
    """``elapsed_error`` for a coroutine function."""
    start = time.monotonic()
    try:
        await call()
    except Exception as exc:  # noqa: BLE001 - any error, to check that it is one of ours
        elapsed = time.monotonic() - start
        assert_ours(exc)
        assert elapsed <= total + MARGIN, f"ran {elapsed:.2f}s past a {total}s bound"
        return exc, elapsed
    raise AssertionError("the call did not fail")


def timeout_of(exc: BaseException) -> APITimeoutError | None:
    """The ``APITimeoutError`` that ended a call (itself, or a ``StreamInterrupted``'s cause)."""
    if isinstance(exc, APITimeoutError):
        return exc
    if isinstance(exc, StreamInterrupted) and isinstance(exc.__cause__, APITimeoutError):
        return exc.__cause__
    return None


def assert_timed_out(exc: BaseException, limit: str, seconds: float | None = None) -> None:
    """``exc`` is the timeout of ``limit`` (as the contract words it), never a "peer closed"."""
    timeout = timeout_of(exc)
    assert timeout is not None, f"expected a {limit} timeout, got {exc!r}"
    assert timeout.limit == limit, f"expected the {limit} limit, got {timeout!r}"
    assert f"Timeout.{limit}=" in str(timeout), str(timeout)
    if seconds is not None:
        assert timeout.seconds == seconds
        assert f"Timeout.{limit}={seconds:g}" in str(timeout), str(timeout)
    assert_never_says_peer_closed(exc)


def assert_never_says_peer_closed(exc: BaseException | None) -> None:
    """No error of the chain blames the peer for what was a time limit of ours."""
    for error in chain(exc):
        for text in (str(error), repr(error)):
            assert "peer closed" not in text.lower(), text
            assert "server disconnected" not in text.lower(), text


async def await_server(
    server: LocalServer, predicate: Callable[[LocalServer], bool], timeout: float = 5.0
) -> bool:
    """``server.wait_for`` without blocking the event loop (asyncio or trio)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(server.wait_for, predicate, timeout)


def recording_hooks(seen: list[str]) -> dict[str, list[Callable[..., Any]]]:
    """httpx ``event_hooks`` that note each request a caller's own sync httpx client sends."""

    def request(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    return {"request": [request]}


def arecording_hooks(seen: list[str]) -> dict[str, list[Callable[..., Any]]]:
    """``recording_hooks`` for an ``httpx.AsyncClient``."""

    async def request(request: httpx.Request) -> None:
        seen.append(f"{request.method} {request.url.path}")

    return {"request": [request]}
