"""Bytes between a proxy's client and an origin: exact lengths, chunked bodies, to the end,
and two-way tunnels (``ForwardProxy``'s HTTP relaying, ``CONNECT`` and SOCKS5).

A tunnel passes an end of stream on as a half-close, and a reset as a reset; any other
failure aborts both sides. ``ProxyDone`` ends a client connection that was answered with
an error, or cannot be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

__all__ = ["ProxyDone", "abort_with_reset", "copy_chunked", "copy_exact", "copy_to_eof", "tunnel"]

_COPY_SIZE = 64 * 1024


class ProxyDone(Exception):
    """The client connection is finished (answered with an error, or unusable)."""


def abort_with_reset(writer: asyncio.StreamWriter) -> None:
    """Abort a connection with a TCP reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def copy_exact(src: asyncio.StreamReader, dst: asyncio.StreamWriter, size: int) -> None:
    while size:
        data = await src.read(min(size, _COPY_SIZE))
        if not data:
            raise asyncio.IncompleteReadError(b"", size)
        dst.write(data)
        await dst.drain()
        size -= len(data)


async def copy_chunked(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Relay one chunked body unchanged, each piece as soon as it arrives."""
    while True:
        line = await src.readuntil(b"\r\n")
        dst.write(line)
        await dst.drain()
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise ProxyDone from None
        if size == 0:
            while True:  # trailers, up to the empty line
                trailer = await src.readuntil(b"\r\n")
                dst.write(trailer)
                if trailer == b"\r\n":
                    await dst.drain()
                    return
        await copy_exact(src, dst, size + 2)


async def copy_to_eof(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(_COPY_SIZE):
        dst.write(data)
        await dst.drain()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    await copy_to_eof(src, dst)
    if dst.can_write_eof() and not dst.is_closing():
        dst.write_eof()


async def tunnel(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    origin: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    """Copy bytes both ways until both directions end or one fails."""
    tasks = {
        asyncio.ensure_future(_pump(client[0], origin[1])),
        asyncio.ensure_future(_pump(origin[0], client[1])),
    }
    try:
        pending = tasks
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    continue
                # One side failed: tear down both, passing a reset on as a reset.
                if isinstance(exc, ConnectionResetError):
                    abort_with_reset(client[1])
                    abort_with_reset(origin[1])
                else:
                    client[1].transport.abort()
                    origin[1].transport.abort()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
