"""The async network backends keep their stream contract, on asyncio and on trio.

Each test connects a backend stream to a plain socket peer on loopback (the peer is
driven by the test, byte by byte): reads return what was sent, within ``max_bytes``, then
``b""`` at the end; a silent peer is a ``TimeoutError``; ``abort()`` from another task
wakes a waiting read with ``ConnectionAbortedError``; a read cancelled while it waits
loses no byte; a reset is an ``OSError``.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from aichatonline._backends import get_async_backend

pytestmark = pytest.mark.anyio


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    with server:
        yield server


async def connect(anyio_backend: str, listener: socket.socket) -> tuple[Any, socket.socket]:
    backend: Any = get_async_backend(anyio_backend)
    stream = await backend.connect_tcp("127.0.0.1", listener.getsockname()[1], 5.0)
    peer, _ = listener.accept()
    return stream, peer


async def test_reads_return_what_was_sent_then_the_end(
    anyio_backend: str, listener: socket.socket
) -> None:
    stream, peer = await connect(anyio_backend, listener)
    with peer:
        peer.sendall(b"x" * 1000)
        got = b""
        while len(got) < 1000:
            data = await stream.read(300, 5.0)
            assert 0 < len(data) <= 300
            got += data
        assert got == b"x" * 1000
        peer.sendall(b"tail")
        peer.shutdown(socket.SHUT_WR)
        assert await stream.read(65536, 5.0) == b"tail"
        assert await stream.read(65536, 5.0) == b""
    stream.close()


async def test_a_silent_peer_is_a_timeout(anyio_backend: str, listener: socket.socket) -> None:
    stream, peer = await connect(anyio_backend, listener)
    with peer, pytest.raises(TimeoutError):
        await stream.read(65536, 0.2)
    stream.close()


@pytest.mark.parametrize("where", ["task", "thread"])
async def test_abort_from_another_task_or_thread_wakes_the_read(
    anyio_backend: str, listener: socket.socket, where: str
) -> None:
    # A finalizer or a client closed elsewhere may abort from a thread that is not the
    # event loop's: the waiting read still ends at once, as aborted (not as the peer's end).
    stream, peer = await connect(anyio_backend, listener)
    with peer:
        async with anyio.create_task_group() as group:

            async def abort_soon() -> None:
                await anyio.sleep(0.1)
                if where == "task":
                    stream.abort()
                else:
                    await anyio.to_thread.run_sync(stream.abort)

            group.start_soon(abort_soon)
            with anyio.fail_after(5), pytest.raises(ConnectionAbortedError):
                await stream.read(65536, None)
        with pytest.raises(ConnectionAbortedError):
            await stream.read(65536, 5.0)
    stream.close()


async def test_a_cancelled_read_loses_no_byte(anyio_backend: str, listener: socket.socket) -> None:
    stream, peer = await connect(anyio_backend, listener)
    with peer:
        with anyio.move_on_after(0.1) as scope:
            await stream.read(65536, None)
        assert scope.cancelled_caught
        peer.sendall(b"after the cancel")
        got = b""
        while len(got) < 16:
            got += await stream.read(65536, 5.0)
        assert got == b"after the cancel"
    stream.close()


async def test_a_reset_is_an_os_error(anyio_backend: str, listener: socket.socket) -> None:
    stream, peer = await connect(anyio_backend, listener)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # linger 0: the peer sends RST
    with pytest.raises(OSError):  # noqa: PT012 - a reset may show on the first or second read
        while await stream.read(65536, 5.0):
            pass
        await stream.read(65536, 5.0)
    stream.close()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_read_with_data_waiting_is_still_a_checkpoint(
    anyio_backend: str, listener: socket.socket
) -> None:
    # trio's rule: every await of its I/O may switch tasks and be cancelled, even when the
    # bytes are there already (else a fast stream starves the other tasks).
    import trio.testing

    stream, peer = await connect(anyio_backend, listener)
    with peer:
        peer.sendall(b"ready")
        await anyio.sleep(0.1)
        with trio.testing.assert_checkpoints():
            assert await stream.read(65536, 5.0) == b"ready"
    stream.close()
