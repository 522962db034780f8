"""Undoing a ``Content-Encoding``: the ones we ask for (gzip, deflate), and no others. No I/O.

The SDK sends ``Accept-Encoding: gzip, deflate`` as the original's browser-like headers did.
A body in any other encoding could not be read, which is reported as such; a compressed
body cut before its end is not a whole answer.
"""

from __future__ import annotations

import zlib

from .._exceptions import ProtocolError

__all__ = ["ContentDecoder", "content_decoder"]


class ContentDecoder:
    """Undoes a ``Content-Encoding`` we asked for: gzip, or deflate (zlib-wrapped or raw)."""

    __slots__ = ("_fed", "_raw_possible", "_zlib")

    def __init__(self, coding: str) -> None:
        # Some servers send raw deflate, against RFC 9110: tried once, if the start fails.
        self._raw_possible = coding == "deflate"
        wbits = zlib.MAX_WBITS if coding == "deflate" else zlib.MAX_WBITS | 16
        self._zlib = zlib.decompressobj(wbits)
        self._fed = b""  # the first bytes, while the zlib header may still be refused

    def decompress(self, data: bytes) -> bytes:
        """The decoded bytes of the next part of the body."""
        if self._raw_possible:
            self._fed += data
        try:
            decoded = self._zlib.decompress(data)
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
        return decoded

    def flush(self) -> bytes:
        """What is left at the end of the body; an error if the compressed data was cut."""
        rest = self._zlib.flush()
        if not self._zlib.eof:
            raise ProtocolError("the compressed body ended before its end", retryable=True)
        return rest


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
