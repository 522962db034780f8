"""The asyncio backend: asyncio's own transports under a lean protocol.

Why not asyncio's streams, or anyio's: every ``receive`` there passes a checkpoint (one more
turn of the event loop) and a read with a timeout opens a cancel scope; at one round trip
per chat, those turns were most of the SDK's own time on asyncio. Here a read takes what
the protocol already holds without waiting; only when nothing is there does it wait, on a
future woken by ``data_received``, with a timer only when the read has a timeout.

Flow control both ways: the protocol is a ``BufferedProtocol`` that lets asyncio read at
most 64 KiB at a time (into one buffer per thread, copied out at once, where asyncio's own
reads allocate 256 KiB each), and it stops reading from the socket once it holds 64 KiB the
caller has not taken: what a slow reader has not asked for stays in the kernel. (Smaller
reads cost an event-loop turn every few hundred pieces: 12 % of the pieces per second at
16 KiB, for no memory saved at ten thousand streams.) A write waits while the transport's
buffer is over its high-water mark.

``abort()`` closes the transport at once and wakes a waiting read, which then raises
``ConnectionAbortedError``: it needs no ``await``, so a stream can be closed from another
task, or by garbage collection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from typing import Any, cast

from . import is_socket_readable

__all__ = ["AsyncioBackend", "AsyncioStream"]

#: Bytes held for the reader before the protocol stops reading from the socket.
HIGH_WATER = 64 * 1024
#: The most one read from the socket takes.
READ_CHUNK = 64 * 1024

_buffers = threading.local()  # a loop runs in one thread; its reads never interleave


def _read_buffer() -> memoryview:
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(READ_CHUNK))
    return view


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class _Protocol(asyncio.BufferedProtocol):
    """Holds what the socket gave until the stream's reader takes it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.aborted = False
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.chunks.append(_read_buffer()[:nbytes].tobytes())  # the buffer is reused
        self.size += nbytes
        if self.size >= HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        _wake(self.waiter)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.waiter)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None and self.error is None:
            self.error = exc
        _wake(self.waiter)
        _wake(self.drain_waiter)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        _wake(self.drain_waiter)


class AsyncioStream:
    """A TCP or TLS stream on asyncio."""

    __slots__ = ("_loop", "_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        """Up to ``max_bytes`` of what the socket gave (waiting for it if nothing yet)."""
        protocol = self._protocol
        if not protocol.chunks:
            if protocol.aborted:
                raise ConnectionAbortedError("the connection was closed")
            if not protocol.eof:
                await self._wait(timeout)
            if not protocol.chunks:
                if protocol.aborted:
                    raise ConnectionAbortedError("the connection was closed")
                if protocol.error is not None:
                    raise ConnectionResetError(str(protocol.error) or "connection lost")
                return b""
        chunks = protocol.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        if len(data) > max_bytes:  # rare: the caller asks for at least one socket read
            chunks.append(data[max_bytes:])
            data = data[:max_bytes]
        protocol.size = len(chunks[0]) if chunks else 0
        if protocol.reading_paused:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    async def _wait(self, timeout: float | None) -> None:
        waiter = self._loop.create_future()
        self._protocol.waiter = waiter
        timer = None if timeout is None else self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._protocol.waiter = None
            if timer is not None:
                timer.cancel()

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Send ``data`` (waiting while the transport's buffer is full)."""
        protocol = self._protocol
        if protocol.aborted:
            raise ConnectionAbortedError("the connection was closed")
        if self._transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._transport.write(data)
        if not protocol.writing_paused:
            return
        waiter = self._loop.create_future()
        protocol.drain_waiter = waiter
        timer = None if timeout is None else self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            protocol.drain_waiter = None
            if timer is not None:
                timer.cancel()
        if protocol.aborted:
            raise ConnectionAbortedError("the connection was closed")
        if protocol.eof and protocol.writing_paused:
            raise ConnectionResetError("the connection was lost while sending")

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str, timeout: float | None
    ) -> AsyncioStream:
        """TLS over this stream (a tunnel through a proxy)."""
        coroutine = self._loop.start_tls(
            self._transport,
            self._protocol,
            ssl_context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=timeout,
        )
        transport = await _within(coroutine, timeout)
        if transport is None:
            raise ConnectionResetError("the connection closed during the TLS handshake")
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def is_readable(self) -> bool:
        """Whether data or an end of stream is waiting (for an idle connection: stale)."""
        protocol = self._protocol
        if protocol.chunks or protocol.eof or protocol.aborted:
            return True
        return is_socket_readable(self._transport.get_extra_info("socket"))

    def abort(self) -> None:
        """End the stream now (no ``await`` needed); a waiting read wakes and raises."""
        protocol = self._protocol
        protocol.aborted = True
        protocol.chunks.clear()
        if self._loop.is_closed():
            # A loop closed with this connection open cannot close it any more: end the TCP
            # connection at least (the descriptor goes when the transport is collected).
            with contextlib.suppress(OSError):
                self._transport.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            return
        self._transport.abort()
        _wake(protocol.waiter)
        _wake(protocol.drain_waiter)

    close = abort


async def _within(coroutine: Any, timeout: float | None) -> Any:
    """``await coroutine``, bounded by ``timeout``; the builtin ``TimeoutError`` when it fires.

    Not ``asyncio.wait_for``: before Python 3.12 it can swallow a cancellation that arrives
    as the awaited work completes, and a cancelled call must stay cancelled.
    """
    if timeout is None:
        return await coroutine
    if timeout <= 0:
        coroutine.close()
        raise TimeoutError()
    scope = getattr(asyncio, "timeout", None)
    if scope is not None:  # Python 3.11+
        async with scope(timeout):
            return await coroutine
    # Python 3.10: cancel ourselves at the deadline, and tell that cancel from others.
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await coroutine
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError() from None
        raise
    finally:
        timer.cancel()


class AsyncioBackend:
    """Opens TCP connections on the running asyncio loop."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None) -> AsyncioStream:
        """Connect to ``host:port`` within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        protocol = _Protocol()
        transport, _ = await _within(loop.create_connection(lambda: protocol, host, port), timeout)
        return AsyncioStream(transport, protocol)
