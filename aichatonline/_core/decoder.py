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
readable and unreadable lines, a held-back surrogate, and the pending error.

Speed. A block of complete lines is first read whole, by the fast paths in
``blocks.py`` (the usual line shapes sliced with no parser; else one parser call for the
whole block); each answers only when it gives exactly what reading the block line by
line gives, which is what happens otherwise.

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

import functools
import json
import logging
import re
import reprlib
from collections.abc import Callable
from typing import Any

from .._exceptions import APIError, ProtocolError, ServiceError
from .blocks import PARSE_ERRORS as _PARSE_ERRORS
from .blocks import array_texts, shaped_texts
from .redact import redact

__all__ = ["DEFAULT_MAX_LINE_BYTES", "StreamDecoder", "default_json_loads"]

logger = logging.getLogger("aichatonline")

#: The default bound on one line of the stream: 4 MiB.
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024

JSONLoads = Callable[[bytes], Any]


@functools.cache
def default_json_loads() -> JSONLoads:
    """The JSON parser the decoder uses: orjson when installed, else the stdlib.

    orjson is the optional ``speed`` extra; it is looked for at the first
    decoder, not at import, to keep ``import aichatonline`` light.
    """
    try:
        from orjson import loads
    except ImportError:
        return json.loads
    return loads


_STDLIB = json.JSONDecoder()
_BLANK = b" \t\r"
_SSE_PREFIX = b"data:"
# A JSON escape of a UTF-16 surrogate half, the only way one can reach a piece.
# (or, through json's surrogatepass decoding of bytes, the UTF-8 bytes of a surrogate).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# A surrogate pair, or a lone half.
_SURROGATES = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def _may_hold_surrogates(block: bytes) -> bool:
    # Byte searches cost a fraction of the pattern's, and most blocks hold neither. A
    # one-byte search is memchr (100x a two-byte one), so the backslash goes first.
    return (b"\\" in block and b"\\u" in block) or b"\xed" in block


