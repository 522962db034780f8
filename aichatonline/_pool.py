"""Connection pools that stay fast at thousands of concurrent streams (two twins).

httpcore's pool (under httpx 0.28) re-examines every queued request against
every connection whenever a request starts or a response closes, and it hands
one idle connection to every waiting request at once, so all but one of them
go round again. At *n* concurrent streams that is O(n²) work for each event:
at 5,000 streams most of the CPU time goes there (see ``benchmarks/``).

:class:`ShardedTransport` and :class:`AsyncShardedTransport` are httpx
transports that spread requests over small ordinary httpx pools ("shards") of
at most ``shard_size`` streams each, so every pool's bookkeeping stays small
and the total cost grows linearly. The first shard with room takes the
request, which keeps sequential calls on shard 0 and its warm connection.
Shards beyond the first few are closed once their last stream ends. All
shards share one SSL context (making one per shard costs megabytes).

:func:`sharded_pool` and :func:`async_sharded_pool` build the pools the SDK
uses when the caller brings no httpx client: no cap on connections (a cap
would queue streams behind each other), and the proxy resolved once for the
base URL.
"""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic, TypeVar

import anyio.lowlevel
import httpx

__all__ = [
    "AsyncShardedTransport",
    "ShardedTransport",
    "async_sharded_pool",
    "sharded_pool",
]

SHARD_SIZE = 32
_KEEP_SHARDS = 2  # shards kept open while idle, with their keep-alive connections


def _limits() -> httpx.Limits:
    return httpx.Limits(
        max_connections=None, max_keepalive_connections=SHARD_SIZE, keepalive_expiry=30.0
    )


_Transport = TypeVar("_Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)


class _Shard(Generic[_Transport]):
    __slots__ = ("active", "transport")

    def __init__(self, transport: _Transport) -> None:
        self.transport: _Transport = transport
        self.active = 0


class _Shards(Generic[_Transport]):
    """Which shard takes the next stream, and which shard to close; no I/O."""

    def __init__(self, make_pool: Callable[[], _Transport], shard_size: int) -> None:
        self._make_pool: Callable[[], _Transport] = make_pool
        self._shard_size = shard_size
        self._shards: list[_Shard[_Transport]] = []

    def take(self) -> _Shard[_Transport]:
        for shard in self._shards:
            if shard.active < self._shard_size:
                break
        else:
            shard = _Shard(self._make_pool())
            self._shards.append(shard)
        shard.active += 1
        return shard

    def release(self, shard: _Shard[_Transport]) -> bool:
        """Free a slot; True when the shard is now idle and surplus (and was dropped)."""
        shard.active -= 1
        if shard.active or shard not in self._shards[_KEEP_SHARDS:]:
            return False  # busy, one of the first, or already dropped (the pool was closed)
        self._shards.remove(shard)
        return True

    @property
    def active(self) -> int:
        return sum(shard.active for shard in self._shards)

    def __len__(self) -> int:
        return len(self._shards)

    def drain(self) -> list[_Shard[_Transport]]:
        shards, self._shards = self._shards, []
        return shards


class ShardedTransport(httpx.BaseTransport):
    """An httpx transport over small pools of at most ``shard_size`` streams each."""

    def __init__(
        self, make_pool: Callable[[], httpx.BaseTransport], shard_size: int = SHARD_SIZE
    ) -> None:
        self._shards = _Shards(make_pool, shard_size)
        self._lock = threading.Lock()  # requests may come from many threads

    @property
    def active(self) -> int:
        """Responses handed out and not closed yet, over all shards."""
        return self._shards.active

    @property
    def shards(self) -> int:
        """How many pools are open."""
        return len(self._shards)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            shard = self._shards.take()
        try:
            response = shard.transport.handle_request(request)
        except BaseException:
            self._release(shard)
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_SyncRelease(response.stream, lambda: self._release(shard)),
            extensions=response.extensions,
        )

    def _release(self, shard: _Shard[httpx.BaseTransport]) -> None:
        with self._lock:
            surplus = self._shards.release(shard)
        if surplus:
            shard.transport.close()

    def close(self) -> None:
        with self._lock:
            shards = self._shards.drain()
        for shard in shards:
            shard.transport.close()


class _SyncRelease(httpx.SyncByteStream):
    """A response body that frees its shard's slot once, when it is closed."""

    def __init__(self, stream: httpx.SyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class AsyncShardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over small pools of at most ``shard_size`` streams each."""

    def __init__(
        self, make_pool: Callable[[], httpx.AsyncBaseTransport], shard_size: int = SHARD_SIZE
    ) -> None:
        self._shards = _Shards(make_pool, shard_size)
        # No lock: shards are only touched between awaits, on one event loop.
        self._loop: object = None

    @property
    def active(self) -> int:
        """Responses handed out and not closed yet, over all shards."""
        return self._shards.active

    @property
    def shards(self) -> int:
        """How many pools are open."""
        return len(self._shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        loop = anyio.lowlevel.current_token().native_token  # the asyncio loop, or trio's token
        if loop is not self._loop:
            # Connections belong to the event loop that made them: on a new
            # loop (a second asyncio.run, a test per loop) start afresh rather
            # than fail with "Event loop is closed". The old ones go with it.
            self._shards.drain()
            self._loop = loop
        shard = self._shards.take()
        try:
            response = await shard.transport.handle_async_request(request)
        except BaseException:
            await self._release(shard)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_AsyncRelease(response.stream, lambda: self._release(shard)),
            extensions=response.extensions,
        )

    async def _release(self, shard: _Shard[httpx.AsyncBaseTransport]) -> None:
        if self._shards.release(shard):
            await shard.transport.aclose()

    async def aclose(self) -> None:
        for shard in self._shards.drain():
            await shard.transport.aclose()


class _AsyncRelease(httpx.AsyncByteStream):
    """A response body that frees its shard's slot once, when it is closed."""

    def __init__(
        self, stream: httpx.AsyncByteStream, release: Callable[[], Awaitable[None]]
    ) -> None:
        self._stream = stream
        self._release: Callable[[], Awaitable[None]] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                await release()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~25 ms: once a process, shared by every pool.
    return httpx.create_ssl_context()


def sharded_pool(proxy: str | None) -> ShardedTransport:
    """The pool the sync client uses when the caller brings no httpx client."""

    def make_pool() -> httpx.BaseTransport:
        return httpx.HTTPTransport(verify=_ssl_context(), limits=_limits(), proxy=proxy)

    return ShardedTransport(make_pool)


def async_sharded_pool(proxy: str | None) -> AsyncShardedTransport:
    """The pool the async client uses when the caller brings no httpx client."""

    def make_pool() -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport(verify=_ssl_context(), limits=_limits(), proxy=proxy)

    return AsyncShardedTransport(make_pool)
