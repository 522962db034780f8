"""The decoder's fast paths: a whole block of stream lines read in one go. No I/O.

Most of the cost of a short line is the parser call and the objects it builds, not the
parsing. So a block of complete lines is first read whole:

1. :func:`shaped_texts`: when every line has one of the usual shapes
   (``{"code":200,"data":{"message":"..."}}``, compact or as ``json.dumps`` writes it),
   the texts are sliced out between the shape's fixed parts, with no parser at all (a
   text with escapes goes through the stdlib's JSON string scanner);
2. :func:`array_texts`: else the block is parsed in one parser call, each line an
   array of its own.

Each answers only when its answer is exactly what the line-by-line path would give, and
``None`` otherwise: the decoder then reads the block line by line, as always. Both return
every text, empty ones included (the decoder counts those).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable
from typing import Any

__all__ = ["PARSE_ERRORS", "array_texts", "shaped_texts"]

# The shapes a line is written in, compact and Python's ``json.dumps`` default: the bytes
# before the text, between two texts (across the line break), and after the last text.
_SHAPES = tuple(
    (before, after + b"\n" + before, after)
    for before, after in (
        (b'{"code":200,"data":{"message":"', b'"}}'),
        (b'{"code": 200, "data": {"message": "', b'"}}'),
    )
)
# The bytes a JSON string holds only when it is not plain: quote, backslash (an escape),
# and the control characters (not allowed raw in JSON at all).
_NOT_PLAIN = bytes(range(0x20)) + b'"\\'
# The stdlib's reader of one JSON string (its C version when built), the one json.loads
# uses; the type stubs leave it out.
_scan_string: Callable[[str, int, bool], tuple[str, int]] = vars(json.decoder)["scanstring"]
# Texts with escapes are read one by one while they are at most half the texts; past
# that, one parse of the whole block is cheaper.
_ESCAPED_SHARE = 2

# Each object's "code" (None when it has none), looked up in C for a whole block.
_CODE = itertools.repeat("code")
_OK_CODES = frozenset({200, None})
#: What a JSON parser raises for input it refuses (json raises RecursionError, not
#: ValueError, for deeply nested input).
PARSE_ERRORS = (ValueError, RecursionError)


@functools.cache
def _not_plain(part: bytes) -> int:
    """How many bytes of ``part`` a plain text cannot hold."""
    return len(part) - len(part.translate(None, _NOT_PLAIN))


def shaped_texts(block: bytes) -> list[str] | None:
    """The texts of a block whose every line is one of the usual shapes around a text.

    The texts are what lies between the shape's fixed parts: one split, and no parser
    for a plain text (no quote, escape or control character: it is its own bytes in the
    line). A text with escapes is read by the stdlib's JSON string scanner.

    Why it is exact: when the split yields one text a line, the block is the shape's
    parts around those texts. The bytes a plain text cannot hold are counted: a block
    whose count is exactly the parts' plus the escaped texts' holds no other, so every
    text without a backslash is plain, and each escaped text is a whole JSON string (the
    scanner reads it to its end). Bytes that are not UTF-8 fail the strict decoding, as
    they make the parsers refuse the line.
    """
    for shape in _SHAPES:
        before, between, after = shape
        if block.startswith(before) and block.endswith(after):
            break
    else:
        return None
    end = len(block) - len(after)
    if end < len(before):
        return None  # the two ends overlap: no text between them
    inner = block[len(before) : end]
    try:
        texts = inner.decode().split(between.decode())
    except UnicodeDecodeError:
        return None
    # bytes.count() of one byte is a byte-by-byte loop; replace() finds with memchr,
    # three times faster even with the copy.
    breaks = len(block) - len(block.replace(b"\n", b""))
    if len(texts) != breaks + 1:
        return None
    expected = breaks * _not_plain(between)
    if b"\\" in inner:
        escaped = [index for index, text in enumerate(texts) if "\\" in text]
        if len(escaped) * _ESCAPED_SHARE > len(texts):
            return None  # escapes in many lines: one parse of the block costs less
        for index in escaped:
            text = texts[index]
            quoted = '"' + text + '"'
            try:
                value, stop = _scan_string(quoted, 1, True)
            except ValueError:
                return None
            if stop != len(quoted):
                return None  # a quote ends the string before the line does
            texts[index] = value
            expected += text.count("\\") + text.count('"')
    if len(inner) - len(inner.translate(None, _NOT_PLAIN)) != expected:
        return None
    return texts


def array_texts(block: bytes, loads: Callable[[Any], Any], *, text: bool) -> list[str] | None:
    """The texts of a block of well-formed lines, parsed as one JSON value.

    One parser call for the whole block instead of one a line. It answers only when
    every line is an object with a text and no error code, one object a line. ``text``:
    ``loads`` takes ``str`` (the stdlib's fast input) rather than ``bytes``.

    Each line becomes an array of its own, ``[[line 1],\n[line 2]]``, and must hold
    exactly one value. Why no value can span two lines: a line break stays raw, which no
    JSON string may hold; and as the block holds no ``[``, the ``]`` put at a break can
    only close that line's own array (inside an object it is an error). So each array
    holds one line, whole.
    """
    if b"[" in block:
        return None
    if text:
        try:
            decoded = block.decode()
        except UnicodeDecodeError:
            return None
        array: str | bytes = "[[" + decoded.replace("\n", "],\n[") + "]]"
    else:
        array = b"[[" + block.replace(b"\n", b"],\n[") + b"]]"
    try:
        objects = [obj for (obj,) in loads(array)]  # ValueError: a line of two values
        texts = [obj["data"]["message"] for obj in objects]
        "".join(texts)  # refuses a text that is not a string (TypeError), in C
    except (*PARSE_ERRORS, KeyError, TypeError):
        return None
    if not set(map(dict.get, objects, _CODE)) <= _OK_CODES:
        return None  # an error code somewhere: the careful path raises it in order
    return texts