class StreamDecoder:
    """Decodes the NDJSON chat stream incrementally.

    ``strict``: a line that is not JSON or carries no text (or a surrogate
    half that cannot be paired) raises :class:`ProtocolError` instead of being
    counted in ``anomalies`` and skipped (or replaced by U+FFFD). ``readable``
    counts the lines read as messages. ``max_line_bytes`` bounds one line.
    ``json_loads`` replaces the JSON parser (it takes ``bytes``; a parser other than the
    stdlib's or orjson's reads every line, none sliced without it). ``secrets``
    (the token sent) are masked wherever a line is quoted in an error or a log.
    """

    __slots__ = (
        "_empty",
        "_error",
        "_finished",
        "_fragments",
        "_high",
        "_loads",
        "_pieces_read",
        "_raw_decode",
        "_shaped",
        "_size",
        "anomalies",
        "max_line_bytes",
        "secrets",
        "strict",
    )

    def __init__(
        self,
        *,
        strict: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        json_loads: JSONLoads | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.strict = strict
        self.max_line_bytes = max_line_bytes
        self.secrets = secrets
        #: Lines skipped because they were not JSON or carried no text, and surrogate
        #: halves that could not be paired (each replaced by U+FFFD).
        self.anomalies = 0
        self._pieces_read = 0  # lines read as a piece of text, or an in-band error
        self._empty = 0  # lines with an empty text: readable, but no piece
        self._high = ""  # a high surrogate held back from the end of the last piece
        self._loads: JSONLoads = json_loads or default_json_loads()
        # The stdlib parses str lines with raw_decode three times faster than
        # loads(bytes) (no encoding detection, no whitespace regexes).
        self._raw_decode = _STDLIB.raw_decode if self._loads is json.loads else None
        # Lines are sliced without a parser only when no other parser was asked for: one
        # given for its own sake (hooks, logging) sees every line.
        self._shaped = self._loads is json.loads or self._loads is default_json_loads()
        self._fragments: list[bytes] = []
        self._size = 0
        self._error: APIError | None = None
        self._finished = False

    @property
    def readable(self) -> int:
        """Lines read as messages: text (empty or not) or an in-band error."""
        return self._pieces_read + self._empty

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

    def _too_long(self) -> ProtocolError:
        return ProtocolError(f"a stream line exceeds the limit of {self.max_line_bytes} bytes")

    def _decode_block(self, block: bytes) -> list[str]:
        """The pieces of complete lines (``block`` holds them, joined by ``\\n``)."""
        # The fast paths first: a block of well-formed lines (nearly every block) pays for
        # no other search of its bytes.
        pieces = self._decode_fast(block)
        if pieces is not None:
            return pieces
        if b"\n\n" in block or b"\n\r\n" in block or block[:1] in (b"\n", b"\r"):
            # Blank lines (keep-alive padding): dropped here in one pass, where each would
            # cost a failed parse and the slow path (a body of them took a minute).
            block = b"\n".join([line for line in block.split(b"\n") if line.strip(b"\r")])
            if not block:
                return []
            pieces = self._decode_fast(block)
            if pieces is not None:
                return pieces
        if len(block) > self.max_line_bytes:
            return self._decode_long_block(block)
        if self._raw_decode is not None:
            try:
                text = block.decode()
            except UnicodeDecodeError:
                pass  # some line is not UTF-8: the bytes loop finds it
            else:
                return self._decode_text_lines(text.split("\n"))
        return self._decode_byte_lines(block.split(b"\n"))

    def _decode_fast(self, block: bytes) -> list[str] | None:
        """The pieces of a block of well-formed lines (nearly every block), else ``None``."""
        if len(block) > self.max_line_bytes:
            return None  # it may hold a line over the bound: the careful path decides
        texts = shaped_texts(block) if self._shaped else None
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

    def _decode_long_block(self, block: bytes) -> list[str]:
        # Rare: only a block longer than the bound can hold a line that is.
        lines = block.split(b"\n")
        for index, line in enumerate(lines):
            if len(line) > self.max_line_bytes:
                pieces = self._decode_byte_lines(lines[:index])
                if self._error is None:
                    self._error = self._too_long()
                return pieces
        return self._decode_byte_lines(lines)

    # The two hot loops below do the same: one parse and a few dict lookups
    # for a well-formed line; anything unusual takes the slow path, which
    # gives the same answer for every line a fast path accepts. No line here
    # is longer than the bound (``_decode_block`` saw to that).

    def _decode_byte_lines(self, lines: list[bytes]) -> list[str]:
        loads = self._loads
        pieces: list[str] = []
        append = pieces.append
        for line in lines:
            try:
                obj = loads(line)
            except _PARSE_ERRORS:
                obj = None
            if type(obj) is dict and obj.get("code", 200) == 200:
                data = obj.get("data")
                if type(data) is dict:
                    text = data.get("message")
                    if type(text) is str:
                        if text:
                            append(text)
                        else:
                            self._empty += 1
                        continue
            if not self._slow_path(line, pieces):
                break
        self._pieces_read += len(pieces)
        return pieces

    def _decode_text_lines(self, lines: list[str]) -> list[str]:
        raw_decode = self._raw_decode
        assert raw_decode is not None
        pieces: list[str] = []
        append = pieces.append
        for line in lines:
            try:
                obj, end = raw_decode(line)
            except _PARSE_ERRORS:
                obj, end = None, -1
            if end == len(line) and type(obj) is dict and obj.get("code", 200) == 200:
                data = obj.get("data")
                if type(data) is dict:
                    text = data.get("message")
                    if type(text) is str:
                        if text:
                            append(text)
                        else:
                            self._empty += 1
                        continue
            if not self._slow_path(line.encode(), pieces):
                break
        self._pieces_read += len(pieces)
        return pieces

    def _slow_path(self, line: bytes, pieces: list[str]) -> bool:
        """Decode an unusual line into ``pieces``; False (error pending) to stop."""
        try:
            text = self._decode_unusual(line)
        except ServiceError as exc:
            self._pieces_read += 1  # a message, if not a welcome one
            self._error = exc
            return False
        except ProtocolError as exc:
            self._error = exc
            return False
        if text:
            pieces.append(text)  # counted with the block's pieces
        elif text is not None:
            self._empty += 1
        return True

    def _decode_unusual(self, line: bytes) -> str | None:
        """Blank lines, ``\\r``, the SSE prefix, ``data.content``, errors and anomalies."""
        payload = line.strip(_BLANK)
        if payload.startswith(_SSE_PREFIX):
            payload = payload[len(_SSE_PREFIX) :].lstrip(b" ")
        if not payload:
            return None
        try:
            obj = self._loads(payload)
        except _PARSE_ERRORS:
            try:  # orjson refuses a lone surrogate escape, which the stdlib reads
                obj = json.loads(payload) if self._loads is not json.loads else None
            except _PARSE_ERRORS:
                obj = None
            if obj is None:
                self._anomaly(line, "not JSON")
                return None
        if not isinstance(obj, dict):
            self._anomaly(line, "not a JSON object")
            return None
        code = obj.get("code")
        data = obj.get("data")
        if code is not None and code != 200 and code != "200":
            raise _service_error(code, obj, data, self.secrets)
        if isinstance(data, dict):
            text = data.get("message")
            if text is None:
                text = data.get("content")
            if isinstance(text, str):
                return text
        self._anomaly(line, "no data.message text")
        return None

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

    def _anomaly(self, line: bytes, why: str) -> None:
        if self.strict:
            raise ProtocolError(f"unreadable stream line ({why}): {self._preview(line)}")
        self.anomalies += 1
        logger.debug("skipping a stream line (%s): %s", why, self._preview(line))

    def _preview(self, line: bytes, limit: int = 120) -> str:
        text = line[:limit].decode("utf-8", "replace")
        return redact(repr(text), *self.secrets) + ("…" if len(line) > limit else "")


def _service_error(
    code: object, obj: dict[str, Any], data: object, secrets: tuple[str, ...]
) -> ServiceError:
    message = obj.get("message") or obj.get("msg")
    if message is None and isinstance(data, dict):
        message = data.get("message")
    # reprlib (depth- and size-bounded), not str()/repr(): orjson accepts values
    # nested 1024 deep, and their full repr raised RecursionError out of the
    # decoder instead of a ServiceError.
    if message is not None and not isinstance(message, str):
        message = reprlib.repr(message)
    text = None if message is None else redact(message[:500], *secrets)
    return ServiceError(
        f"the service reported an error (code {reprlib.repr(code)}): {text or 'no message'}",
        code=code,
        service_message=text,
    )
