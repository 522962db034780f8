"""The transport: two thin twins around httpx that send a core ``Request`` and move bytes.

:class:`SyncTransport` and :class:`AsyncTransport` mirror each other method
for method. They know nothing of the protocol beyond "a non-2xx status is an
error the core classifies": they open a response, hand out its body chunks,
and translate every httpx failure into one of our errors (cause chained).

For the pools the SDK makes itself (``_pool.py``) the request goes straight
to the pool; a caller's own httpx client gets it through ``send`` so that
its settings apply.

The whole-call deadline is enforced here, where the waiting happens. httpx's
per-operation timeouts are capped by the time left at the moment each phase
starts (``_CappedTimeouts``). The async twin also puts a cancel scope ending
at the deadline around sending the request and receiving the response head,
and around any read the read timeout would not end first. The sync twin
cannot cancel a blocking read, so near the deadline it arms a watchdog timer
that shuts the socket down, which wakes the read; the error that follows is
reported as the timeout it is. (Before the response head arrives the sync
twin has no socket to shut: a server trickling its head a byte at a time can
hold a blocking call past the deadline by up to the read timeout per byte.)
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from contextlib import aclosing, asynccontextmanager, closing, contextmanager

import anyio
import httpx

from ._core import ERROR_BODY_LIMIT, Deadline, Request, Timeout, redact, status_error
from ._exceptions import (
    AiChatOnlineError,
    APIConnectionError,
    APITimeoutError,
    InvalidRequestError,
    ProtocolError,
)

__all__ = ["AsyncTransport", "SyncTransport"]


class _CappedTimeouts(dict[str, "float | None"]):
    """httpx's per-request timeouts, each capped by the time left when it is read.

    httpcore looks each one up as its phase begins (waiting for a connection,
    connecting, writing, reading), so a long wait for a connection leaves the
    later phases less time, never more.
    """

    def __init__(self, timeout: Timeout, deadline: Deadline) -> None:
        super().__init__(
            connect=timeout.connect, read=timeout.read, write=timeout.write, pool=timeout.pool
        )
        self._deadline = deadline

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        return self._deadline.cap(super().get(key, default))

    def __getitem__(self, key: str) -> float | None:
        return self._deadline.cap(super().__getitem__(key))


def _cancel_at_deadline(
    deadline: Deadline, limit: float | None
) -> contextlib.AbstractContextManager[object]:
    """A cancel scope ending at the deadline, unless the wait's own timeout
    (``limit``) is sure to end it first: cancel scopes cost microseconds, and
    most reads of a long answer do not need one.
    """
    left = deadline.remaining()
    if left is None or (limit is not None and limit < left):
        return contextlib.nullcontext()
    return anyio.fail_after(left)


def _message(request: Request, timeouts: _CappedTimeouts, cookies: httpx.Cookies) -> httpx.Request:
    # Straight to the SDK's own pool, past httpx.Client's per-request work
    # (merging defaults, auth, redirects, hooks) that this protocol never
    # needs: about a quarter of a warm chat's time. httpx.Request still adds
    # Host and Content-Length, and the response still decodes gzip. Cookies
    # are kept, as the original's browser-like session kept them.
    message = httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        content=request.body,
        extensions={"timeout": timeouts},
    )
    if cookies:
        cookies.set_cookie_header(message)
    return message


def _translate(
    exc: Exception, deadline: Deadline, during: str, secrets: tuple[str, ...] = ()
) -> AiChatOnlineError:
    """Our error for an httpx (or anyio timeout) failure ``during`` an operation."""
    detail = redact(str(exc), *secrets) or type(exc).__name__
    if deadline.expired():
        return APITimeoutError(
            f"{during}: the call ran past its total timeout of {deadline.total:g}s ({detail})"
        )
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return APITimeoutError(f"{during}: {type(exc).__name__}: {detail}")
    if isinstance(exc, httpx.DecodingError):
        return ProtocolError(f"{during}: the body could not be decoded: {detail}")
    if isinstance(exc, (httpx.LocalProtocolError, httpx.UnsupportedProtocol)):
        # Our request itself cannot be sent: trying again cannot help.
        return InvalidRequestError(f"{during}: the request cannot be sent: {detail}")
    return APIConnectionError(f"{during}: {type(exc).__name__}: {detail}")


_FAILURES = (httpx.HTTPError, httpx.StreamError, OSError)


class _MaskProxyAuth(logging.Filter):
    """httpcore's SOCKS trace logs the proxy's username and password at DEBUG: mask them."""

    _AUTH = re.compile(r"auth=\(.*?\)(?=[ ,]|$)")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self._AUTH.sub("auth=***", message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


logging.getLogger("httpcore.socks").addFilter(_MaskProxyAuth())


class _Watchdog:
    """Shuts a sync response's socket down at the deadline, waking a blocked read."""

    def __init__(self, response: httpx.Response, deadline: Deadline, read: float | None) -> None:
        self._response = response
        self._deadline = deadline
        self._read = read
        self._timer: threading.Timer | None = None

    def check(self) -> None:
        """Before a read: arm the timer if this read could outlast the deadline."""
        left = self._deadline.remaining()
        if (
            self._timer is not None
            or left is None
            or (self._read is not None and left > self._read)
        ):
            return
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            self._timer = threading.Timer(max(left, 0.0), _shutdown, (sock,))
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    # OSError: already closed, so the read it was meant to wake has ended.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class SyncTransport:
    """Sends requests with an ``httpx.Client`` and hands out response bytes.

    Made :meth:`over_pool`, it owns the httpx client around the SDK's pool and
    sends straight to the pool.
    """

    def __init__(self, http: httpx.Client, timeout: Timeout) -> None:
        self.http = http
        self.timeout = timeout
        self._pool: httpx.BaseTransport | None = None

    @classmethod
    def over_pool(cls, pool: httpx.BaseTransport, timeout: Timeout) -> SyncTransport:
        """A transport that owns ``pool`` (and the httpx client made around it)."""
        transport = cls(httpx.Client(transport=pool), timeout)
        transport._pool = pool
        return transport

    def _send(self, request: Request, deadline: Deadline) -> httpx.Response:
        if self.http.is_closed:
            raise InvalidRequestError("the client is closed (its httpx client is closed)")
        timeouts = _CappedTimeouts(self.timeout, deadline)
        if self._pool is None:  # the caller's client: its settings apply
            message = self.http.build_request(
                request.method, request.url, headers=request.headers, content=request.body
            )
            message.extensions["timeout"] = timeouts
            return self.http.send(message, stream=True)
        message = _message(request, timeouts, self.http.cookies)
        response = self._pool.handle_request(message)
        response.request = message
        if "set-cookie" in response.headers:
            self.http.cookies.extract_cookies(response)
        return response

    @contextmanager
    def open(self, request: Request, deadline: Deadline) -> Iterator[httpx.Response]:
        """Send ``request``; yield the 2xx response with its body unread; close it after."""
        try:
            response = self._send(request, deadline)
        except _FAILURES as exc:
            during = f"{request.method} {request.url} failed"
            raise _translate(exc, deadline, during, request.secrets) from exc
        try:
            if not response.is_success:
                body = self._read(response, deadline, ERROR_BODY_LIMIT)
                raise status_error(
                    response.status_code, response.headers, body, secrets=request.secrets
                )
            yield response
        finally:
            response.close()

    def fetch(self, request: Request, deadline: Deadline) -> bytes:
        """Send ``request`` and return the start of its 2xx body (at most 64 KiB)."""
        with self.open(request, deadline) as response:
            return self._read(response, deadline, ERROR_BODY_LIMIT)

    def iter_bytes(
        self, response: httpx.Response, deadline: Deadline
    ) -> Generator[bytes, None, None]:
        """The body's chunks as they arrive; a broken body raises one of our errors."""
        watchdog = _Watchdog(response, deadline, self.timeout.read)
        chunks = response.iter_bytes()
        try:
            while True:
                watchdog.check()
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                yield chunk
        except _FAILURES as exc:
            raise _translate(exc, deadline, "the stream broke") from exc
        finally:
            watchdog.cancel()
            chunks.close()  # type: ignore[attr-defined]

    def _read(self, response: httpx.Response, deadline: Deadline, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        with closing(self.iter_bytes(response, deadline)) as chunks:
            for chunk in chunks:
                parts.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
        return b"".join(parts)[:limit]

    def close(self) -> None:
        """Close the httpx client if the SDK made it."""
        if self._pool is not None:
            self.http.close()


class AsyncTransport:
    """Sends requests with an ``httpx.AsyncClient`` and hands out response bytes.

    Made :meth:`over_pool`, it owns the httpx client around the SDK's pool and
    sends straight to the pool.
    """

    def __init__(self, http: httpx.AsyncClient, timeout: Timeout) -> None:
        self.http = http
        self.timeout = timeout
        self._pool: httpx.AsyncBaseTransport | None = None

    @classmethod
    def over_pool(cls, pool: httpx.AsyncBaseTransport, timeout: Timeout) -> AsyncTransport:
        """A transport that owns ``pool`` (and the httpx client made around it)."""
        transport = cls(httpx.AsyncClient(transport=pool), timeout)
        transport._pool = pool
        return transport

    async def _send(self, request: Request, deadline: Deadline) -> httpx.Response:
        if self.http.is_closed:
            raise InvalidRequestError("the client is closed (its httpx client is closed)")
        timeouts = _CappedTimeouts(self.timeout, deadline)
        if self._pool is None:  # the caller's client: its settings apply
            message = self.http.build_request(
                request.method, request.url, headers=request.headers, content=request.body
            )
            message.extensions["timeout"] = timeouts
            return await self.http.send(message, stream=True)
        message = _message(request, timeouts, self.http.cookies)
        response = await self._pool.handle_async_request(message)
        response.request = message
        if "set-cookie" in response.headers:
            self.http.cookies.extract_cookies(response)
        return response

    @asynccontextmanager
    async def open(self, request: Request, deadline: Deadline) -> AsyncIterator[httpx.Response]:
        """Send ``request``; yield the 2xx response with its body unread; close it after."""
        try:
            # Always a hard stop here: a server may trickle its response head,
            # each byte within the read timeout.
            with anyio.fail_after(deadline.remaining()):
                response = await self._send(request, deadline)
        except (*_FAILURES, TimeoutError) as exc:
            during = f"{request.method} {request.url} failed"
            raise _translate(exc, deadline, during, request.secrets) from exc
        try:
            if not response.is_success:
                body = await self._read(response, deadline, ERROR_BODY_LIMIT)
                raise status_error(
                    response.status_code, response.headers, body, secrets=request.secrets
                )
            yield response
        finally:
            # Shielded: a cancelled caller must still give the connection back.
            with anyio.CancelScope(shield=True):
                await response.aclose()

    async def fetch(self, request: Request, deadline: Deadline) -> bytes:
        """Send ``request`` and return the start of its 2xx body (at most 64 KiB)."""
        async with self.open(request, deadline) as response:
            return await self._read(response, deadline, ERROR_BODY_LIMIT)

    async def iter_bytes(
        self, response: httpx.Response, deadline: Deadline
    ) -> AsyncGenerator[bytes, None]:
        """The body's chunks as they arrive; a broken body raises one of our errors."""
        chunks = response.aiter_bytes()
        exhausted = False
        try:
            while True:
                with _cancel_at_deadline(deadline, self.timeout.read):
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        return
                yield chunk
        except (*_FAILURES, TimeoutError) as exc:
            raise _translate(exc, deadline, "the stream broke") from exc
        finally:
            if not exhausted:  # left early: close httpx's generator now, not at GC
                with anyio.CancelScope(shield=True):
                    await chunks.aclose()  # type: ignore[attr-defined]

    async def _read(self, response: httpx.Response, deadline: Deadline, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async with aclosing(self.iter_bytes(response, deadline)) as chunks:
            async for chunk in chunks:
                parts.append(chunk)
                size += len(chunk)
                if size >= limit:
                    break
        return b"".join(parts)[:limit]

    async def aclose(self) -> None:
        """Close the httpx client if the SDK made it."""
        if self._pool is not None:
            await self.http.aclose()
