"""Network backends: TCP and TLS streams for the SDK's own HTTP/1.1 connections.

Three small backends with one shape (as httpcore has them), chosen where the code runs:

- ``sync``    blocking sockets, for the ``Client`` (its twin of the async code is generated);
- ``asyncio`` asyncio's own transports and a lean protocol, for the ``AsyncClient`` on asyncio;
- ``trio``    trio's streams, for the ``AsyncClient`` on trio.

A stream has ``read(max_bytes, timeout)`` (``b""`` at the end), ``write(data, timeout)``,
``start_tls(...)``, ``is_readable()`` (an idle connection the peer closed) and
``abort()``, which ends the stream at once and wakes a read waiting on it: from another
thread for the sync backend, synchronously (no ``await``) for the async ones, so that a
stream can be closed from anywhere, garbage collection included. A timeout raises the
builtin ``TimeoutError``; any other failure an ``OSError`` (``ConnectionAbortedError``
after ``abort()``). Every wait takes its timeout from the caller, who sizes it by the call's
limits just before (see ``_core/timeouts.py``): that is how the whole-call bound holds in
every phase without a watchdog or a cancel scope per read.
"""

from __future__ import annotations

import select
import socket

__all__ = ["get_async_backend", "get_sync_backend", "is_socket_readable"]


def get_async_backend(name: str) -> object:
    """The backend for ``name`` (``"asyncio"`` or ``"trio"``), made once per process."""
    backend = _BACKENDS.get(name)
    if backend is None:
        if name == "trio":
            from .trio import TrioBackend

            backend = TrioBackend()
        else:
            from .asyncio import AsyncioBackend

            backend = AsyncioBackend()
        _BACKENDS[name] = backend
    return backend


def get_sync_backend(name: str = "sync") -> object:
    """The blocking backend."""
    backend = _BACKENDS.get("sync")
    if backend is None:
        from .sync import SyncBackend

        backend = _BACKENDS["sync"] = SyncBackend()
    return backend


_BACKENDS: dict[str, object] = {}


def is_socket_readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has data or an end of stream waiting: for an idle keep-alive
    connection, that means the server closed it (or broke the protocol)."""
    if sock is None or sock.fileno() < 0:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True
