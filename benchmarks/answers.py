"""The bench server's answers, precomputed: NDJSON lines of several shapes, and SSE events.

An answer of N pieces is one HTTP head, then up to ``BLOCK_LINES`` lines per HTTP chunk
(the same precomputed chunk repeated), then the last chunk: :func:`make_body` builds the
parts once, and :class:`Body` hands them out, so an answer of any length costs one block
of memory.

The chat lines come in the shapes of :data:`SHAPES`. The service writes the first;
the others are what another server (or a proxy that re-serialises) may write for the same
object: no ``code``, ``code`` after ``data``, Python's ``json.dumps`` spacing. Each is
written by ``json.dumps`` from the object, so every line is the JSON it claims to be and
carries the same 30-byte text; only the bytes around the text differ.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "BLOCK_LINES",
    "PIECE_BYTES",
    "SHAPES",
    "Body",
    "chunk",
    "make_body",
    "ndjson_line",
    "piece_text",
    "shape_example",
]

#: Every piece is exactly this many bytes of ASCII text.
PIECE_BYTES = 30
#: NDJSON lines per HTTP chunk: ~64 KiB chunks, written in one call each.
BLOCK_LINES = 1024

_COMPACT = (",", ":")
_DUMPS = (", ", ": ")  # json.dumps's default separators

#: The chat line shapes, by name: the object a line holds for a text, and its separators.
SHAPES: dict[str, tuple[Callable[[str], dict[str, Any]], tuple[str, str]]] = {
    "usual": (lambda text: {"code": 200, "data": {"message": text}}, _COMPACT),
    "no-code": (lambda text: {"data": {"message": text}}, _COMPACT),
    "code-last": (lambda text: {"data": {"message": text}, "code": 200}, _COMPACT),
    "json.dumps": (lambda text: {"code": 200, "data": {"message": text}}, _DUMPS),
    "json.dumps-no-code": (lambda text: {"data": {"message": text}}, _DUMPS),
}


def piece_text(index: int) -> str:
    """The ``index``-th piece of a block: 30 bytes, distinct within a block."""
    return f"{index:06d} the quick brown fox jumps"[:PIECE_BYTES]


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def ndjson_line(text: str, shape: str = "usual") -> bytes:
    """The chat line of ``text`` in ``shape`` (one of :data:`SHAPES`), with its ``\\n``."""
    build, separators = SHAPES[shape]
    return json.dumps(build(text), separators=separators).encode() + b"\n"


def shape_example(shape: str) -> str:
    """A line of ``shape`` with ``…`` for its text, for the tables."""
    return ndjson_line("…", shape).decode().strip().replace("\\u2026", "…")


def _sse_event(text: str | None) -> bytes:
    # The shape of a real chat.completion.chunk, so the openai SDK parses it fully.
    if text is None:
        delta, finish = {}, "stop"
    else:
        delta, finish = {"content": text}, None
    event = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(event, separators=_COMPACT).encode() + b"\n\n"


class Body:
    """One answer's bytes as a few precomputed parts: head, a block repeated, the tail.

    ``parts()`` hands them out in order; the block is the same object each
    time, so an answer of any length costs one block of memory.
    """

    __slots__ = ("block", "count", "head", "tail")

    def __init__(self, head: bytes, block: bytes, count: int, tail: bytes) -> None:
        self.head, self.block, self.count, self.tail = head, block, count, tail

    def parts(self) -> Iterator[bytes]:
        if self.count == 0:
            yield self.head + self.tail
            return
        # The head travels with the first block: one write for a small answer.
        yield self.head + self.block
        for _ in range(self.count - 1):
            yield self.block
        yield self.tail


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: %s\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"Cache-Control: no-cache\r\n"
    b"\r\n"
)


def make_body(pieces: int, kind: str, shape: str = "usual") -> Body:
    """The answer of ``pieces`` pieces: NDJSON lines of ``shape`` (``chat``) or SSE (``openai``)."""
    if kind == "chat":

        def encode(text: str) -> bytes:
            return ndjson_line(text, shape)

        content_type = b"application/x-ndjson"
    else:
        encode, content_type = _sse_event, b"text/event-stream"
    head = _STREAM_HEAD % content_type
    block = chunk(b"".join(encode(piece_text(i)) for i in range(BLOCK_LINES)))
    full, rest = divmod(pieces, BLOCK_LINES)
    last = b"".join(encode(piece_text(i)) for i in range(rest))
    if kind == "openai":
        last += _sse_event(None) + b"data: [DONE]\n\n"
    tail = (chunk(last) if last else b"") + b"0\r\n\r\n"
    return Body(head, block, full, tail)
