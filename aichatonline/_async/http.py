"""One HTTP/1.1 connection, and opening one: directly, through an HTTP proxy, or SOCKS5.

An :class:`AsyncConnection` carries one request at a time over a network stream from
``_backends``, reading the answer with the core's sans-IO codec (``_core/http11.py``).
Every wait is sized by the call's :class:`~aichatonline._core.Limits` just before it:
``limits.cap("write")`` for sending, ``limits.cap("read")`` for each read, so the
whole-call and first-piece bounds hold inside every phase.

:func:`open_connection` makes one for a :class:`Route`: a TCP connection to the service, or
to the proxy; TLS to the service when it is ``https`` (through an HTTP proxy, inside a
``CONNECT`` tunnel); the SOCKS5 handshake (RFC 1928/1929, with ``socksio``) for a SOCKS
proxy. An HTTP proxy in front of an ``http`` service gets absolute-form requests instead
of a tunnel (``forward``). A stream that fails half-way is aborted, never left open.

Written once, async; ``_sync/http.py`` is generated from it (``scripts/unasync.py``).
"""

from __future__ import annotations

import base64
import functools
import ssl
from dataclasses import dataclass
from typing import Any

from .._backends.base import AsyncNetworkStream
from .._config import ProxyURL
from .._core import Limits, Origin
from .._core.http11 import ResponseHead, ResponseParser, request_head
from .._synchronization import async_backend

__all__ = ["AsyncConnection", "Route", "open_connection"]

#: How much one read takes: enough for a thousand pieces, so a fast stream costs an
#: event-loop turn per thousand pieces (16 KiB cost 12 % of the pieces per second). A
#: stream waiting on a slow reader holds at most this much in the process (what the
#: reader has not asked for stays in the kernel), and a waiting stream with nothing
#: unread holds nothing.
READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class Route:
    """Where a client's connections go: the service's origin, the proxy on the way, and
    the TLS settings (``None``: :func:`ssl_context`, made when first needed)."""

    origin: Origin
    proxy: ProxyURL | None = None
    tls: ssl.SSLContext | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings of this route's connections."""
        return self.tls if self.tls is not None else ssl_context()

    @property
    def forward(self) -> bool:
        """Whether requests go to an HTTP proxy in absolute form (no tunnel)."""
        return (
            self.proxy is not None
            and self.proxy.scheme in ("http", "https")
            and self.origin.scheme == "http"
        )

    def proxy_authorization(self) -> str | None:
        """The ``Proxy-Authorization`` header value for an HTTP proxy with credentials."""
        proxy = self.proxy
        if proxy is None or proxy.username is None:
            return None
        pair = f"{proxy.username}:{proxy.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The TLS settings of every connection: httpx's (certifi's CA bundle), made once."""
    import httpx  # only for https: loading the CA bundle costs ~25 ms, once a process

    return httpx.create_ssl_context()


class AsyncConnection:
    """One HTTP/1.1 connection: a request out, its answer in, then maybe the next."""

    __slots__ = ("_first", "_parser", "_stream", "idle_since", "reused")

    def __init__(self, stream: AsyncNetworkStream) -> None:
        self._stream = stream
        self._parser: ResponseParser | None = None
        self._first = b""
        #: Whether this connection served a request before (a stale one may fail at once).
        self.reused = False
        self.idle_since = 0.0

    async def send(self, method: str, head: bytes, body: bytes | None, limits: Limits) -> None:
        """Send a request (its head and body)."""
        self._parser = ResponseParser(method)
        await self._stream.write(head + body if body else head, limits.cap("write"))

    async def receive_head(self, limits: Limits) -> ResponseHead:
        """Wait for the response head."""
        parser = self._parser
        assert parser is not None
        while True:
            data = await self._stream.read(READ_SIZE, limits.cap("read"))
            if not data:
                parser.end_of_stream()  # raises: no answer, or half a head
            head = parser.receive_head(data)
            if head is not None:
                self._first = parser.first_body()
                return head

    async def receive_body(self, limits: Limits) -> bytes:
        """The next bytes of the body; ``b""`` once it has ended."""
        if self._first:
            first, self._first = self._first, b""
            return first
        parser = self._parser
        assert parser is not None
        stream = self._stream
        while not parser.done:
            data = await stream.read(READ_SIZE, limits.cap("read"))
            if not data:
                parser.end_of_stream()  # the end of a body read to the close; else raises
                return b""
            body = parser.receive_body(data)
            if body:
                return body
        return b""

    @property
    def reusable(self) -> bool:
        """The answer was read to its end and the connection may carry another request."""
        parser = self._parser
        return parser is not None and parser.done and parser.keep_alive and not self._first

    def is_stale(self) -> bool:
        """An idle connection that has data or an end of stream waiting: the server closed it."""
        return self._stream.is_readable()

    def abort(self) -> None:
        """End the connection now, from anywhere (wakes a read waiting on it)."""
        self._stream.abort()

    def close(self) -> None:
        """Release the connection (its owner's call)."""
        self._stream.close()


