"""``AsyncShardedTransport``: requests spread over several stock httpx transports.

Why: httpcore's connection pool looks at every connection and every request it holds each
time a request starts or a response closes, so one pool carrying thousands of concurrent
streams costs time quadratic in their number (minutes for ten thousand). This transport
keeps every pool small: it hands each request to one of several stock
``httpx.AsyncHTTPTransport`` instances ("shards"), each carrying at most ``shard_size``
requests at once, and makes another shard when all of them are busy. Everything on the
wire is the stock transport's (connections, keep-alive, TLS, proxies, HTTP/2, retries of
failed connects), and respx, pytest-httpx and OpenTelemetry's httpx instrumentation see
stock transports.

Shards with room wait on a stack, the last used on top, so a light load keeps using the
same few kept-alive connections. A shard left with nothing to carry is closed when more
than ``spare_shards`` such shards wait, or once it has been idle for ``keepalive_expiry``,
so a burst leaves no crowd of idle connections behind. With ``max_connections`` set, there
are at most ``max_connections / shard_size`` shards; a request that finds them all full
goes to the least loaded one, whose own pool queues it (its ``pool`` time limit applies)
as a single httpx pool would.

A shard of size one carries one connection: it then knows the network stream of the
request it carries, and reports it to the SDK (``_stream_waits.Socket``), so that the
blocking client can end a read that blocks even before the response head has come.

The books (which shards exist, which have room, how many are idle) change only inside
``with self._atomic``, never across an ``await``: a shard is taken off them before it is
closed, so no other request can take it meanwhile, and the blocking twin's threads share
them under a lock.

Written once, async; ``_sync/shards.py`` is generated from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from .._stream_waits import EXTENSION
from .._synchronization import AsyncAtomic, async_shield

__all__ = ["AsyncShardedTransport"]


class _Shard:
    __slots__ = ("idle_since", "load", "on_books", "stream", "transport")

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport
        self.load = 0
        self.idle_since = time.monotonic()
        self.on_books = True  # False once taken off the books to be closed
        #: The network stream of the last response (a shard of size one: its connection).
        self.stream: object = None


class AsyncShardedTransport(httpx.AsyncBaseTransport):
    """Spreads requests over stock ``httpx.AsyncHTTPTransport`` shards of ``shard_size``.

    ``limits`` is what it is for httpx (``max_connections=None``: no cap on connections);
    every other keyword argument goes to each shard's ``httpx.AsyncHTTPTransport`` (pass an
    ``ssl.SSLContext`` as ``verify`` so that the shards share it).
    """

    def __init__(
        self,
        *,
        shard_size: int = 8,
        spare_shards: int = 2,
        limits: httpx.Limits | None = None,
        **options: Any,
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        limits = limits if limits is not None else httpx.Limits(max_connections=None)
        self.shard_size = shard_size
        self._spare = spare_shards
        self._expiry = math.inf if limits.keepalive_expiry is None else limits.keepalive_expiry
        cap = limits.max_connections
        self._max_shards = math.inf if cap is None else max(1, math.ceil(cap / shard_size))
        shard_limits = httpx.Limits(
            max_connections=shard_size,
            max_keepalive_connections=shard_size,
            keepalive_expiry=limits.keepalive_expiry,
        )
        self._make: Callable[[], httpx.AsyncBaseTransport] = lambda: httpx.AsyncHTTPTransport(
            limits=shard_limits, **options
        )
        self._shards: list[_Shard] = []
        self._room: list[_Shard] = []  # shards with room, the last used on top
        self._idle = 0  # shards carrying nothing
        self._swept = time.monotonic()
        self._atomic = AsyncAtomic()

    @property
    def in_flight(self) -> int:
        """Requests sent and not closed yet, over every shard."""
        return sum(shard.load for shard in self._shards)

    @property
    def shards(self) -> int:
        """How many shards are open."""
        return len(self._shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for expired in self._sweep():
            await self._close(expired)
        shard = self._take()
        socket = request.extensions.get(EXTENSION)
        if socket is not None and self.shard_size == 1 and shard.stream is not None:
            socket.set(shard.stream)  # the kept-alive connection it will most likely use
        try:
            response = await shard.transport.handle_async_request(request)
        except BaseException:
            await self._give_back(shard)
            raise
        if self.shard_size == 1:
            shard.stream = response.extensions.get("network_stream")
        response.stream = _ShardStream(response.stream, self, shard)  # type: ignore[arg-type]
        return response

    def _take(self) -> _Shard:
        with self._atomic:
            room = self._room
            if room:
                shard = room[-1]
            elif len(self._shards) < self._max_shards:
                shard = _Shard(self._make())
                self._shards.append(shard)
                room.append(shard)
                self._idle += 1
            else:  # every shard full: the least loaded one's pool queues the request
                shard = min(self._shards, key=lambda each: each.load)
            if not shard.load:
                self._idle -= 1
            shard.load += 1
            if shard.load == self.shard_size:
                room.pop()
            return shard

    async def _give_back(self, shard: _Shard) -> None:
        with self._atomic:
            shard.load -= 1
            if not shard.on_books:  # the transport was closed meanwhile
                return
            if shard.load == self.shard_size - 1:
                self._room.append(shard)
            if shard.load:
                return
            shard.idle_since = time.monotonic()
            self._idle += 1
            if self._idle <= self._spare:
                return
            self._detach(shard)
        await self._close(shard)

    def _sweep(self) -> list[_Shard]:
        """The shards that carried nothing for ``keepalive_expiry``, taken off the books
        (looked for once a second)."""
        now = time.monotonic()
        with self._atomic:
            if now - self._swept < 1.0:
                return []
            self._swept = now
            expired = [
                shard
                for shard in self._room
                if not shard.load and now - shard.idle_since > self._expiry
            ]
            for shard in expired:
                self._detach(shard)
            return expired

    def _detach(self, shard: _Shard) -> None:
        """Take an idle shard off the books (``self._atomic`` held)."""
        self._room.remove(shard)
        self._shards.remove(shard)
        self._idle -= 1
        shard.on_books = False

    async def _close(self, shard: _Shard) -> None:
        with async_shield():  # a cancelled caller must not leave its connections open
            await shard.transport.aclose()

    async def aclose(self) -> None:
        with self._atomic:
            shards, self._shards, self._room, self._idle = self._shards, [], [], 0
            for shard in shards:
                shard.on_books = False
        for shard in shards:
            await shard.transport.aclose()


class _ShardStream(httpx.AsyncByteStream):
    """A shard's response body: closing it gives the shard's room back."""

    __slots__ = ("_router", "_shard", "_stream")

    def __init__(
        self, stream: httpx.AsyncByteStream, router: AsyncShardedTransport, shard: _Shard
    ) -> None:
        self._stream = stream
        self._router = router
        self._shard: _Shard | None = shard

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        shard, self._shard = self._shard, None
        try:
            await self._stream.aclose()
        finally:
            if shard is not None:
                await self._router._give_back(shard)
