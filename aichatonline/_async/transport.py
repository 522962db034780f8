"""The transport: sends a core ``Request`` and hands out the response, translating failures.

Two ways to move the bytes, one interface (``send`` -> a response with ``receive_head``,
``read``, ``aclose`` and ``abort``):

- the SDK's own connections (``pool.py``, ``http.py``): every wait sized by the call's
  limits; a stale keep-alive connection that fails before any byte of the answer is
  replaced once, transparently; cookies the service sets are kept and sent back;
- the caller's own ``httpx.AsyncClient`` (``http_client=``): its settings apply (proxy,
  TLS, event hooks, its own cookies), redirects are never followed whatever it says (the
  token and the prompt go to the configured origin only), per-operation limits are sized
  when each request starts, and the whole-call and first-piece bounds are held by a
  deadline guard (``_synchronization.py``).

Every failure leaves here as one of the SDK's errors, its message naming the request
(and the proxy, credentials masked) and never a secret; the library's own error is chained
as ``__cause__`` with the secrets masked in its message too. A timeout names the limit that
fired (``Limits.timeout_error``).

Written once, async; ``_sync/transport.py`` is generated from it.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from .._config import ProxyURL
from .._core import ERROR_BODY_LIMIT, OPERATIONS, CookieJar, Limits, Request, split_url
from .._core.http11 import BadResponse, IncompleteResponse
from .._core.redact import redact, sanitized
from .._exceptions import AiChatOnlineError, APIConnectionError, InvalidRequestError, ProtocolError
from .._synchronization import async_deadline_guard, async_shield
from .http import AsyncConnection, Route, request_bytes
from .pool import AsyncConnectionPool

__all__ = ["AsyncResponse", "AsyncTransport"]

# What a failing socket or connection raises, below our errors.
_NETWORK_ERRORS = (OSError, IncompleteResponse)
# How a keep-alive connection the server closed while it was idle fails at first use.
_STALE = (IncompleteResponse, ConnectionResetError, BrokenPipeError)


class AsyncTransport:
    """Moves requests: over the SDK's own connections, or the caller's ``httpx.AsyncClient``."""

    def __init__(
        self,
        base_url: str,
        *,
        proxy: ProxyURL | None = None,
        http_client: Any = None,
        cookies: CookieJar | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        origin, _ = split_url(base_url)
        self._http = http_client
        self.pool = (
            None if http_client is not None else AsyncConnectionPool(Route(origin, proxy, tls))
        )
        self.cookies = cookies if cookies is not None else CookieJar()
        self.secrets: tuple[str, ...] = proxy.secrets if proxy is not None else ()
        self._via = f" via the proxy {proxy.shown}" if proxy is not None else ""

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (or the caller's httpx client is closed)."""
        if self._http is not None:
            return bool(self._http.is_closed)
        assert self.pool is not None
        return self.pool.closed

    async def send(self, request: Request, limits: Limits) -> AsyncResponse:
        """Send ``request``; the response's head is read by ``receive_head``."""
        if self.closed:
            raise InvalidRequestError("the client is closed")
        response = AsyncResponse(self, request)
        if self.pool is not None:
            try:
                await response.start(limits)
            except BaseException:  # a cancellation mid-send included: nobody else holds it
                response.discard()
                raise
        return response

    async def fetch(self, request: Request, limits: Limits) -> tuple[int, Mapping[str, str], bytes]:
        """Send ``request``; its status, headers and body (at most ``ERROR_BODY_LIMIT`` bytes)."""
        response = await self.send(request, limits)
        try:
            status, headers = await response.receive_head(limits)
            body = await response.read_limited(limits, ERROR_BODY_LIMIT)
        except BaseException:
            response.discard()
            raise
        await response.aclose()
        return status, headers, body

    def describe(self, request: Request) -> str:
        """How a message names ``request``: method, URL (no query) and proxy."""
        return f"{request.method} {redact(request.shown_url)}{self._via}"

    def error(
        self, exc: BaseException, request: Request, limits: Limits, during: str = ""
    ) -> AiChatOnlineError:
        """Our error for a failure of ``request`` (its cause chained, secrets masked)."""
        secrets = (*request.secrets, *self.secrets)
        where = self.describe(request) + (f" ({during})" if during else "")
        if isinstance(exc, TimeoutError) or _is_httpx_timeout(exc):
            error: AiChatOnlineError = limits.timeout_error(where, _httpx_limit(exc))
        elif isinstance(exc, BadResponse):
            error = ProtocolError(f"{where}: {exc}", retryable=exc.retryable)
        elif _is_httpx(exc, "DecodingError"):
            error = ProtocolError(
                f"{where}: the body could not be decoded: {_detail(exc, secrets)}"
            )
        elif _is_httpx(exc, "LocalProtocolError", "UnsupportedProtocol"):
            error = InvalidRequestError(
                f"{where}: the request cannot be sent: {_detail(exc, secrets)}"
            )
        else:
            error = APIConnectionError(f"{where}: {_detail(exc, secrets)}")
        error.__cause__ = sanitized(exc, *secrets)
        error.__suppress_context__ = True
        return error

    async def aclose(self) -> None:
        """Close the SDK's connections (a caller's httpx client is the caller's to close)."""
        if self.pool is not None:
            self.pool.close()


