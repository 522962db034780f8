"""The decoder's path for lines of the usual shapes gives exactly what the parsers give.

Lines in the usual shapes (``{"code":200,"data":{"message":"..."}}``, compact or as
``json.dumps`` writes it) have their texts sliced out without a JSON parser (texts with
escapes go through the stdlib's string scanner). Here Hypothesis builds bodies of such
lines with texts that are plain or almost (a quote, escapes good and bad, a control
character, invalid UTF-8, an encoded surrogate, a broken shape) and every outcome
(pieces, error, counts) must equal that of the same decoder with the path switched off,
for both parsers and any split of the body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aichatonline._core import StreamDecoder
from aichatonline._core import decoder as decoder_module
from aichatonline._core.blocks import shaped_texts
from aichatonline._exceptions import ProtocolError, ServiceError

Loads = Callable[[bytes], Any]
both_parsers = pytest.mark.parametrize("loads", [json.loads, orjson.loads], ids=["json", "orjson"])

COMPACT = (b'{"code":200,"data":{"message":"', b'"}}')
SPACED = (b'{"code": 200, "data": {"message": "', b'"}}')


class ParsersOnly(StreamDecoder):
    """The decoder with its fast paths switched off (line by line): the reference."""

    def _decode_fast(self, block: bytes) -> list[str] | None:
        return None


@pytest.fixture
def shaped_blocks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The blocks the shaped-line path answered, from here on."""
    answered: list[bytes] = []

    def counting(block: bytes) -> list[str] | None:
        texts = shaped_texts(block)
        if texts is not None:
            answered.append(block)
        return texts

    monkeypatch.setattr(decoder_module, "shaped_texts", counting)
    return answered


def outcome(
    decoder: StreamDecoder, chunks: Iterable[bytes]
) -> tuple[list[str], tuple[type[BaseException], str] | None, int, int]:
    pieces: list[str] = []
    error = None
    try:
        for chunk in chunks:
            pieces += decoder.feed(chunk)
        pieces += decoder.finish()
    except (ProtocolError, ServiceError) as exc:
        error = (type(exc), str(exc))
    return pieces, error, decoder.anomalies, decoder.readable


def assert_reads_as_line_by_line(
    body: bytes, points: list[int], *, loads: Loads, strict: bool
) -> None:
    """The decoder gives what its line-by-line path gives, whole and split at ``points``."""
    for chunks in ([body], split_at(body, points)):
        expected = outcome(ParsersOnly(json_loads=loads, strict=strict), chunks)
        assert outcome(StreamDecoder(json_loads=loads, strict=strict), chunks) == expected


def split_at(body: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(body)})
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


# Texts that are plain, and bytes that make a text not plain (or not UTF-8).
plain_texts = st.text(
    st.characters(min_codepoint=0x20, exclude_characters='"\\', codec="utf-8"),
    max_size=8,
).map(str.encode)
spoilers = st.sampled_from(
    [b'"', b"\\", b'\\"', b"\\n", b"\\ud83d", b"\\ud83d\\ude00", b"\x00", b"\x1f", b"\t",
     b"\\u00e9", b"\\/", b"\\x", b"\\u12", b"\\", b'\\"}}', b"\\\\", b'\\n"', b'"\\t',
     b"\r", b"\x7f", b"\xff", b"\xc3", b"\xed\xa0\xbd", b"\xed\xa0\xbd\xed\xb8\x80",
     b"\xf0\x9f\x98", b'"}}', b'"}}\n{"code":200,"data":{"message":"', b"\n"]
)  # fmt: skip
raw_texts = st.one_of(
    plain_texts,
    st.tuples(plain_texts, spoilers, plain_texts).map(b"".join),
    st.binary(max_size=6),
)


@st.composite
def shaped_bodies(draw: st.DrawFn) -> bytes:
    """Lines in one of the usual shapes, now and then one that is not quite."""
    before, after = draw(st.sampled_from([COMPACT, SPACED]))
    lines = []
    for text in draw(st.lists(st.one_of(plain_texts, raw_texts), min_size=1, max_size=8)):
        line = before + text + after
        if draw(st.integers(0, 9)) == 0:
            line = draw(
                st.sampled_from(
                    [
                        line + b" ",
                        b" " + line,
                        line[:-1],
                        line + b"\r",
                        line.replace(b"200", b"500"),
                        line.replace(b"200", b"2000"),
                        line.replace(b"message", b"content"),
                        b"",
                        COMPACT[0] + text + SPACED[1] if before == SPACED[0] else line,
                        line + line,
                    ]
                )
            )
        lines.append(line)
    body = b"\n".join(lines)
    return body + b"\n" if draw(st.booleans()) else body


@both_parsers
@settings(max_examples=400, deadline=None)
@given(shaped_bodies(), st.lists(st.integers(0, 400), max_size=6), st.booleans())
@example(body=COMPACT[0] + b"hi" + COMPACT[1], points=[], strict=False)
@example(body=COMPACT[0] + COMPACT[1][1:], points=[], strict=False)  # ends overlap
@example(body=SPACED[0] + b'a"b' + SPACED[1], points=[], strict=True)
def test_the_plain_path_answers_as_the_parsers_do(
    loads: Loads, body: bytes, points: list[int], strict: bool
) -> None:
    assert_reads_as_line_by_line(body, points, loads=loads, strict=strict)