async def open_connection(route: Route, kind: str, limits: Limits) -> AsyncConnection:
    """A new connection along ``route`` on the loop ``kind``; the connect limit bounds it."""
    backend = async_backend(kind)
    origin, proxy = route.origin, route.proxy
    target = origin if proxy is None else Origin(proxy.scheme, proxy.host, proxy.port)
    stream = await backend.connect_tcp(target.host, target.port, limits.cap("connect"))
    try:
        if proxy is not None and proxy.scheme == "https":
            stream = await stream.start_tls(route.ssl_context(), proxy.host, limits.cap("connect"))
        if proxy is not None and proxy.scheme.startswith("socks"):
            await _socks5_handshake(stream, route, limits)
        elif proxy is not None and origin.scheme == "https":
            await _tunnel(stream, route, limits)
        if origin.scheme == "https":
            stream = await stream.start_tls(route.ssl_context(), origin.host, limits.cap("connect"))
    except BaseException:
        stream.abort()
        raise
    return AsyncConnection(stream)


async def _tunnel(stream: AsyncNetworkStream, route: Route, limits: Limits) -> None:
    """``CONNECT host:port`` through an HTTP proxy; the stream then reaches the service."""
    authority = route.origin.host_port
    headers = [("Host", authority)]
    authorization = route.proxy_authorization()
    if authorization is not None:
        headers.append(("Proxy-Authorization", authorization))
    await stream.write(request_head("CONNECT", authority, headers), limits.cap("write"))
    parser = ResponseParser("CONNECT")
    while True:
        data = await stream.read(READ_SIZE, limits.cap("connect"))
        if not data:
            parser.end_of_stream()
        head = parser.receive_head(data)
        if head is not None:
            break
    if not 200 <= head.status < 300:
        raise ProxyRefused(head.status)
    if parser.first_body():
        raise ConnectionError("the proxy sent bytes before the tunnel was used")


class ProxyRefused(ConnectionError):
    """The proxy answered a tunnel request with ``status``."""

    def __init__(self, status: int) -> None:
        hint = " (proxy authentication required: check the credentials)" if status == 407 else ""
        super().__init__(f"the proxy refused the tunnel with HTTP {status}{hint}")
        self.status = status


async def _socks5_handshake(stream: AsyncNetworkStream, route: Route, limits: Limits) -> None:
    """RFC 1928 ``CONNECT`` (with RFC 1929 username/password when the proxy URL has them)."""
    from socksio import socks5  # the socks extra; checked when the client was configured

    proxy = route.proxy
    assert proxy is not None
    connection = socks5.SOCKS5Connection()
    method = (
        socks5.SOCKS5AuthMethod.USERNAME_PASSWORD
        if proxy.username is not None
        else socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED
    )
    connection.send(socks5.SOCKS5AuthMethodsRequest([method]))
    await _socks_exchange(stream, connection, limits)
    reply = _socks_reply(connection, await _socks_read(stream, limits))
    if not isinstance(reply, socks5.SOCKS5AuthReply) or reply.method != method:
        raise ConnectionError("the SOCKS5 proxy does not accept the authentication offered")
    if method == socks5.SOCKS5AuthMethod.USERNAME_PASSWORD:
        connection.send(
            socks5.SOCKS5UsernamePasswordRequest(
                (proxy.username or "").encode(), (proxy.password or "").encode()
            )
        )
        await _socks_exchange(stream, connection, limits)
        auth = _socks_reply(connection, await _socks_read(stream, limits))
        if not isinstance(auth, socks5.SOCKS5UsernamePasswordReply) or not auth.success:
            raise ConnectionError("the SOCKS5 proxy rejected the username or password")
    connection.send(
        socks5.SOCKS5CommandRequest.from_address(
            socks5.SOCKS5Command.CONNECT, (route.origin.host, route.origin.port)
        )
    )
    await _socks_exchange(stream, connection, limits)
    answer = _socks_reply(connection, await _socks_read(stream, limits))
    succeeded = socks5.SOCKS5ReplyCode.SUCCEEDED
    if not isinstance(answer, socks5.SOCKS5Reply) or answer.reply_code != succeeded:
        code = getattr(getattr(answer, "reply_code", None), "name", "an unreadable reply")
        raise ConnectionError(f"the SOCKS5 proxy could not connect to the service ({code})")


def _socks_reply(connection: Any, data: bytes) -> Any:
    """The proxy's reply in ``data``; a :class:`ConnectionError` if it is not SOCKS5."""
    from socksio.exceptions import SOCKSError

    try:
        return connection.receive_data(data)
    except (SOCKSError, ValueError, IndexError):  # not SOCKS5 (an HTTP proxy, say)
        raise ConnectionError("the SOCKS5 proxy sent a malformed reply") from None


async def _socks_exchange(stream: AsyncNetworkStream, connection: Any, limits: Limits) -> None:
    await stream.write(connection.data_to_send(), limits.cap("write"))


async def _socks_read(stream: AsyncNetworkStream, limits: Limits) -> bytes:
    data = await stream.read(READ_SIZE, limits.cap("connect"))
    if not data:
        raise ConnectionResetError("the SOCKS5 proxy closed the connection")
    return data


def request_bytes(
    route: Route, method: str, target: str, origin: Origin, headers: list[tuple[str, str]]
) -> bytes:
    """The head of a request along ``route`` (absolute form when it is forwarded)."""
    if route.forward:
        target = f"{origin}{target}"
        authorization = route.proxy_authorization()
        if authorization is not None:
            headers = [*headers, ("Proxy-Authorization", authorization)]
    return request_head(method, target, headers)
