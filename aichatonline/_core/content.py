"""Undoing a ``Content-Encoding``: the ones we ask for (gzip, deflate), and no others. No I/O.

The SDK sends ``Accept-Encoding: gzip, deflate`` as the original's browser-like headers did.
A body in any other encoding could not be read, which is reported as such; a compressed
body cut before its end is not a whole answer.

Decompression is bounded, as a compressed body can expand a thousandfold (a "zip bomb"):
one call to :meth:`ContentDecoder.decompress` gives at most :data:`CHUNK_SIZE` bytes, the
rest waiting in the decompressor (``pending``) for the calls that follow, and the bytes
of one piece of the body (one read from the network) may expand to :data:`EXPANSION_LIMIT`
at most: beyond, the body is refused with a :class:`ProtocolError` instead of filling the
memory. Only gzip and deflate are undone (no brotli or zstd), both bounded this way.
"""

from __future__ import annotations

import zlib

from .._exceptions import ProtocolError

__all__ = ["CHUNK_SIZE", "EXPANSION_LIMIT", "ContentDecoder", "content_decoder"]

#: The most one call to :meth:`ContentDecoder.decompress` gives: 1 MiB.
CHUNK_SIZE = 1024 * 1024
#: The most the bytes of one read may expand to: 16 MiB (a chat answer's NDJSON compresses
#: some tenfold; a thousandfold is a bomb, not an answer).
EXPANSION_LIMIT = 16 * 1024 * 1024


class ContentDecoder:
    """Undoes a ``Content-Encoding`` we asked for: gzip, or deflate (zlib-wrapped or raw).

    Each :meth:`decompress` gives at most ``chunk_size`` bytes; while :attr:`pending` is
    true, ``decompress(b"")`` gives the next ones. The output of one input (its own call
    and the ``b""`` calls after it) is bounded by ``expansion_limit``.
    """

    __slots__ = (
        "_expanded",
        "_fed",
        "_full",
        "_input",
        "_raw_possible",
        "_zlib",
        "chunk_size",
        "expansion_limit",
    )

    def __init__(
        self,
        coding: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        expansion_limit: int = EXPANSION_LIMIT,
    ) -> None:
        if chunk_size < 1 or expansion_limit < 1:
            raise ValueError("chunk_size and expansion_limit must be positive")
        self.chunk_size = chunk_size
        self.expansion_limit = expansion_limit
        # Some servers send raw deflate, against RFC 9110: tried once, if the start fails.
        self._raw_possible = coding == "deflate"
        wbits = zlib.MAX_WBITS if coding == "deflate" else zlib.MAX_WBITS | 16
        self._zlib = zlib.decompressobj(wbits)
        self._fed = b""  # the first bytes, while the zlib header may still be refused
        self._full = False  # the last call gave a whole chunk: more may be waiting
        self._expanded = 0  # bytes given since the last input
        self._input = 0  # the size of the last input

    @property
    def pending(self) -> bool:
        """Whether decoded bytes may be waiting: ``decompress(b"")`` gives them."""
        return self._full or bool(self._zlib.unconsumed_tail)

    def decompress(self, data: bytes) -> bytes:
        """The decoded bytes of the next part of the body (``b""``: of what is pending).

        At most ``chunk_size`` bytes; a :class:`ProtocolError` if ``data`` expands beyond
        ``expansion_limit`` (counted over this call and the ``b""`` calls after it).
        """
        if data:
            self._expanded, self._input = 0, len(data)
        if self._raw_possible:
            self._fed += data
        tail = self._zlib.unconsumed_tail
        try:
            decoded = self._zlib.decompress(tail + data if tail else data, self.chunk_size)
        except zlib.error as exc:
            if self._raw_possible:
                self._raw_possible = False
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                fed, self._fed = self._fed, b""
                return self.decompress(fed)
            raise ProtocolError(f"the body could not be decompressed: {exc}") from None
        if len(self._fed) >= 2:  # zlib has seen (and taken) the header: no going back
            self._raw_possible = False
            self._fed = b""
        self._full = len(decoded) >= self.chunk_size
        self._expanded += len(decoded)
        if self._expanded > self.expansion_limit:
            raise ProtocolError(
                f"the compressed body expands beyond {self.expansion_limit} bytes from "
                f"{self._input} bytes read: refused (a decompression bomb)",
                retryable=False,
            )
        return decoded

    def flush(self) -> bytes:
        """What is left at the end of the body; an error if the compressed data was cut.

        What is still pending is decoded first (within ``expansion_limit``, as always).
        """
        parts = []
        while self.pending:
            parts.append(self.decompress(b""))
        parts.append(self._zlib.flush())
        if not self._zlib.eof:
            raise ProtocolError("the compressed body ended before its end", retryable=True)
        return b"".join(parts)


def content_decoder(encoding: str | None) -> ContentDecoder | None:
    """The decoder for a ``Content-Encoding`` we asked for (gzip, deflate), or ``None``.

    Any other encoding is a :class:`ProtocolError`: the body could not be read.
    """
    if encoding is None:
        return None
    codings = [part.strip().lower() for part in encoding.split(",") if part.strip()]
    codings = [coding for coding in codings if coding != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise ProtocolError(
            f"the body is encoded as {encoding!r}, which was not asked for (only gzip and "
            "deflate are)",
            retryable=False,
        )
    return ContentDecoder(codings[0])
