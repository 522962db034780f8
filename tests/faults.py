"""The fault table: every server misbehaviour the clients must survive or report.

One table (``STREAM_CASES``) scripts each misbehaviour of the bundled server (statuses,
drops, stalls, bad lines, token failures) and what a client must make of it; the clients
(``test_client_faults.py``), the provider class (``test_provider.py``) and the aiohttp
transport (``test_httpx_ecosystem.py``) run it, and :func:`verify` checks each outcome the
same way: the exact text or the exact error, the exact number of requests the server saw,
and no secret in the error. ``COMPLETE_CASES`` are those whose outcome ``complete()`` shares
(it restarts a dropped stream from scratch where ``stream()`` resumes it).

The cases are a table on purpose: many rows of the same shape, one behaviour each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
    ServerError,
    ServiceError,
    StreamInterrupted,
    Timeout,
)
from aichatonline.testing import CHAT_PATH, TOKEN_PATH, Fault, LocalServer
from tests.helpers import (
    PROMPT,
    SAFE_TIMEOUT,
    SHORT_FIRST_PIECE,
    SHORT_READ,
    STALL,
    assert_no_secret,
    assert_ours,
    assert_timed_out,
    error_texts,
    fast,
    issued_tokens,
)


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
