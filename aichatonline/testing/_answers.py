"""What the local server says: the answer to a prompt, its pieces and their NDJSON lines.

The answer is a pure function of the prompt (``reply_for``), cut into pieces of a fixed size
(``pieces_for``), so a test knows the exact text a client must deliver. Each piece travels as
one compact NDJSON line ``{"code":200,"data":{"message":PIECE}}`` with real UTF-8 (no ``\\u``
escapes); errors, in a response body or in-band in a stream, are ``{"code": C, "message": M}``.
"""

from __future__ import annotations

import functools
import json

__all__ = ["cut", "encoded_lines", "error_object", "pieces_for", "reply_for"]

_ROLE_PREFIXES = ("Assistant:", "System:", "User:", "Developer:")


def reply_for(prompt: str) -> str:
    """Return the server's full answer to ``prompt``.

    The last user message is taken from a multi-message prompt (lines starting with
    ``User: ``, as the SDK formats them, up to the next role line); a prompt without such a
    line is the user message as a whole. The answer echoes it and carries non-ASCII
    characters on purpose, so that clients meet multi-byte UTF-8 split across reads.
    """
    lines = prompt.split("\n")
    last_user = None
    for index, line in enumerate(lines):
        if line.startswith("User: "):
            last_user = index
    if last_user is None:
        last = prompt
    else:
        collected = [lines[last_user][len("User: ") :]]
        for line in lines[last_user + 1 :]:
            if line.startswith(_ROLE_PREFIXES):
                break
            collected.append(line)
        last = "\n".join(collected)
    return f"You said: {last}. This is the local AiChatOnline server — ünïcödé ✓ 🚀."


def cut(text: str, pieces: int | None, piece_size: int) -> list[str]:
    """Cut the endless repetition of ``text`` into ``pieces`` pieces (see ``pieces_for``)."""
    if piece_size < 1:
        raise ValueError(f"piece_size must be at least 1, got {piece_size}")
    if pieces is None:
        return [text[i : i + piece_size] for i in range(0, len(text), piece_size)]
    if pieces < 0:
        raise ValueError(f"pieces must be None or >= 0, got {pieces}")
    total = pieces * piece_size
    # Enough whole repetitions of the text to cover ``total`` characters, then cut.
    cycle = text * (total // len(text) + 1)
    return [cycle[i * piece_size : (i + 1) * piece_size] for i in range(pieces)]


def pieces_for(prompt: str, pieces: int | None = None, piece_size: int = 8) -> list[str]:
    """Return the text pieces the server streams for ``prompt``, one NDJSON line each.

    The infinite repetition of ``reply_for(prompt)`` is cut into consecutive
    ``piece_size``-character pieces and the first ``pieces`` are taken; with ``pieces=None``
    just enough to cover the reply exactly once (the last piece may be shorter).
    """
    return cut(reply_for(prompt), pieces, piece_size)


@functools.lru_cache(maxsize=256)
def encoded_lines(text: str, pieces: int | None, piece_size: int) -> tuple[bytes, ...]:
    """The NDJSON lines (each ending in ``\\n``) that stream ``text`` in these pieces."""
    # Cached because benchmarks send the same prompt over and over.
    return tuple(
        b'{"code":200,"data":{"message":' + json.dumps(piece, ensure_ascii=False).encode() + b"}}\n"
        for piece in cut(text, pieces, piece_size)
    )


def error_object(code: int, message: str) -> bytes:
    """The service's error object ``{"code": code, "message": message}`` as JSON bytes."""
    return json.dumps({"code": code, "message": message}, ensure_ascii=False).encode()