class AsyncResponse:
    """One response: its head, then its body in the chunks the network gives."""

    __slots__ = ("_chunks", "_connection", "_httpx", "_received", "_request", "_transport")

    def __init__(self, transport: AsyncTransport, request: Request) -> None:
        self._transport = transport
        self._request = request
        self._connection: AsyncConnection | None = None
        self._httpx: Any = None
        self._chunks: Any = None
        self._received = False

    # -- the SDK's own connections ---------------------------------------------------------

    async def start(self, limits: Limits, *, fresh: bool = False) -> None:
        """Take a connection (an idle one, or a new one) and send the request on it.

        A reused connection that fails at once was closed by the server while idle: the
        request goes once more, on a new connection (``fresh``).
        """
        transport = self._transport
        pool = transport.pool
        assert pool is not None
        request = self._request
        # Errors are raised after the except blocks, not in them: a library's error must
        # not ride along as ``__context__`` with its unmasked message.
        error: AiChatOnlineError
        try:
            connection = await pool.acquire(limits, fresh=fresh)
        except (*_NETWORK_ERRORS, TimeoutError, BadResponse) as exc:
            error = transport.error(exc, request, limits, "connecting")
        else:
            self._connection = connection
            head = request_bytes(
                pool.route, request.method, request.target, request.origin, self._headers()
            )
            try:
                await connection.send(request.method, head, request.body, limits)
                return
            except (*_NETWORK_ERRORS, TimeoutError) as exc:
                self.discard()
                if connection.reused and isinstance(exc, _STALE):
                    await self.start(limits, fresh=True)
                    return
                error = transport.error(exc, request, limits, "sending")
        raise error

    def _headers(self) -> list[tuple[str, str]]:
        request = self._request
        headers = [("Host", request.origin.authority), *request.headers.items()]
        if request.body is not None:
            headers.append(("Content-Length", str(len(request.body))))
        cookie = self._transport.cookies.header()
        if cookie is not None:
            headers.append(("Cookie", cookie))
        return headers

    async def receive_head(self, limits: Limits) -> tuple[int, Mapping[str, str]]:
        """Wait for the status and headers (header names lower-case)."""
        if self._connection is None:
            return await self._httpx_head(limits)
        connection = self._connection
        error: AiChatOnlineError
        try:
            try:
                head = await connection.receive_head(limits)
            except _STALE:
                if not connection.reused:
                    raise
                # A keep-alive connection the server had closed: once more on a new one.
                self.discard()
                await self.start(limits, fresh=True)
                assert self._connection is not None
                head = await self._connection.receive_head(limits)
        except (*_NETWORK_ERRORS, TimeoutError, BadResponse) as exc:
            self.discard()
            error = self._transport.error(exc, self._request, limits)
        else:
            if head.set_cookie:
                self._transport.cookies.update(head.set_cookie)
            return head.status, head.headers
        raise error

    async def read(self, limits: Limits) -> bytes:
        """The next bytes of the body; ``b""`` at its end."""
        connection = self._connection
        if connection is None:
            return await self._httpx_read(limits)
        error: AiChatOnlineError
        try:
            return await connection.receive_body(limits)
        except (*_NETWORK_ERRORS, TimeoutError, BadResponse) as exc:
            self.discard()
            error = self._transport.error(exc, self._request, limits, "reading the answer")
        raise error

    async def read_limited(self, limits: Limits, limit: int) -> bytes:
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
        """Done with the response: its connection goes back to the pool if it can be reused."""
        connection, self._connection = self._connection, None
        if connection is not None:
            pool = self._transport.pool
            assert pool is not None
            pool.release(connection)
        elif self._httpx is not None:
            response, self._httpx = self._httpx, None
            with async_shield():
                await response.aclose()

    def abort(self) -> None:
        """Wake whoever reads this response, from any task or thread; they discard it."""
        connection = self._connection
        if connection is not None:
            connection.abort()
        elif self._httpx is not None:
            _abort_httpx(self._httpx)

    def discard(self) -> None:
        """Done with a response that did not end well: its connection is closed, not reused."""
        connection, self._connection = self._connection, None
        if connection is not None:
            pool = self._transport.pool
            assert pool is not None
            pool.discard(connection)
        elif self._httpx is not None:
            response, self._httpx = self._httpx, None
            _abort_httpx(response)

    # -- the caller's own httpx client --------------------------------------------------

    async def _httpx_head(self, limits: Limits) -> tuple[int, Mapping[str, str]]:
        transport, request = self._transport, self._request
        http = transport._http
        message = http.build_request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        message.extensions["timeout"] = _LiveTimeouts(limits)
        error: AiChatOnlineError
        try:
            async with async_deadline_guard(limits.bound()):
                response = await http.send(message, stream=True, follow_redirects=False)
        except Exception as exc:
            if not _is_transport_failure(exc):
                raise
            error = transport.error(exc, request, limits)
        else:
            self._httpx = response
            self._chunks = response.aiter_raw()
            return response.status_code, {k.lower(): v for k, v in response.headers.items()}
        raise error

    async def _httpx_read(self, limits: Limits) -> bytes:
        if self._chunks is None:
            return b""
        error: AiChatOnlineError
        try:
            async with async_deadline_guard(limits.bound()):
                chunk: bytes = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._chunks = None
            return b""
        except Exception as exc:
            if not _is_transport_failure(exc):
                raise
            self.discard()
            error = self._transport.error(exc, self._request, limits, "reading the answer")
        else:
            return chunk
        raise error