@both_parsers
@pytest.mark.parametrize("shape", [COMPACT, SPACED], ids=["compact", "spaced"])
def test_plain_lines_take_the_shaped_path(
    loads: Loads, shape: tuple[bytes, bytes], shaped_blocks: list[bytes]
) -> None:
    texts = ["Hel", "lo, wörld 😀", "", "e\u0301 \x7f", "tab\u2028sep", "x" * 300]
    body = b"\n".join(shape[0] + text.encode() + shape[1] for text in texts) + b"\n"
    pieces, error, anomalies, readable = outcome(StreamDecoder(json_loads=loads), [body])
    assert (pieces, error, anomalies, readable) == ([t for t in texts if t], None, 0, 6)
    assert shaped_blocks == [body[:-1]]


@both_parsers
@pytest.mark.parametrize(
    ("text", "expected"),
    [(b'say \\"hi\\"', 'say "hi"'), (b"two\\nlines", "two\nlines"), (b"caf\\u00e9", "café")],
    ids=["escaped quote", "newline", "unicode escape"],
)
def test_escaped_texts_take_the_shaped_path(
    loads: Loads, text: bytes, expected: str, shaped_blocks: list[bytes]
) -> None:
    body = COMPACT[0] + b"plain" + COMPACT[1] + b"\n" + COMPACT[0] + text + COMPACT[1] + b"\n"
    got = outcome(StreamDecoder(json_loads=loads), [body])
    assert len(shaped_blocks) == 1
    assert got == outcome(ParsersOnly(json_loads=loads), [body])
    assert got[0] == ["plain", expected]


@both_parsers
@pytest.mark.parametrize(
    "text",
    [
        b'un"escaped',
        b'an\\nescape and a "quote',
        b"tab\there",
        b"\xff",
        b"\xed\xa0\xbd",
        b"bad \\x escape",
    ],
    ids=[
        "raw quote",
        "escape and raw quote",
        "raw control",
        "not UTF-8",
        "encoded surrogate",
        "bad escape",
    ],
)
def test_other_texts_go_to_the_parsers(
    loads: Loads, text: bytes, shaped_blocks: list[bytes]
) -> None:
    body = COMPACT[0] + b"plain" + COMPACT[1] + b"\n" + COMPACT[0] + text + COMPACT[1] + b"\n"
    got = outcome(StreamDecoder(json_loads=loads), [body])
    assert shaped_blocks == []
    assert got == outcome(ParsersOnly(json_loads=loads), [body])
    assert got[0][0] == "plain"


# -- the one-parse path: no value may span two lines -----------------------------------


@st.composite
def objects_across_lines(draw: st.DrawFn) -> bytes:
    """Objects (other key orders, extra keys, arrays) written one a line, or two on a
    line, or broken across lines: the one-parse path must never read such a body as
    anything but what reading it line by line gives."""
    texts = st.text(st.sampled_from('ab,"\\[]{}:\n x'), max_size=5)
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 6))):
        obj: dict[str, Any] = {"data": {"message": draw(texts)}, "code": 200}
        if draw(st.booleans()):
            obj["k"] = draw(st.sampled_from([[1], [[1], [2]], {"x": [{}]}, "s", None]))
        if draw(st.booleans()):
            obj = {"code": obj.pop("code"), **obj}
        raw = json.dumps(obj, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
        parts.append(raw.encode())
    body = b""
    for index, part in enumerate(parts):
        if index:
            body += draw(st.sampled_from([b"\n", b"\n", b",", b" , ", b"\n,", b"],["]))
        if draw(st.integers(0, 3)) == 0:  # break this object's text across lines
            cut = draw(st.integers(1, max(1, len(part) - 1)))
            part = part[:cut] + b"\n" + part[cut:]
        body += part
    return body + b"\n" if draw(st.booleans()) else body


@both_parsers
@settings(max_examples=600, deadline=None)
@given(objects_across_lines(), st.lists(st.integers(0, 400), max_size=4), st.booleans())
@example(  # a text broken across a line, made up for by a line of two objects
    body=b'{"code":200,"data":{"message":"\\\\"}}\nx"}}\n'
    b'{"code":200,"data":{"message":"c"}},{"code":200,"data":{"message":"d"}}\n',
    points=[],
    strict=False,
)
@example(  # an object broken across a line inside an array, made up for the same way
    body=b'{"data":{"message":"x"},"k":[{}\n{}]}\n'
    b'{"data":{"message":"c"}},{"data":{"message":"d"}}\n',
    points=[],
    strict=False,
)
def test_no_value_spans_two_lines(
    loads: Loads, body: bytes, points: list[int], strict: bool
) -> None:
    assert_reads_as_line_by_line(body, points, loads=loads, strict=strict)
