"""The decoder's careful path: a block of stream lines read one line at a time. No I/O.

:class:`LineReader` holds what reading lines needs and counts (the parser, the bound on
a line, strictness, the counts of readable and unreadable lines, the pending error) and
reads a block of complete lines one by one: blank lines skipped, ``\\r`` and an SSE
``data:`` prefix tolerated, ``data.content`` read when there is no ``data.message``, an
in-band error raised in order, anything else counted as an anomaly (an error in strict
mode). It is the reference every fast path must match: :class:`~.decoder.StreamDecoder`
builds on it (its ``_decode_fast`` tries whole blocks first), and a shape is learned from
what :meth:`LineReader.read_alone` gives.
"""

from __future__ import annotations

import functools
import json
import logging
import reprlib
from collections.abc import Callable
from typing import Any

from .._exceptions import APIError, ProtocolError, ServiceError
from .decoder_shapes import PARSE_ERRORS as _PARSE_ERRORS
from .redact import redact

__all__ = ["DEFAULT_MAX_LINE_BYTES", "JSONLoads", "LineReader", "default_json_loads"]

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


class LineReader:
    """Reads blocks of complete lines one by one; the state the decoder's reading keeps.

    The options are :class:`~.decoder.StreamDecoder`'s.
    """

    __slots__ = (
        "_empty",
        "_error",
        "_loads",
        "_pieces_read",
        "_raw_decode",
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
        self._loads: JSONLoads = json_loads or default_json_loads()
        # The stdlib parses str lines with raw_decode three times faster than
        # loads(bytes) (no encoding detection, no whitespace regexes).
        self._raw_decode = _STDLIB.raw_decode if self._loads is json.loads else None
        self._error: APIError | None = None

    @property
    def readable(self) -> int:
        """Lines read as messages: text (empty or not) or an in-band error."""
        return self._pieces_read + self._empty

    def read_alone(self, line: bytes) -> str | None:
        """What reading ``line`` alone, line by line, gives: its text when it has one that
        is not empty, else ``None`` (an empty text, a blank or unreadable line, an error).
        Changes nothing here, and logs nothing."""
        reader = LineReader(strict=True, max_line_bytes=self.max_line_bytes, json_loads=self._loads)
        pieces = reader._decode_block(line)  # a piece, or an error: not both
        return pieces[0] if pieces else None

    # -- internals ---------------------------------------------------------

    def _decode_fast(self, block: bytes) -> list[str] | None:
        """A faster reading of the whole block, exactly as careful, or ``None``: none here."""
        return None

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

    def _too_long(self) -> ProtocolError:
        return ProtocolError(f"a stream line exceeds the limit of {self.max_line_bytes} bytes")

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