class _LiveTimeouts(dict[str, "float | None"]):
    """httpx's per-request timeouts, each sized by the call's limits when httpcore reads it.

    httpcore looks each one up as its phase begins (a free connection, connecting,
    sending, reading), so a long wait for a connection leaves the later phases less time,
    never more. (Inside one phase the value holds: the SDK's own connections size every
    single wait instead.)
    """

    def __init__(self, limits: Limits) -> None:
        super().__init__({name: None for name in OPERATIONS})
        self._limits = limits

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        return self._limits.cap(key) if key in OPERATIONS else default

    def __getitem__(self, key: str) -> float | None:
        return self._limits.cap(key)


def _is_transport_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (raised inside a caller's httpx client) is a network or HTTP failure."""
    return isinstance(exc, OSError) or _is_httpx(exc, "HTTPError", "StreamError")


def _is_httpx(exc: BaseException, *names: str) -> bool:
    module = type(exc).__module__
    if not module.startswith("httpx"):
        return False
    return any(klass.__name__ in names for klass in type(exc).__mro__)


def _is_httpx_timeout(exc: BaseException) -> bool:
    return _is_httpx(exc, "TimeoutException")


def _httpx_limit(exc: BaseException) -> str | None:
    """Which per-operation limit an httpx timeout is (``None``: the last one sized)."""
    for name, limit in (
        ("ConnectTimeout", "connect"),
        ("ReadTimeout", "read"),
        ("WriteTimeout", "write"),
        ("PoolTimeout", "pool"),
    ):
        if type(exc).__name__ == name and type(exc).__module__.startswith("httpx"):
            return limit
    return None


def _detail(exc: BaseException, secrets: tuple[str, ...]) -> str:
    text = redact(str(exc), *secrets)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _abort_httpx(response: Any) -> None:
    """Shut the socket under a caller's httpx response (best effort; no ``await`` possible)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
