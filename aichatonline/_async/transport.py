"""The transport: sends a core ``Request`` through an httpx client and hands out the response.

The SDK decides what to send and how to read the answer (``_core``); an
``httpx.AsyncClient`` carries the bytes: the SDK's own (a ``DefaultAsyncHttpxClient``,
closed with the SDK's client) or the caller's (``http_client=``: never closed here; an
``httpx2`` client works too). What this module adds on top of httpx:

- per-operation time limits sized by the call's ``TimeLimits`` at the moment httpcore looks
  each one up (``_LiveTimeouts``), so a long wait for one phase leaves the next less time;
- redirects never followed, whatever the client says (the token and the prompt go to the
  configured origin only);
- bodies read with ``aiter_bytes``: httpx undoes every content coding (so mocks such as
  ``httpx.MockTransport``, respx and pytest-httpx work), and ``check_expansion`` stops a
  decompression bomb at its first read;
- every failure mapped once to the SDK's errors (``error``), the request and the proxy
  named, secrets masked, httpx's own error chained as ``__cause__`` (its message masked too);
- the SDK's own client follows the event loop: on a new loop of the same kind it starts
  afresh (its connections from the old loop were closed as that loop ended), on another
  kind it refuses with a clear error (one client per backend).

Written once, async; ``_sync/transport.py`` is generated from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .._core import ERROR_BODY_LIMIT, OPERATIONS, Request, TimeLimits, check_expansion
from .._core.redact import redact, sanitized
from .._exceptions import AiChatOnlineError, APIConnectionError, InvalidRequestError, ProtocolError
from .._stream_waits import AsyncSocket
from .._synchronization import (
    async_at_loop_end,
    async_current_loop,
    async_later,
    async_shield,
)

__all__ = ["AsyncResponse", "AsyncTransport"]

# httpcore's messages for a server that closed the connection: a dropped stream, not a
# malformed answer.
_DISCONNECTED = ("disconnected", "peer closed", "connection closed", "connection reset")


class AsyncTransport:
    """Moves requests over an ``httpx.AsyncClient``: the SDK's own (``make``) or the caller's."""

    def __init__(
        self,
        http_client: Any = None,
        *,
        make: Callable[[], Any] | None = None,
        proxy_shown: str | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        assert (http_client is None) != (make is None)
        self._make = make
        self._http: Any = http_client if http_client is not None else make()  # type: ignore[misc]
        #: Whether the httpx client is the SDK's (closed with it) or the caller's.
        self.owned = make is not None
        self.secrets = secrets
        self._via = f" via the proxy {proxy_shown}" if proxy_shown else ""
        self._loop: object = None
        self._kind: str | None = None
        self._loop_guard: Any = None
        self._closed = False
        # Responses sent and not closed yet (a set: adding and discarding are atomic, where
        # a counter's += could lose a step between two threads).
        self._open: set[AsyncResponse] = set()

    @property
    def open_responses(self) -> int:
        """Responses sent and not closed yet (for leak checks)."""
        return len(self._open)

    @property
    def http_client(self) -> Any:
        """The httpx client that carries the requests."""
        return self._http

    @property
    def closed(self) -> bool:
        """Whether ``aclose()`` was called (or the caller's httpx client is closed)."""
        return self._closed or (not self.owned and bool(self._http.is_closed))

    async def _client(self) -> Any:
        """The httpx client for a request on the running loop."""
        if self.closed:
            raise InvalidRequestError("the client is closed")
        kind, loop = async_current_loop()
        if loop is not self._loop:
            if self._kind is not None and kind != self._kind:
                raise InvalidRequestError(
                    f"this AsyncClient was used on {self._kind} and now runs on {kind}: "
                    "make one client per event loop backend"
                )
            if kind == "trio" and getattr(self._http, "asyncio_only", False):
                raise InvalidRequestError(
                    "DefaultAioHttpClient runs on asyncio only (aiohttp): on trio, use the "
                    "default client or a DefaultAsyncHttpxClient"
                )
            if self.owned and self._kind is not None:
                # A new loop: the old loop's connections were closed as it ended.
                assert self._make is not None
                self._http = self._make()
            self._kind, self._loop = kind, loop
            if self.owned:
                self._loop_guard = await async_at_loop_end(self._loop_ended)
        return self._http

    async def _loop_ended(self, loop: object) -> None:
        """The loop ``loop`` is shutting down: close the SDK's connections while it can."""
        if loop is self._loop:
            self._loop = None
            await self._http.aclose()

    async def send(
        self, request: Request, limits: TimeLimits, socket: AsyncSocket
    ) -> AsyncResponse:
        """Send ``request`` and wait for its response head."""
        http = await self._client()
        message = http.build_request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        message.extensions["timeout"] = _LiveTimeouts(limits)
        message.extensions.update(socket.extensions())
        error: AiChatOnlineError
        try:
            response = await http.send(message, stream=True, follow_redirects=False)
        except Exception as exc:
            if not _is_transport_failure(exc):
                raise
            error = self.error(exc, request, limits)
        else:
            return AsyncResponse(self, request, response, socket)
        raise error  # raised here, not in the except block: httpx's error is no __context__

    async def fetch(
        self, request: Request, limits: TimeLimits, socket: AsyncSocket | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send ``request``; its status, headers and body (at most ``ERROR_BODY_LIMIT`` bytes)."""
        response = await self.send(request, limits, socket or AsyncSocket())
        try:
            body = await response.read_limited(limits, ERROR_BODY_LIMIT)
        finally:
            await response.aclose()
        return response.status, response.headers, body

    def describe(self, request: Request) -> str:
        """How a message names ``request``: method, URL (no query) and proxy."""
        return f"{request.method} {redact(request.shown_url)}{self._via}"

    def error(
        self, exc: BaseException, request: Request, limits: TimeLimits, during: str = ""
    ) -> AiChatOnlineError:
        """Our error for a failure of ``request`` (its cause chained, secrets masked)."""
        secrets = (*request.secrets, *self.secrets)
        where = self.describe(request) + (f" ({during})" if during else "")
        detail = _detail(exc, secrets)
        error: AiChatOnlineError
        if _is_httpx(exc, "TimeoutException") and not _aiohttp_disconnect(exc):
            error = limits.timeout_error(where, _httpx_limit(exc))
        elif isinstance(exc, TimeoutError):
            error = limits.timeout_error(where)
        elif type(exc).__module__.startswith("socksio"):
            error = APIConnectionError(
                f"{where}: the SOCKS5 proxy sent a malformed reply ({detail})"
            )
        elif _is_httpx(exc, "ProxyError"):
            status = detail.partition(": ")[2][:3]
            hint = " (check the proxy's credentials)" if status == "407" else ""
            error = APIConnectionError(
                f"{where}: the proxy refused the connection: {detail}{hint}",
                retryable=not status.startswith("4"),
            )
        elif _is_httpx(exc, "RemoteProtocolError") and not any(
            word in str(exc).lower() for word in _DISCONNECTED
        ):
            error = ProtocolError(f"{where}: a malformed HTTP answer: {detail}", retryable=True)
        elif _is_httpx(exc, "DecodingError"):
            error = ProtocolError(f"{where}: the body could not be decoded: {detail}")
        elif _is_httpx(exc, "LocalProtocolError", "UnsupportedProtocol", "InvalidURL"):
            error = InvalidRequestError(f"{where}: the request cannot be sent: {detail}")
        elif _is_httpx(exc, "StreamError"):
            error = APIConnectionError(f"{where}: the response was closed: {detail}")
        else:
            error = APIConnectionError(f"{where}: {detail}")
        error.__cause__ = sanitized(exc, *secrets)
        error.__suppress_context__ = True
        return error

    async def aclose(self) -> None:
        """Close the SDK's own httpx client (a caller's httpx client is the caller's to close)."""
        self._closed = True
        loop, self._loop = self._loop, None  # the loop-end hook has nothing left to do
        guard, self._loop_guard = self._loop_guard, None
        if guard is not None:
            await guard.aclose()
        # The httpx client's connections belong to the loop it last ran on; one closed
        # without finalizing (loop.close() alone) cannot close them any more.
        if self.owned and loop in (None, async_current_loop()[1]):
            with async_shield():
                await self._http.aclose()


class AsyncResponse:
    """One response: its status and headers, then its body in the chunks httpx gives."""

    __slots__ = (
        "_at",
        "_chunk",
        "_chunks",
        "_httpx",
        "_loop",
        "_request",
        "_transport",
        "headers",
        "socket",
        "status",
    )

    def __init__(
        self, transport: AsyncTransport, request: Request, response: Any, socket: AsyncSocket
    ) -> None:
        self._transport = transport
        self._request = request
        self._httpx: Any = response
        self._chunks: Any = response.aiter_bytes()
        self._chunk = b""  # the chunk httpx gave, handed out a slice at a time
        self._at = 0
        self._loop = async_current_loop()
        self.status: int = response.status_code
        #: The response headers (httpx's: case-insensitive, lower-case names).
        self.headers: Mapping[str, str] = response.headers
        #: Where a blocking read of this response waits (its connection's socket).
        self.socket = socket
        socket.set(response.extensions.get("network_stream"))
        transport._open.add(self)

    async def read(self, limits: TimeLimits) -> bytes:
        """The next bytes of the body, content-decoded, at most ``READ_SLICE`` of them;
        ``b""`` at its end.

        A chunk httpx gives (up to 64 KiB, more once decoded) is handed out a slice at a
        time, so that a stream read slowly holds the pieces of one slice, not of a chunk.
        """
        chunk: bytes = self._chunk
        at = self._at
        if at < len(chunk):
            self._at = at + READ_SLICE
            return chunk[at : at + READ_SLICE]
        chunks = self._chunks
        if chunks is None:
            return b""
        error: AiChatOnlineError
        try:
            chunk = await chunks.__anext__()
        except StopAsyncIteration:
            self._chunks = None
            self._chunk = b""
            return b""
        except Exception as exc:
            if not _is_transport_failure(exc):
                raise
            error = self._transport.error(exc, self._request, limits, "reading the answer")
        else:
            check_expansion(len(chunk))
            if len(chunk) <= READ_SLICE:
                self._chunk = b""
                return chunk
            self._chunk, self._at = chunk, READ_SLICE
            return chunk[:READ_SLICE]
        raise error

    async def read_limited(self, limits: TimeLimits, limit: int) -> bytes:
        """The start of the body, up to ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await self.read(limits)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:limit]

    async def aclose(self) -> None:
        """Done with the response: httpx keeps its connection if the body was read to its end,
        else closes it."""
        response, self._httpx = self._httpx, None
        if response is None:
            return
        chunks, self._chunks = self._chunks, None
        self._chunk = b""
        self._transport._open.discard(self)
        with async_shield():
            await response.aclose()
            if chunks is not None:
                await _finish(chunks)
        # httpx binds a response and its stream to each other (a cycle, which only CPython's
        # full collections free, with the buffers behind it): once closed, let go of it.
        response.stream = None

    def close_later(self) -> None:
        """Close the response soon, from a finalizer (no ``await`` possible here)."""
        if self._httpx is None:
            return
        self.socket.shutdown()  # the server sees the end at once
        async_later(self._loop, self.aclose)


_LONGEST = 1e9  # seconds (some thirty years): a longer limit is no limit
#: The most body bytes one read hands out: what the decoder turns into one batch of pieces.
READ_SLICE = 16 * 1024


async def _finish(chunks: Any) -> None:
    """Run an unfinished body iterator to its end, its response being closed.

    httpx's body iterators are async generators nested in one another (``aiter_bytes``,
    ``aiter_raw`` and those of the streams below); closing the outermost leaves the inner
    ones suspended, and trio warns when they are collected. Reading on from the closed
    response ends every one of them (with an error, or the end of what was buffered).
    """
    for _ in range(_FINISH_READS):
        try:
            await chunks.__anext__()
        except StopAsyncIteration:
            return
        except Exception:  # noqa: BLE001 - the end we wanted: the response is closed
            return
    await chunks.aclose()


_FINISH_READS = 64  # buffered chunks a closed response may still give (a few at most)


class _LiveTimeouts(dict[str, "float | None"]):
    """httpx's per-request timeouts, each sized by the call's limits when it is looked up.

    httpcore looks each one up as its phase begins (a free connection, connecting,
    sending, reading), so a long wait for a connection leaves the later phases less time,
    never more. The read limit is looked up once for the whole body, so it is cut to the
    whole-call bound only: the first-piece bound ends with the first piece. (Within a
    phase the value holds; the stream's waits hold both bounds.)
    """

    def __init__(self, limits: TimeLimits) -> None:
        super().__init__({name: None for name in OPERATIONS})
        self._limits = limits

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        return self[key] if key in OPERATIONS else default

    def __getitem__(self, key: str) -> float | None:
        seconds = self._limits.cap(key, first_piece=key != "read")
        # Sockets refuse timeouts past a few centuries (OverflowError): that long is none.
        return None if seconds is not None and seconds > _LONGEST else seconds


# Libraries under httpx whose own errors can escape it (httpcore lets socksio's refusal of a
# malformed SOCKS5 reply through, for one).
_BELOW_HTTPX = ("httpcore", "h11", "h2", "hpack", "socksio", "anyio", "aiohttp")


def _is_transport_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (raised inside an httpx client) is a network or HTTP failure."""
    if isinstance(exc, OSError) or _is_httpx(exc, "HTTPError", "StreamError", "InvalidURL"):
        return True
    return type(exc).__module__.partition(".")[0] in _BELOW_HTTPX


def _is_httpx(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is one of httpx's (or httpx2's) errors named ``names``."""
    if not type(exc).__module__.startswith("httpx"):
        return False
    return any(klass.__name__ in names for klass in type(exc).__mro__)


def _httpx_limit(exc: BaseException) -> str | None:
    """Which per-operation limit an httpx timeout is (``None``: the last one sized)."""
    return {
        "ConnectTimeout": "connect",
        "ReadTimeout": "read",
        "WriteTimeout": "write",
        "PoolTimeout": "pool",
    }.get(type(exc).__name__)


def _aiohttp_disconnect(exc: BaseException) -> bool:
    """httpx-aiohttp maps aiohttp's connection errors (a server that hung up) to
    ``ConnectTimeout``: the cause says whether it really was a timeout."""
    cause = exc.__cause__
    if cause is None or not type(cause).__module__.startswith("aiohttp"):
        return False
    return not any("Timeout" in klass.__name__ for klass in type(cause).__mro__)


def _detail(exc: BaseException, secrets: tuple[str, ...]) -> str:
    cause = exc.__cause__
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        exc = cause  # name aiohttp's own error, not httpx-aiohttp's guess at one
    text = redact(str(exc), *secrets)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
