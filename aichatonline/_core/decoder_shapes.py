"""The decoder's fast paths: a whole block of stream lines read in one go. No I/O.

Most of the cost of a short line is the parser call and the objects it builds, not the
parsing. So a block of complete lines is first read whole:

1. :func:`shape_texts`: when every line has one shape, the bytes ``before`` a text's JSON
   string (its opening quote included) and ``after`` it (from its closing quote), the
   texts are sliced out between those fixed parts with no parser at all (a text with
   escapes goes through the stdlib's JSON string scanner). Two shapes are known from the
   start (``{"code":200,"data":{"message":"..."}}`` compact or as ``json.dumps`` writes
   it); any other is learned from a line the careful path read (:func:`learn_shape`);
2. :func:`array_texts`: else the block is parsed in one parser call, each line an
   array of its own.

Each answers only when its answer is exactly what the line-by-line path would give, and
``None`` otherwise: the decoder then reads the block line by line, as always. Both return
every text, empty ones included (the decoder counts those).

Why a shape is exact
--------------------
A *plain* text is valid UTF-8 with no quote, no backslash and no control character: its
JSON string is its own bytes between two quotes. A shape is learned from one line
``before + text + after`` whose text the careful path read, and is kept only when that
path reads two probe lines, ``before + "p" + after`` and ``before + "q" + after``, as the
texts ``p`` and ``q``. Then it reads ``before + T + after`` as ``T`` for every JSON string
``T`` whose content is plain or escaped:

* JSON is read left to right, so the parser is in the same state at the end of
  ``before`` for every such line. If that last quote closed a string, what follows it
  would be read as JSON outside a string, where ``p`` is an error: it opens one. The
  string then ends at the first unescaped quote, its own closing one, and ``after`` is
  read from the same state each time. Every line is one JSON value of one fixed
  structure that differs only in that string (the stripping of blanks and of an SSE
  ``data:`` prefix sees only bytes of ``before`` and ``after``, each holding a quote).
* In that structure the string is a key or a value. A key renamed from ``p`` to ``q``
  (neither ``code``, ``data``, ``message`` nor ``content``, the names the reading looks
  up) changes nothing the reading sees, so it cannot give ``p`` for one and ``q`` for the
  other. A value other than the text read (``data.message``, or ``data.content`` when
  there is no message) either leaves the result the same for both probes, or (``code``)
  makes both lines errors. So the string is the text read, whatever its content.

The parser decides what it accepts (duplicate keys, big numbers, ``NaN``), so a shape
holds for the parser that read its probes: shapes are kept per parser.

A block of complete lines is in a shape when it starts with ``before``, ends with
``after``, and splits on ``between`` (``after``, the line break and the blank lines the
shape has between two lines, then ``before``) into texts. The bytes a plain text cannot
hold are counted: when the block holds exactly those of the separators plus the quotes
and backslashes of the texts that hold a backslash, every other text is plain and holds
no line break, so each line is ``before + text + after`` and the separators hold only
blank lines, which every path skips. Each text with a backslash must be one whole JSON
string (the scanner, strict as the parsers are, reads it to its end). Bytes that are not
UTF-8 fail the strict decoding, as they make the parsers refuse the line.

Learned shapes are kept in a small process-wide cache per parser (only a shape that
answered a block is kept, the most recent first), bounded in count and in size.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "FIXED_SHAPES",
    "PARSE_ERRORS",
    "Shape",
    "array_texts",
    "first_line",
    "forget_learned_shapes",
    "known_shapes",
    "learn_shape",
    "remember_shape",
    "shape_of",
    "shape_texts",
    "trim_blank_lines",
]

# The bytes a JSON string holds only when it is not plain: quote, backslash (an escape),
# and the control characters (not allowed raw in JSON at all).
_NOT_PLAIN = bytes(range(0x20)) + b'"\\'
# The bytes of a blank line: every path skips a line of only these.
_BLANK = b" \t\r"
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

# Learned shapes: at most this many a parser, each at most this many bytes around its
# text, and the blank lines between two lines at most this long.
_LEARNED_MAX = 8
_SHAPE_MAX_BYTES = 1024
_GAP_MAX_BYTES = 64
# The texts of the probe lines: not JSON outside a string, and no name the reading
# looks up (see the module docstring).
_PROBES = ("p", "q")


def _count_not_plain(part: bytes) -> int:
    """How many bytes of ``part`` a plain text cannot hold."""
    return len(part) - len(part.translate(None, _NOT_PLAIN))


class Shape(NamedTuple):
    """The fixed parts of a line around its text, and between two lines of a block."""

    before: bytes
    """The line up to the text's JSON string, its opening quote included."""
    after: bytes
    """The line from the text's closing quote on (a ``\\r`` before the break included)."""
    between: str
    """``after``, the line break and blank lines between two lines, then ``before``."""
    between_not_plain: int
    """How many bytes of ``between`` a plain text cannot hold."""


def shape_of(before: bytes, after: bytes, gap: bytes = b"\n") -> Shape:
    """The shape of lines ``before + text + after``, separated by ``gap``
    (the line break, and blank lines with theirs)."""
    between = after + gap + before
    return Shape(before, after, between.decode(), _count_not_plain(between))


