"""The streamed answer: SSE bytes of ``chat.completion.chunk`` events, and the bounded pipe.

Theory of operation
-------------------
One streamed request runs two loops joined by a :class:`Pipe`. The *pump* iterates the SDK's
``AsyncStream`` and puts each text piece into the pipe; the *response loop* takes everything
the pipe holds at once and sends it as ONE SSE event. While a client reads slower than the
service sends, ``send()`` waits (the ASGI server's write flow control), pieces pile up in the
pipe and leave as one event: pieces are coalesced, never dropped or reordered. When the pipe
holds ``limit`` characters, the pump stops pulling from the SDK, the SDK stops reading its
socket, and TCP slows the service down: a stream's memory is bounded by ``limit`` characters
(plus one piece, plus the server's write buffer), whatever the client does.

:class:`ChunkEncoder` renders the chunks of a :class:`~aichatonline._completions.ChunkSequence`
(OpenAI's order, and when the answer is committed, decided there for the clients and the
gateway alike) as SSE events. Its bytes come from the ``aichatonline.types`` classes (the
one source of truth for the shapes): a text event is the serialized ``ChatCompletionChunk``
with the text spliced in, so the per-event cost is one JSON string encoding.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

from .._completions import ChunkSequence, text_of
from ..types import ChatCompletionChunk

__all__ = ["DONE", "KEEPALIVE", "ChunkEncoder", "Pipe", "dumps"]

DONE = b"data: [DONE]\n\n"
#: An SSE comment: every SSE client skips it; load balancers see bytes on an idle stream.
KEEPALIVE = b": keep-alive\n\n"
_MARK = "\x00aichatonline-text\x00"


def dumps(obj: Any) -> bytes:
    """Compact JSON as OpenAI sends it (UTF-8, no spaces)."""
    try:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped JSON is still valid JSON
        return json.dumps(obj, separators=(",", ":")).encode()


class ChunkEncoder:
    """The SSE events of one streamed answer's chunks (a :class:`ChunkSequence`'s)."""

    __slots__ = ("_head", "_tail")

    def __init__(self, sequence: ChunkSequence) -> None:
        # A text event is the serialized chunk with the text spliced in: the bytes before
        # and after the text, from a chunk of this answer whose text is a marker.
        template = self.event(sequence.text_chunk(_MARK))
        self._head, self._tail = template.split(dumps(_MARK), 1)

    @staticmethod
    def event(chunk: ChatCompletionChunk) -> bytes:
        """One ``data: {...}`` event for ``chunk``."""
        return b"data: " + dumps(chunk.to_dict()) + b"\n\n"

    def content(self, text: str) -> bytes:
        """A text event with ``text`` (equal to ``event()`` of the same chunk)."""
        return self._head + dumps(text) + self._tail

    def events(self, chunks: list[ChatCompletionChunk]) -> bytes:
        """The events of ``chunks``, in order; text chunks by :meth:`content`."""
        out = b""
        for chunk in chunks:
            text = text_of(chunk)
            out += self.event(chunk) if text is None else self.content(text)
        return out


#: Buffered pieces are joined into one string once this many have gathered.
_COALESCE_AT = 64


class Pipe:
    """Text pieces from the pump to the response loop: bounded in characters, coalescing.

    The pump calls :meth:`put` (and awaits :meth:`room` when it returns False) and finally
    :meth:`close`; the response loop awaits :meth:`take`, which returns every buffered piece.
    One producer, one consumer, one event loop: no locks.
    """

    __slots__ = ("_limit", "_pieces", "_readable", "_size", "_writable", "closed", "error", "peak")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pieces: list[str] = []
        self._size = 0
        self._readable: anyio.Event | None = None
        self._writable: anyio.Event | None = None
        #: The pump is done (the answer ended, or ``error`` ended it).
        self.closed = False
        self.error: Exception | None = None
        #: The most characters held at once.
        self.peak = 0

    def put(self, piece: str) -> bool:
        """Buffer ``piece``; False when the pipe is full (then await :meth:`room`)."""
        pieces = self._pieces
        pieces.append(piece)
        self._size += len(piece)
        if len(pieces) >= _COALESCE_AT:
            # One string instead of many small ones while the client is slow: the buffer
            # then costs about its characters, not an object's overhead for each piece.
            self._pieces = ["".join(pieces)]
        if self._readable is not None:
            self._readable.set()
            self._readable = None
        return self._size < self._limit

    async def room(self) -> None:
        """Wait until the response loop has taken the buffered text."""
        while self._size >= self._limit:
            event = self._writable = anyio.Event()
            await event.wait()

    def close(self, error: Exception | None = None) -> None:
        """No more pieces: the answer is complete, or ``error`` ended it.

        The first close counts: the drain closes a pipe (``error`` saying so) while its pump
        still runs, and the pump's own close later changes nothing.
        """
        if self.closed:
            return
        self.closed = True
        self.error = error
        if self._readable is not None:
            self._readable.set()
            self._readable = None

    async def take(self) -> list[str]:
        """Every buffered piece, in order; waits for one unless the pipe is closed."""
        while not self._pieces and not self.closed:
            event = self._readable = anyio.Event()
            await event.wait()
        pieces = self._pieces
        if pieces:
            self.peak = max(self.peak, self._size)
            self._pieces = []
            self._size = 0
            if self._writable is not None:
                self._writable.set()
                self._writable = None
        return pieces

    @property
    def finished(self) -> bool:
        """Closed, and everything taken."""
        return self.closed and not self._pieces
