"""Shared pieces of the client tests: the fault cases, the checks on their outcome, and the
small drivers every client test file uses.

One table (``STREAM_CASES``) scripts every server misbehaviour the clients must survive or
report; ``test_client_sync``, ``test_client_async`` and ``test_provider`` run it against the
blocking client, the async client (asyncio and trio) and the provider class, and
``verify`` checks each outcome the same way: the exact text or the exact error, the exact
number of requests the server saw, and no secret in the error.

Fixtures live in ``conftest.py``; this module holds plain functions and data.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from aichatonline import (
    AiChatOnlineError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BlockedError,
    ProtocolError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceError,
    StreamInterrupted,
    Timeout,
)
from aichatonline.testing import CHAT_PATH, TOKEN_PATH, Fault, LocalServer, reply_for

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
    assert "peer closed" not in str(exc)


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


# --------------------------------------------------------------------------- bad input

BAD_MESSAGES = [
    pytest.param([], id="empty-list"),
    pytest.param([{"role": "user"}], id="no-content"),
    pytest.param([{"role": "robot", "content": "x"}], id="bad-role"),
    pytest.param([{"role": "user", "content": 5}], id="content-int"),
    pytest.param([{"role": "user", "content": None}], id="content-none"),
    pytest.param([{"role": "user", "content": [{"type": "image_url"}]}], id="image-part"),
    pytest.param(["hello"], id="message-not-a-mapping"),
    pytest.param({"role": "user", "content": "x"}, id="a-mapping-not-a-list"),
    pytest.param(None, id="none"),
    pytest.param(b"bytes", id="bytes"),
]

BAD_OPTIONS = [
    pytest.param({"base_url": "ftp://example.com"}, id="base-url-scheme"),
    pytest.param({"base_url": "not a url"}, id="base-url-garbage"),
    pytest.param({"base_url": "http://host/?q=1"}, id="base-url-query"),
    pytest.param({"proxy": "ftp://127.0.0.1:21"}, id="proxy-scheme"),
    pytest.param({"proxy": "gopher://127.0.0.1:70"}, id="proxy-gopher"),
    pytest.param({"proxy": "127.0.0.1:8080"}, id="proxy-no-scheme"),
    pytest.param({"timeout": -1}, id="timeout-negative"),
    pytest.param({"timeout": 0}, id="timeout-zero"),
    pytest.param({"timeout": "10"}, id="timeout-string"),
    pytest.param({"timeout": float("inf")}, id="timeout-inf"),
    pytest.param({"max_retries": -1}, id="max-retries-negative"),
    pytest.param({"max_retries": 1.5}, id="max-retries-float"),
    pytest.param({"retry_policy": "x"}, id="retry-policy-string"),
    pytest.param({"max_retries": 3, "retry_policy": RetryPolicy()}, id="max-retries-and-policy"),
    pytest.param({"strict": "yes"}, id="strict-string"),
]


# --------------------------------------------------------------------------- the fault table


@dataclass(frozen=True)
class Case:
    """One scripted misbehaviour and what a client must make of it.

    ``error`` None means the client recovers and delivers the exact answer. ``delivered`` is
    how many of the server's pieces a ``stream()`` caller got before the error.
    ``chat_requests``/``token_requests``/``tokens`` are the exact counts the server records.
    """

    id: str
    faults: tuple[Fault, ...]
    error: type[AiChatOnlineError] | None = None
    delivered: int = 0
    chat_requests: int = 1
    token_requests: int = 1
    tokens: int = 1
    max_retries: int = 2
    strict: bool = False
    timeout: Timeout = SAFE_TIMEOUT
    check: Callable[[BaseException], None] | None = field(default=None, compare=False)
    #: Whether ``complete()`` has the same outcome (it restarts a dropped stream from scratch).
    complete_too: bool = True

    def client_options(self) -> dict[str, object]:
        return {
            "retry_policy": fast(self.max_retries),
            "strict": self.strict,
            "timeout": self.timeout,
        }


def _status(
    code: int, body: str | None = None, *, exact: bool = False, endpoint: str = "chat"
) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert isinstance(exc, APIStatusError)
        if exact:  # a plain client error, not one of the more specific kinds
            assert type(exc) is APIStatusError
        assert exc.status_code == code
        assert str(code) in str(exc)
        if body is not None:
            assert exc.body.startswith(body)
            assert body in str(exc)
        # The error keeps the response headers and the (redacted) request.
        assert exc.headers, "the response headers are kept"
        assert all(name == name.lower() for name in exc.headers)
        method, path = ("POST", CHAT_PATH) if endpoint == "chat" else ("GET", TOKEN_PATH)
        assert exc.method == method
        assert exc.url is not None
        assert exc.url.startswith("http://127.0.0.1:")
        assert path in exc.url

    return check


def _rate_limited(retry_after: float | None) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert isinstance(exc, RateLimitError)
        assert exc.retry_after == retry_after

    return check


def _interrupted_by(cause: type[BaseException]) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert isinstance(exc, StreamInterrupted)
        assert isinstance(exc.__cause__, cause), repr(exc.__cause__)
        assert_ours(exc.__cause__)

    return check


def _service(code: int, message: str) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert isinstance(exc, ServiceError)
        assert exc.code == code
        assert exc.message == message

    return check


def _interrupted_by_service(code: int, message: str) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert isinstance(exc, StreamInterrupted)
        assert exc.__cause__ is not None
        _service(code, message)(exc.__cause__)

    return check


def _connection_cause(exc: BaseException) -> None:
    assert isinstance(exc, APIConnectionError)
    # The network's failure is chained, not raised: httpx's error (or a socket's).
    assert isinstance(exc.__cause__, (OSError, httpx.TransportError)), repr(exc.__cause__)


def _timeout(limit: str, seconds: float) -> Callable[[BaseException], None]:
    def check(exc: BaseException) -> None:
        assert_timed_out(exc, limit, seconds)

    return check


def _protocol(exc: BaseException) -> None:
    assert isinstance(exc, ProtocolError)
    assert "no line of the body could be read" in str(exc)


#: A maintenance page, answered with 200 (a captive portal does the same).
MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Down for maintenance</title></head>"
    b"<body><p>We will be back soon.</p></body></html>"
)


def _token_fault(**options: object) -> Fault:
    return Fault(endpoint="token", **options)  # type: ignore[arg-type]


STREAM_CASES: list[Case] = [
    # -- statuses that are retried
    Case("503-then-ok", (Fault(status=503),), chat_requests=2),
    Case("500-502-then-ok", (Fault(status=500), Fault(status=502)), chat_requests=3),
    Case("408-then-ok", (Fault(status=408),), chat_requests=2),
    Case("409-then-ok", (Fault(status=409),), chat_requests=2),
    Case("429-retry-after-0", (Fault(status=429, retry_after="0"),), chat_requests=2),
    Case("429-no-retry-after", (Fault(status=429),), chat_requests=2),
    Case("402-retry-after-0", (Fault(status=402, retry_after="0"),), chat_requests=2),
    # A 503 with Retry-After is honoured as a 429's is.
    Case("503-retry-after-0", (Fault(status=503, retry_after="0"),), chat_requests=2),
    # -- retries used up
    Case(
        "500-exhausted",
        (Fault(status=500),) * 3,
        error=ServerError,
        chat_requests=3,
        check=_status(500),
    ),
    Case(
        "503-max-retries-0",
        (Fault(status=503),),
        error=ServerError,
        max_retries=0,
        check=_status(503),
    ),
    Case(
        "503-max-retries-1",
        (Fault(status=503),) * 2,
        error=ServerError,
        max_retries=1,
        chat_requests=2,
    ),
    Case(
        "429-exhausted",
        (Fault(status=429, retry_after="0"),) * 3,
        error=RateLimitError,
        chat_requests=3,
        check=_rate_limited(0.0),
    ),
    # -- never retried
    Case(
        "429-retry-after-too-long",
        (Fault(status=429, retry_after="3600"),),
        error=RateLimitError,
        check=_rate_limited(3600.0),
    ),
    Case(
        "503-retry-after-too-long",
        (Fault(status=503, retry_after="3600"),),
        error=ServerError,
        check=_status(503),
    ),
    Case("402-no-retry-after", (Fault(status=402),), error=RateLimitError, check=_status(402)),
    Case(
        "400",
        (Fault(status=400, body=b"the prompt is malformed: missing field"),),
        error=APIStatusError,
        check=_status(400, "the prompt is malformed", exact=True),
    ),
    Case("404", (Fault(status=404),), error=APIStatusError, check=_status(404, exact=True)),
    Case("cloudflare", (Fault(cloudflare=True),), error=BlockedError, check=_status(403)),
    # A redirect is never followed (the token and the prompt stay with the service).
    Case("307-not-followed", (Fault(status=307),), error=APIStatusError, check=_status(307)),
    Case("302-not-followed", (Fault(status=302),), error=APIStatusError, check=_status(302)),
    # -- dropped streams
    Case("drop-before-first-line", (Fault(drop_after=0),), chat_requests=2),
    Case("reset-before-first-line", (Fault(drop_after=0, drop_reset=True),), chat_requests=2),
    Case("drop-after-3", (Fault(drop_after=3),), chat_requests=2),
    Case("reset-after-3", (Fault(drop_after=3, drop_reset=True),), chat_requests=2),
    Case("drop-after-2-then-5", (Fault(drop_after=2), Fault(drop_after=5)), chat_requests=3),
    Case("drop-after-the-last-line", (Fault(drop_after=1000),), chat_requests=2),
    Case(
        "drop-exhausted-before-first-line",
        (Fault(drop_after=0),) * 3,
        error=APIConnectionError,
        chat_requests=3,
        check=_connection_cause,
    ),
    Case(
        "drop-then-variant",
        (Fault(drop_after=3), Fault(variant=True)),
        error=StreamInterrupted,
        delivered=3,
        chat_requests=2,
        check=_interrupted_by(APIConnectionError),
        complete_too=False,
    ),
    Case(
        "drop-exhausted-mid-stream",
        # The replays bring nothing new, so the retries run out.
        (Fault(drop_after=2), Fault(drop_after=2), Fault(drop_after=2)),
        error=StreamInterrupted,
        delivered=2,
        chat_requests=3,
        check=_interrupted_by(APIConnectionError),
    ),
    Case(
        "drops-with-progress-keep-going",
        # Each attempt gets further: progress earns a fresh budget of retries.
        (Fault(drop_after=2), Fault(drop_after=4), Fault(drop_after=6)),
        chat_requests=4,
    ),
    Case(
        "drop-max-retries-0",
        (Fault(drop_after=0),),
        error=APIConnectionError,
        max_retries=0,
        check=_connection_cause,
    ),
    Case(
        "drop-mid-stream-max-retries-0",
        (Fault(drop_after=3, drop_reset=True),),
        error=StreamInterrupted,
        delivered=3,
        max_retries=0,
        check=_interrupted_by(APIConnectionError),
    ),
    # -- stalls: a read timeout is retried (and resumed mid-stream)
    Case(
        "stall-before-first-line",
        (Fault(stall=STALL),),
        chat_requests=2,
        timeout=SHORT_READ,
    ),
    Case(
        "stall-mid-stream",
        (Fault(stall=STALL, stall_after=3),),
        chat_requests=2,
        timeout=SHORT_READ,
    ),
    Case(
        "stall-exhausted-mid-stream",
        (Fault(stall=STALL, stall_after=3),) * 2,
        error=StreamInterrupted,
        delivered=3,
        chat_requests=2,
        max_retries=1,
        timeout=SHORT_READ,
        check=_interrupted_by(APITimeoutError),
    ),
    Case(
        "stall-exhausted-before-first-line",
        (Fault(stall=STALL),) * 2,
        error=APITimeoutError,
        chat_requests=2,
        max_retries=1,
        timeout=SHORT_READ,
        check=_timeout("read", 0.2),
    ),
    # -- the first-piece bound: retryable, each attempt gets its own window
    Case(
        "first-piece-then-ok",
        (Fault(stall=STALL),),
        chat_requests=2,
        timeout=SHORT_FIRST_PIECE,
    ),
    Case(
        "first-piece-exhausted",
        (Fault(stall=STALL),) * 2,
        error=APITimeoutError,
        chat_requests=2,
        max_retries=1,
        timeout=SHORT_FIRST_PIECE,
        check=_timeout("first_piece", 0.3),
    ),
    # Once text came, the first-piece bound is over: a later stall shorter than read is fine.
    Case(
        "first-piece-then-slow",
        (Fault(stall=0.6, stall_after=2),),
        timeout=SHORT_FIRST_PIECE,
    ),
    # -- what the lines say
    Case("malformed-lines-skipped", (Fault(malformed=True),)),
    Case("malformed-lines-strict", (Fault(malformed=True),), error=ProtocolError, strict=True),
    Case(
        "in-band-error-after-2",
        (Fault(error_after=2, error_code=4001, error_message="quota exceeded"),),
        error=StreamInterrupted,
        delivered=2,
        check=_interrupted_by_service(4001, "quota exceeded"),
    ),
    Case(
        "in-band-error-first",
        (Fault(error_after=0, error_code=500, error_message="internal error"),),
        error=ServiceError,
        check=_service(500, "internal error"),
    ),
    # A 200 answer with no readable line (a maintenance page, an empty body): tried once more.
    Case("html-200-then-ok", (Fault(status=200, body=MAINTENANCE_PAGE),), chat_requests=2),
    Case("empty-200-then-ok", (Fault(status=200, body=b""),), chat_requests=2),
    Case(
        "html-200-twice",
        (Fault(status=200, body=MAINTENANCE_PAGE),) * 2,
        error=ProtocolError,
        chat_requests=2,
        check=_protocol,
    ),
    Case("trickle", (Fault(trickle=True),)),
    Case("trickle-then-drop", (Fault(trickle=True, drop_after=3),), chat_requests=2),
    # -- the token
    Case("token-expired", (Fault(expire_token=True),), chat_requests=2, token_requests=2, tokens=2),
    Case(
        "token-rejected-twice",
        (Fault(expire_token=True), Fault(expire_token=True)),
        error=AuthenticationError,
        chat_requests=2,
        token_requests=2,
        tokens=2,
        check=_status(401),
    ),
    Case("403-refreshes-token", (Fault(status=403),), chat_requests=2, token_requests=2, tokens=2),
    # A dropped stream whose re-sent request finds the token expired: a new token, then the
    # answer resumes exactly where the caller is.
    Case(
        "drop-then-token-expired",
        (Fault(drop_after=3), Fault(expire_token=True)),
        chat_requests=3,
        token_requests=2,
        tokens=2,
    ),
    Case(
        "401-twice",
        (Fault(status=401), Fault(status=401)),
        error=AuthenticationError,
        chat_requests=2,
        token_requests=2,
        tokens=2,
    ),
    Case("token-503-then-ok", (_token_fault(status=503),), token_requests=2),
    # The server issued a token, then cut its body: the client fetches another.
    Case("token-dropped-then-ok", (_token_fault(drop_after=0),), token_requests=2, tokens=2),
    Case(
        "token-stall-then-ok",
        (_token_fault(stall=STALL),),
        token_requests=2,
        tokens=1,
        timeout=SHORT_READ,
    ),
    Case("token-trickle", (_token_fault(trickle=True),)),
    Case(
        "token-500-exhausted",
        (_token_fault(status=500),) * 3,
        error=ServerError,
        chat_requests=0,
        token_requests=3,
        tokens=0,
        check=_status(500, endpoint="token"),
    ),
    # A token answer we cannot read (not JSON, no token in it) is retried, like a drop.
    Case("token-not-json-then-ok", (_token_fault(malformed=True),), token_requests=2),
    Case("token-without-data-then-ok", (_token_fault(error_after=0),), token_requests=2),
    Case(
        "token-not-json-exhausted",
        (_token_fault(malformed=True),) * 3,
        error=ProtocolError,
        chat_requests=0,
        token_requests=3,
        tokens=0,
    ),
    Case(
        "token-without-data-exhausted",
        (_token_fault(error_after=0),) * 3,
        error=ProtocolError,
        chat_requests=0,
        token_requests=3,
        tokens=0,
    ),
    Case(
        "token-cloudflare",
        (_token_fault(cloudflare=True),),
        error=BlockedError,
        chat_requests=0,
        tokens=0,
    ),
    Case(
        "token-stall-exhausted",
        (_token_fault(stall=STALL),) * 3,
        error=APITimeoutError,
        chat_requests=0,
        token_requests=3,
        tokens=0,
        timeout=SHORT_READ,
        check=_timeout("read", 0.2),
    ),
    Case(
        "token-307-not-followed",
        (_token_fault(status=307),),
        error=APIStatusError,
        chat_requests=0,
        tokens=0,
        check=_status(307, endpoint="token"),
    ),
]

COMPLETE_CASES = [case for case in STREAM_CASES if case.complete_too]


def case_params(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.id) for case in cases]


def verify(
    case: Case,
    server: LocalServer,
    *,
    pieces: list[str] | None,
    text: str | None,
    exc: BaseException | None,
    prompt: str = PROMPT,
) -> None:
    """Check one run of ``case``: ``pieces`` from ``stream()`` (None for ``complete()``), the
    text the call reported (``stream.text`` or the return value), and the error it raised."""
    expected = server.pieces_for(prompt)
    if case.error is None:
        assert exc is None, f"unexpected {exc!r}"
        if pieces is not None:
            assert pieces == expected
        assert text == "".join(expected)
    else:
        assert isinstance(exc, case.error), f"expected {case.error.__name__}, got {exc!r}"
        assert_ours(exc)
        if pieces is not None:
            assert pieces == expected[: case.delivered]
            assert text == "".join(pieces)
        if isinstance(exc, StreamInterrupted):
            assert exc.partial == "".join(expected[: case.delivered])
            if pieces is not None:
                assert exc.partial == "".join(pieces) == text
        if isinstance(exc, APIConnectionError):
            assert exc.__cause__ is not None, "the underlying failure is not chained"
        if case.check is not None:
            case.check(exc)
        assert_no_secret(error_texts(exc), issued_tokens(server))
    counts = (len(server.chat_requests), len(server.token_requests), server.tokens_issued)
    assert counts == (case.chat_requests, case.token_requests, case.tokens)
    # Every attempt re-sends the same request: one conversation, one prompt.
    bodies = [r.json() for r in server.chat_requests]
    assert len({b["conversationId"] for b in bodies}) <= 1
    assert all(b["prompt"] == prompt for b in bodies)
    assert not server.pending_faults
