"""The trio backend: trio's own socket and TLS streams, each wait in a cancel scope only
when it has a timeout.

``abort()`` closes the socket synchronously (trio sockets can be closed without an
``await``, and a task waiting on one wakes with ``ClosedResourceError``), so a stream can
be closed from another task or by garbage collection. trio's errors become the builtin ones
the other backends raise.

A plain TCP read checkpoints first and then takes the bytes the kernel has, returning them
at once: when the bytes are already there, trio's own ``receive_some`` takes them and then
yields, holding them meanwhile, so a thousand busy streams each held a whole read.
TLS streams (and sockets on Windows) read through trio's own streams.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from typing import cast

import trio

from . import is_socket_readable

__all__ = ["TrioBackend", "TrioStream"]

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)


class TrioStream:
    """A TCP or TLS stream on trio."""

    __slots__ = ("_aborted", "_by_fd", "_socket", "_stream")

    def __init__(self, stream: trio.abc.Stream, socket: trio.socket.SocketType) -> None:
        self._stream = stream
        self._socket = socket
        self._aborted = False
        # Read by file descriptor: plain TCP on POSIX (a Windows socket is no descriptor).
        self._by_fd = isinstance(stream, trio.SocketStream) and os.name == "posix"

    def _failure(self, exc: BaseException) -> OSError:
        if self._aborted:
            return ConnectionAbortedError("the connection was closed")
        cause = exc.__cause__
        if isinstance(cause, OSError):
            return cause
        return ConnectionResetError(str(exc) or type(exc).__name__)

    async def read(self, max_bytes: int, timeout: float | None) -> bytes:
        """Up to ``max_bytes`` bytes (``b""`` at the end of the stream)."""
        try:
            if timeout is None:
                data = await self._receive(max_bytes)
            else:
                with trio.move_on_after(timeout) as scope:
                    data = await self._receive(max_bytes)
                if scope.cancelled_caught:
                    raise TimeoutError()
        except _BROKEN as exc:
            raise self._failure(exc) from None
        except ssl.SSLError:
            if self._aborted:
                raise ConnectionAbortedError("the connection was closed") from None
            raise
        if not data and self._aborted:  # shut down from another thread: not the peer's end
            raise ConnectionAbortedError("the connection was closed")
        return data

    async def _receive(self, max_bytes: int) -> bytes:
        if not self._by_fd:
            return cast(bytes, await self._stream.receive_some(max_bytes))
        # Plain TCP: the checkpoint first, then the bytes, handed over at once. trio's own
        # receive, finding bytes there already, takes them and then yields, holding them
        # meanwhile: a thousand busy streams held a whole read each (64 MiB).
        await trio.lowlevel.checkpoint()
        while True:
            fd = self._socket.fileno()
            if fd < 0 or self._aborted:
                raise ConnectionAbortedError("the connection was closed")
            try:
                return os.read(fd, max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Send all of ``data``."""
        try:
            if timeout is None:
                await self._stream.send_all(data)
                return
            with trio.move_on_after(timeout):
                await self._stream.send_all(data)
                return
        except _BROKEN as exc:
            raise self._failure(exc) from None
        raise TimeoutError()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str, timeout: float | None
    ) -> TrioStream:
        """TLS over this stream (the handshake bounded by ``timeout``)."""
        tls = trio.SSLStream(self._stream, ssl_context, server_hostname=server_hostname)
        try:
            if timeout is None:
                await tls.do_handshake()
            else:
                with trio.fail_after(timeout):
                    await tls.do_handshake()
        except trio.TooSlowError:
            raise TimeoutError() from None
        except _BROKEN as exc:
            raise self._failure(exc) from None
        return TrioStream(tls, self._socket)

    def is_readable(self) -> bool:
        """Whether data or an end of stream is waiting (for an idle connection: stale)."""
        if self._aborted:
            return True
        try:
            fd = self._socket.fileno()
        except OSError:
            return True
        if fd < 0:
            return True
        with socket.socket(fileno=fd) as raw:
            try:
                return is_socket_readable(raw)
            finally:
                raw.detach()

    def abort(self) -> None:
        """End the stream now (no ``await`` needed); a waiting task wakes and raises.

        From another thread (a finalizer, a client closed from elsewhere) trio cannot
        close the socket (its waiters are woken from trio's own thread only): the socket
        is shut down instead, which wakes a waiting read; its owner then closes it.
        """
        self._aborted = True
        try:
            self._socket.close()
        except RuntimeError:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    close = abort


class TrioBackend:
    """Opens TCP connections on trio."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None) -> TrioStream:
        """Connect to ``host:port`` within ``timeout`` seconds."""
        try:
            if timeout is None:
                stream = await trio.open_tcp_stream(host, port)
            else:
                with trio.fail_after(timeout):
                    stream = await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            raise TimeoutError() from None
        except _BROKEN as exc:
            raise ConnectionResetError(str(exc)) from None
        return TrioStream(stream, stream.socket)
