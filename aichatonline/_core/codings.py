"""The content codings of a body: which ones the SDK reads, and a bound on what a
compressed read may expand to. No I/O.

The SDK asks for ``gzip, deflate`` and httpx undoes them; a body in any other coding would
reach the decoder still encoded, so it is refused (:func:`check_content_encoding`). A
compressed body is undone one network read at a time, and what one read expands to is in
memory at once: :func:`check_expansion` refuses a read that expands past
:data:`EXPANSION_LIMIT` (a decompression bomb) at the first such read.
"""

from __future__ import annotations

from .._exceptions import ProtocolError

__all__ = ["EXPANSION_LIMIT", "check_content_encoding", "check_expansion"]

#: The most one network read of a compressed body may expand to: 16 MiB. httpx undoes the
#: content coding a read at a time (at most 64 KiB through httpcore, 16 KiB through
#: aiohttp); an NDJSON answer compresses some tenfold, so a read that expands past this is
#: a decompression bomb, not an answer.
EXPANSION_LIMIT = 16 * 1024 * 1024
#: The content codings we ask for (``Accept-Encoding: gzip, deflate``) and can read.
_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "identity"})


def check_content_encoding(value: str | None) -> None:
    """Refuse a body in a coding we did not ask for (httpx would pass it on undecoded).

    Any list of gzip and deflate is fine, in any order: httpx undoes each.
    """
    if value is None:
        return
    codings = [part.strip().lower() for part in value.split(",") if part.strip()]
    if not set(codings) <= _CODINGS:
        raise ProtocolError(
            f"the body is encoded as {value!r}, which was not asked for (only gzip and "
            "deflate are)",
            retryable=False,
        )


def check_expansion(decoded: int) -> None:
    """Refuse a decoded chunk of the body larger than :data:`EXPANSION_LIMIT`.

    What one network read expands to is in memory at once (deflate reaches about a
    thousandfold: some 64 MiB for a read of 64 KiB), and is gone once the decoder has read
    it; a body that expands like that is refused at its first such read.
    """
    if decoded > EXPANSION_LIMIT:
        raise ProtocolError(
            f"one read of the compressed body expands to {decoded} bytes, past the limit of "
            f"{EXPANSION_LIMIT}: refused (a decompression bomb)",
            retryable=False,
        )
