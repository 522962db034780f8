"""The incremental decoder for the chat stream: bytes in, text pieces out. No I/O.

Theory of operation
-------------------
The body is newline-delimited JSON, one ``{"code": 200, "data": {"message": ...}}``
object a line. ``feed(data)`` takes whatever bytes the network gave, in any
split, and returns the text pieces of every line it completed; ``finish()``
takes the final line that had no ``\\n`` and closes the decoder.

Lines are found in *bytes*, before any text decoding. Byte 0x0A never occurs
inside a multi-byte UTF-8 sequence, so a character split across two reads is
simply part of an incomplete line, and each complete line is valid (or
invalid) UTF-8 on its own. That makes the output independent of how the bytes
were split, which is the decoder's one promise.

The incomplete last line is kept as a list of fragments plus their total size,
joined once when its ``\\n`` arrives: every byte is copied a bounded number of
times, so the cost is linear in the input however it is split (no
``buffer += chunk`` rescans). Memory is bounded too: a line longer than
``max_line_bytes`` (complete or not) is a :class:`ProtocolError`, so a hostile
server cannot make the decoder buffer without limit. Worst case held: one
line's worth of fragments plus the chunk being fed.

Errors keep the order of the stream. When a line is an in-band error
(``code`` present and not 200), or a malformed line in strict mode, the pieces
decoded before it in the same ``feed`` are returned first, and the error is
raised by the next ``feed`` or ``finish`` call. Nothing after the error is
decoded. The state is all in this one object: the fragments, the counts of
readable and unreadable lines, a held-back surrogate, and the pending error. The careful
reading of lines, one by one, is its base class (``decoder_lines.py``).

Speed. A block of complete lines is first read whole, by the fast paths in
``decoder_shapes.py``: lines of one shape sliced with no parser (the service's usual shapes are
known; any other consistent shape, an SSE ``data:`` prefix or ``\\r\\n`` line ends
included, is learned from a line this decoder read carefully, and kept for the decoders
to come); else one parser call for the whole block. Each answers only when it gives
exactly what reading the block line by line gives, which is what happens otherwise. A
block no known shape fits learns from its first line and is tried again, so a stream's
first block is fast too; learning stops after a few dozen careful reads that taught
nothing, so a stream of no consistent shape costs little more than before.

Surrogates. A service that cuts its text by UTF-16 units can split an astral
character (an emoji) into two pieces, each a valid JSON string holding one
half of a surrogate pair as a ``\\uXXXX`` escape. The stdlib parser yields the
lone halves; orjson refuses such a line (a retry with the stdlib parser reads
it). Either way the halves are paired again here: a piece ending in a high
surrogate is held back until the next piece, and a half that can never be
paired becomes U+FFFD (a :class:`ProtocolError` in strict mode), so the text
is the same with either parser and always encodes as UTF-8. Only a block
whose bytes contain such an escape (one C-level search) pays for the check.
"""

from __future__ import annotations

import json
import re

from .._exceptions import APIError, ProtocolError
from .decoder_lines import DEFAULT_MAX_LINE_BYTES, JSONLoads, LineReader, default_json_loads
from .decoder_shapes import (
    Shape,
    array_texts,
    known_shapes,
    learn_shape,
    remember_shape,
    shape_texts,
    trim_blank_lines,
)

__all__ = ["DEFAULT_MAX_LINE_BYTES", "StreamDecoder", "default_json_loads"]

# A JSON escape of a UTF-16 surrogate half, the only way one can reach a piece.
# (or, through json's surrogatepass decoding of bytes, the UTF-8 bytes of a surrogate).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# A surrogate pair, or a lone half.
_SURROGATES = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
# How many careful reads of a line a decoder may spend on learning shapes, and how many
# shapes it keeps (the one that answered last first).
_LEARNING_READS = 48
_SHAPES_KEPT = 10


def _may_hold_surrogates(block: bytes) -> bool:
    # Byte searches cost a fraction of the pattern's, and most blocks hold neither. A
    # one-byte search is memchr (100x a two-byte one), so the backslash goes first.
    return (b"\\" in block and b"\\u" in block) or b"\xed" in block


