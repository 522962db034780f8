"""What a stream holds in the gateway, and giving memory back once a worker's streams end.

A slow client's stream holds a bounded amount, whatever the answer's length: the SDK
stream keeps the length and a hash of the text, not the text (``keep_text=False``); the
gateway's buffer holds ``buffer_chars`` characters, joined into one string; a client
connection's write buffer stops the stream at ``WRITE_BUFFER_HIGH`` bytes
(``_connections.py``); the upstream socket's receive buffer is small
(:data:`UPSTREAM_SOCKET_OPTIONS`), so the event loop never reads far ahead of what the
stream can pass on; and the SDK hands out the body a slice at a time.

At start, :func:`steady_allocator` has glibc serve every block of 64 KiB or more from its
own mapping, given back when freed. asyncio reads a socket into a new 256 KiB buffer, then
shrinks it; with glibc's default (a threshold that rises to the largest block freed) those
buffers come from the heap, whose holes then grow a long-running process's RSS by some 10 %
per 20,000 streams, never given back (the soak measures it).

When the last stream of a worker ends, :class:`Trimmer` collects the garbage in reference
cycles (an ended stream's errors, tracebacks and their frames hold its buffers until
CPython's rare full collection) and asks the C library to give the freed memory back to the
system (glibc's ``malloc_trim``; skipped elsewhere), at most once every few seconds and in a
worker thread: the process's RSS would otherwise stay near its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import socket
import time
from collections.abc import Callable

import anyio
import anyio.abc

__all__ = [
    "MMAP_THRESHOLD",
    "UPSTREAM_SOCKET_OPTIONS",
    "Trimmer",
    "malloc_trim",
    "release_memory",
    "steady_allocator",
]

#: The SDK client's sockets to the service: a receive buffer of 32 KiB. A larger one lets
#: the event loop read ahead of a slow client (several hundred KiB a stream); a window of
#: 16 KiB stalls on the sender's wait for delayed acknowledgements, which held a stream to
#: about 125 KB/s (32 KiB carries several MB/s).
UPSTREAM_SOCKET_OPTIONS = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)]
#: The least seconds between two trims.
TRIM_EVERY = 5.0
#: glibc serves blocks from this size up from their own mapping (``steady_allocator``).
MMAP_THRESHOLD = 64 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        library.mallopt  # noqa: B018 - glibc's, not musl's or macOS's
    except (OSError, AttributeError):
        return None
    return library


def steady_allocator() -> bool:
    """Large blocks from their own mappings, given back when freed (glibc only); whether
    it was done."""
    glibc = _glibc()
    return glibc is not None and bool(glibc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


@functools.cache
def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)`` as a callable, or ``None`` where there is none."""
    glibc = _glibc()
    if glibc is None:
        return None
    try:
        trim = glibc.malloc_trim
    except AttributeError:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return functools.partial(trim, 0)


def release_memory() -> None:
    """Collect the garbage in cycles, then give the freed memory back (where glibc can)."""
    gc.collect()
    trim = malloc_trim()
    if trim is not None:
        trim()


class Trimmer:
    """Trims the allocator after a worker's streams ended (at most every ``TRIM_EVERY`` s)."""

    def __init__(self) -> None:
        self._last = 0.0
        self.trims = 0

    def streams_ended(self, group: anyio.abc.TaskGroup) -> None:
        """The worker has no stream left: release memory soon, in a thread (``group`` runs
        it), unless it did a moment ago."""
        now = time.monotonic()
        if now - self._last < TRIM_EVERY:
            return
        self._last = now
        self.trims += 1
        group.start_soon(anyio.to_thread.run_sync, release_memory)