#: The shapes known from the start: the service's lines, compact and as ``json.dumps``
#: writes them.
FIXED_SHAPES = (
    shape_of(b'{"code":200,"data":{"message":"', b'"}}'),
    shape_of(b'{"code": 200, "data": {"message": "', b'"}}'),
)
_learned: dict[Hashable, tuple[Shape, ...]] = {}


def known_shapes(parser: Hashable) -> tuple[Shape, ...]:
    """The shapes to try first with ``parser``: those learned with it, then the fixed."""
    return _learned.get(parser, ()) + FIXED_SHAPES


def remember_shape(parser: Hashable, shape: Shape) -> None:
    """Keep ``shape``, which answered a block with ``parser``, for the decoders to come."""
    # Another thread may remember one at the same time and one of the two be lost: only
    # a little speed for a little while.
    kept = _learned.get(parser, ())
    if shape not in kept and shape not in FIXED_SHAPES:
        _learned[parser] = (shape, *kept[: _LEARNED_MAX - 1])


def forget_learned_shapes() -> None:
    """Forget every learned shape (the tests start from the fixed ones)."""
    _learned.clear()


def shape_texts(block: bytes, shape: Shape) -> list[str] | None:
    """The texts of a block whose every line is in ``shape``, else ``None``.

    The texts are what lies between the shape's fixed parts: one split, and no parser
    for a plain text (it is its own bytes in the line). A text with escapes is read by
    the stdlib's JSON string scanner. Why this is exact: see the module docstring.
    """
    before, after, between, between_not_plain = shape
    if not (block.startswith(before) and block.endswith(after)):
        return None
    end = len(block) - len(after)
    if end < len(before):
        return None  # the two ends overlap: no text between them
    inner = block[len(before) : end]
    try:
        texts = inner.decode().split(between)
    except UnicodeDecodeError:
        return None
    expected = (len(texts) - 1) * between_not_plain
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
    if _count_not_plain(inner) != expected:
        return None
    return texts


def trim_blank_lines(block: bytes) -> bytes:
    """``block`` without its leading and trailing blank lines (``block`` itself if none).

    Every path skips a blank line, and counts it nowhere: a block in a shape often ends
    with one (an SSE event's), or starts with one (a break split from its line).
    """
    start = 0
    while block[start : start + 1] in (b" ", b"\t", b"\r", b"\n"):
        line_end = block.find(b"\n", start)
        if line_end < 0 or block[start:line_end].strip(_BLANK):
            break
        start = line_end + 1
    end = len(block)
    while end > start and block[end - 1 : end] in (b" ", b"\t", b"\r", b"\n"):
        line_start = max(block.rfind(b"\n", start, end) + 1, start)
        if block[line_start:end].strip(_BLANK):
            break
        end = max(line_start - 1, start)
    return block if (start, end) == (0, len(block)) else block[start:end]


def first_line(block: bytes) -> tuple[bytes, bytes | None]:
    """The first line of a block that does not start with a blank line, and the gap
    after it: the line break and the blank lines before the next line (``\\n`` for a
    block of one line; ``None`` when longer than a shape may have)."""
    line_end = block.find(b"\n")
    if line_end < 0:
        return block, b"\n"
    gap_end = line_end + 1
    while True:
        next_end = block.find(b"\n", gap_end)
        if next_end < 0 or block[gap_end:next_end].strip(_BLANK):
            break
        gap_end = next_end + 1
    gap = block[line_end:gap_end]
    return block[:line_end], (gap if len(gap) <= _GAP_MAX_BYTES else None)


def learn_shape(
    block: bytes, shapes: Sequence[Shape], read_line: Callable[[bytes], str | None] | None
) -> Shape | None:
    """A shape for ``block`` (its first line's) that ``shapes`` lack, or ``None``.

    ``block`` starts with a line that is not blank. When a known shape reads that line
    but not the blank lines after it, the shape with those blank lines. Else, given
    ``read_line`` (the careful path's reading of one line: its text, or ``None`` for
    anything else), the line's own: its text must be plain, not empty, and its JSON
    string must appear in the line exactly once; the probe lines must read as their
    texts (see the module docstring).
    """
    line, gap = first_line(block)
    if gap is None:
        return None
    for shape in shapes:
        if shape_texts(line, shape) is not None:  # the line is in a known shape
            fitted = shape_of(shape.before, shape.after, gap)
            return None if fitted in shapes else fitted
    if read_line is None:
        return None
    text = read_line(line)
    if not text:
        return None  # no text, or an empty one: nothing to find in the line
    try:
        raw = text.encode()
    except UnicodeEncodeError:
        return None  # a surrogate half: not plain
    quoted = b'"' + raw + b'"'
    at = line.find(quoted)
    if at < 0 or _count_not_plain(raw) or line.find(quoted, at + 1) >= 0:
        return None  # written with escapes, or not plain, or not only once
    before, after = line[: at + 1], line[at + len(quoted) - 1 :]
    if len(before) + len(after) > _SHAPE_MAX_BYTES:
        return None
    try:
        shape = shape_of(before, after, gap)
    except UnicodeDecodeError:
        return None  # the fixed parts must decode for the texts between them to
    for probe in _PROBES:
        if read_line(before + probe.encode() + after) != probe:
            return None
    return shape


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