class StreamDecoder(LineReader):
    """Decodes the NDJSON chat stream incrementally.

    ``strict``: a line that is not JSON or carries no text (or a surrogate
    half that cannot be paired) raises :class:`ProtocolError` instead of being
    counted in ``anomalies`` and skipped (or replaced by U+FFFD). ``readable``
    counts the lines read as messages. ``max_line_bytes`` bounds one line.
    ``json_loads`` replaces the JSON parser (it takes ``bytes``; a parser other than the
    stdlib's or orjson's reads every line, none sliced without it). ``secrets``
    (the token sent) are masked wherever a line is quoted in an error or a log.
    """

    __slots__ = ("_finished", "_fragments", "_high", "_learning", "_shapes", "_size")

    def __init__(
        self,
        *,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        json_loads: JSONLoads | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            strict=strict, max_line_bytes=max_line_bytes, json_loads=json_loads, secrets=secrets
        )
        self._high = ""  # a high surrogate held back from the end of the last piece
        # Lines are sliced without a parser only when no other parser was asked for: one
        # given for its own sake (hooks, logging) sees every line.
        shaped = self._loads is json.loads or self._loads is default_json_loads()
        self._shapes: tuple[Shape, ...] = known_shapes(self._loads) if shaped else ()
        self._learning = _LEARNING_READS if shaped else 0
        self._fragments: list[bytes] = []
        self._size = 0
        self._finished = False

    def feed(self, data: bytes) -> list[str]:
        """Take the next bytes of the body; return the pieces of the lines they complete."""
        self._check_open()
        end = data.rfind(b"\n")
        if end < 0:
            self._keep(data)
            if self._error is not None:
                raise self._error
            return []
        if self._fragments:
            self._fragments.append(data[:end])
            block = b"".join(self._fragments)
            self._fragments = []
            self._size = 0
        else:
            block = data[:end]
        pieces = self._decode_block(block)
        if end + 1 < len(data) and self._error is None:
            self._keep(data[end + 1 :])
        if self._high or (_may_hold_surrogates(block) and _SURROGATE_ESCAPE.search(block)):
            return self._pair_surrogates(pieces)
        return pieces

    def finish(self) -> list[str]:
        """End of the body: decode a last line that had no ``\\n`` and close the decoder.

        An error that comes after the last pieces (an in-band error line, or in strict mode
        an unreadable one) is raised at once when there are no pieces to give; otherwise
        the pieces are returned and the error waits in :attr:`error` (a further call to
        ``finish()`` raises it), so that text and error keep the order of the stream.
        """
        self._check_open()
        self._finished = True
        pieces: list[str] = []
        if self._fragments:
            line = b"".join(self._fragments)
            self._fragments = []
            self._size = 0
            pieces = self._decode_block(line)
            if self._error is None and (
                self._high or (_may_hold_surrogates(line) and _SURROGATE_ESCAPE.search(line))
            ):
                pieces = self._pair_surrogates(pieces)
        if self._high and self._error is None:  # the stream ended inside a surrogate pair
            self._high = ""
            try:
                pieces.append(self._lone_surrogate())
            except ProtocolError as exc:
                self._error = exc
        if self._error is not None and not pieces:
            raise self._error
        return pieces

    @property
    def error(self) -> APIError | None:
        """An error the stream held after the pieces already returned, if any."""
        return self._error

    # -- internals ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("the decoder is finished")

    def _keep(self, fragment: bytes) -> None:
        self._size += len(fragment)
        if self._size > self.max_line_bytes:
            self._fragments = []
            self._error = self._too_long()
        else:
            self._fragments.append(fragment)

    def _decode_fast(self, block: bytes) -> list[str] | None:
        """The pieces of a block of well-formed lines (nearly every block), else ``None``."""
        if len(block) > self.max_line_bytes:
            return None  # it may hold a line over the bound: the careful path decides
        texts = self._shaped_texts(block) if self._shapes else None
        if texts is None:
            texts = array_texts(block, self._loads, text=self._raw_decode is not None)
            if texts is None:
                return None
        if not all(texts):
            empty = texts.count("")
            texts = [text for text in texts if text]
            self._empty += empty
        self._pieces_read += len(texts)
        return texts

    def _shaped_texts(self, block: bytes, trimmed: bool = False) -> list[str] | None:
        """The texts of a block in a known shape, or in one learned from it now."""
        shapes = self._shapes
        for shape in shapes:
            texts = shape_texts(block, shape)
            if texts is not None:
                if shape is not shapes[0]:
                    self._shapes = (shape, *[other for other in shapes if other is not shape])
                return texts
        if not trimmed:
            bare = trim_blank_lines(block)
            if bare is not block:
                return self._shaped_texts(bare, trimmed=True) if bare else []
        learned = learn_shape(block, shapes, self._read_to_learn if self._learning > 0 else None)
        if learned is None:
            return None
        texts = shape_texts(block, learned)
        if texts is not None:  # kept only when it served
            self._shapes = (learned, *shapes[: _SHAPES_KEPT - 1])
            remember_shape(self._loads, learned)
        return texts

    def _read_to_learn(self, line: bytes) -> str | None:
        self._learning -= 1  # each careful read spent on learning
        return self.read_alone(line)

    def _pair_surrogates(self, pieces: list[str]) -> list[str]:
        """Re-pair surrogate halves within and across pieces; hold a trailing high half."""
        paired: list[str] = []
        try:
            for piece in pieces:
                if self._high:
                    piece = self._high + piece
                    self._high = ""
                if _SURROGATES.search(piece) is not None:
                    if "\ud800" <= piece[-1] <= "\udbff":  # its pair may start the next piece
                        piece, self._high = piece[:-1], piece[-1]
                    piece = _SURROGATES.sub(self._surrogate_match, piece)
                if piece:
                    paired.append(piece)
        except ProtocolError as exc:  # strict: raised by the next call, after these pieces
            self._error = exc
        return paired

    def _surrogate_match(self, match: re.Match[str]) -> str:
        pair = match.group()
        if len(pair) == 2:
            return pair.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        return self._lone_surrogate()

    def _lone_surrogate(self) -> str:
        if self.strict:
            raise ProtocolError("the stream holds half of a UTF-16 surrogate pair, never paired")
        self.anomalies += 1
        return _REPLACEMENT
