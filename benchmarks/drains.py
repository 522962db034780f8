"""Draining a stream: the same loop for every stack, sync and async.

Each counts the pieces and adds up their lengths (what the worker checks against the
answer), and closes the stream whatever happens. The variants time the first piece
(from a given start) or sample the process's RSS every so many pieces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "adrain",
    "adrain_sampled",
    "afirst_then_drain",
    "drain",
    "drain_sampled",
    "first_then_drain",
    "rss",
]

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """The current resident set size in bytes (from ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def drain(stream: Any) -> tuple[int, int]:
    """All pieces of a sync stream: (count, characters). Closes the stream."""
    count = chars = 0
    try:
        for piece in stream:
            count += 1
            chars += len(piece)
    finally:
        stream.close()
    return count, chars


def first_then_drain(stream: Any, start: float) -> tuple[float, int, int]:
    """Seconds from ``start`` to the first piece, then all the rest: (first, count, chars)."""
    try:
        pieces = iter(stream)
        piece = next(pieces)
        first = time.perf_counter() - start
        count, chars = 1, len(piece)
        for piece in pieces:
            count += 1
            chars += len(piece)
    finally:
        stream.close()
    return first, count, chars


def drain_sampled(stream: Any, every: int) -> tuple[int, int, list[int]]:
    """All pieces, sampling RSS every ``every`` pieces: (count, chars, samples)."""
    count = chars = 0
    mark = every
    samples = []
    try:
        for piece in stream:
            count += 1
            chars += len(piece)
            if count == mark:
                samples.append(rss())
                mark += every
    finally:
        stream.close()
    return count, chars, samples


async def adrain(stream: Any) -> tuple[int, int]:
    count = chars = 0
    try:
        async for piece in stream:
            count += 1
            chars += len(piece)
    finally:
        await stream.aclose()
    return count, chars


async def afirst_then_drain(
    stream: Any, start: float, on_first: Callable[[], None] | None = None
) -> tuple[float, int, int]:
    try:
        pieces = stream.__aiter__()
        piece = await pieces.__anext__()
        first = time.perf_counter() - start
        if on_first is not None:
            on_first()
        count, chars = 1, len(piece)
        async for piece in pieces:
            count += 1
            chars += len(piece)
    finally:
        await stream.aclose()
    return first, count, chars


async def adrain_sampled(stream: Any, every: int) -> tuple[int, int, list[int]]:
    count = chars = 0
    mark = every
    samples = []
    try:
        async for piece in stream:
            count += 1
            chars += len(piece)
            if count == mark:
                samples.append(rss())
                mark += every
    finally:
        await stream.aclose()
    return count, chars, samples
