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
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from aichatonline._core import StreamDecoder
from aichatonline._core import decoder as decoder_module
from aichatonline._core.decoder_shapes import Shape, forget_learned_shapes, shape_texts
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

    def counting(block: bytes, shape: Shape) -> list[str] | None:
        texts = shape_texts(block, shape)
        if texts is not None:
            answered.append(block)
        return texts

    monkeypatch.setattr(decoder_module, "shape_texts", counting)
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


# -- learned shapes: any consistent line shape, learned from a line read carefully -------

SLOT = b"\x00SLOT\x00"  # where the text goes in a template, replaced before use
OK_CODES = [b"200", b'"200"', b"null", b"200.0"]
NOT_OK_CODES = [b"500", b'"x"', b"true", b"2000"]
EXTRA_KEYS = [b"id", b"message", b"content", b"msg", b"p", b"q", b"mess\\u0061ge", b""]
EXTRA_VALUES = [
    b"1", b'"x"', b'"a\\"b"', b'[1,{"message":"m"}]', b'{"message":"no"}', b"null",
    b'"\\u0064ata"', b"true", b"-1.5e3", b'"message"', b"{}", b'"p"', b'"q"', b"[]",
    b'"\xed\xa0\x80"', b"99999999999999999999999", b"NaN", b'"\\ud83d"', b'"\xc3\xa9"',
]  # fmt: skip
SEPARATORS = [(b",", b":"), (b", ", b": "), (b" ,", b" :"), (b",\t", b":")]
extra_keys, extra_values = st.sampled_from(EXTRA_KEYS), st.sampled_from(EXTRA_VALUES)


@st.composite
def line_templates(draw: st.DrawFn, *, learnable: bool = False) -> tuple[bytes, bytes, bytes]:
    """A random line shape: the bytes before and after a text's JSON string (quotes
    included), and the break (with blank lines) between two lines. Key orders, extra
    keys and values (escapes, big numbers, ``NaN``, encoded surrogates), duplicate keys,
    spacing, ``\\r``, an SSE prefix; unless ``learnable``, also shapes whose slot is not
    the text read (an error code, a later duplicate)."""
    comma, colon = draw(st.sampled_from(SEPARATORS))
    open_, close = draw(st.sampled_from([(b"{", b"}"), (b"{ ", b" }"), (b"{\t", b"}")]))

    def member(key: bytes, value: bytes) -> bytes:
        return b'"' + key + b'"' + colon + value

    def obj(members: list[bytes]) -> bytes:
        return open_ + comma.join(members) + close

    def extras(exclude: bytes) -> list[bytes]:
        pairs = draw(st.lists(st.tuples(extra_keys, extra_values), max_size=2))
        keys = {b"message", b"mess\\u0061ge", b"content"} if exclude == b"message" else {b""}
        if learnable:  # no other text, and fixed parts that are UTF-8
            pairs = [(k, v) for k, v in pairs if k not in keys and b"\xed" not in v]
        return [member(key, value) for key, value in pairs]

    key = draw(st.sampled_from([b"message", b"mess\\u0061ge"]))
    data = [member(key, b'"' + SLOT + b'"'), *extras(b"message")]
    data = list(draw(st.permutations(data)))
    if not learnable and draw(st.integers(0, 4)) == 0:  # another message, after the slot
        data = [*data, member(b"message", b'"later"')]
    outer = [member(b"data", obj(data)), *extras(b"data")]
    codes = OK_CODES if learnable else OK_CODES + NOT_OK_CODES
    if draw(st.booleans()):
        outer.append(member(b"code", draw(st.sampled_from(codes))))
    outer = list(draw(st.permutations(outer)))
    if draw(st.booleans()):  # an earlier data key, overridden
        outer.insert(0, member(b"data", obj([member(b"message", b'"earlier"')])))
    if not learnable and draw(st.integers(0, 4)) == 0:  # a later data key wins
        outer = [*outer, member(b"data", b'{"message":"last"}')]
    prefix = draw(st.sampled_from([b"", b"data: ", b"data:", b" ", b"\t"]))
    suffix = draw(st.sampled_from([b"", b"\r", b" ", b" \r"]))
    before, after = (prefix + obj(outer) + suffix).split(SLOT)
    gap = draw(st.sampled_from([b"\n", b"\n", b"\n\n", b"\n\r\n", b"\n \n"]))
    return before, after, gap


@st.composite
def bodies_in_a_shape(draw: st.DrawFn) -> bytes:
    """Lines in one random shape, now and then one that is not quite (or not at all)."""
    before, after, gap = draw(line_templates())
    forged = after + gap + before  # a line break inside a text
    texts = st.one_of(plain_texts, raw_texts, st.sampled_from([forged, b"p", b"q", b"\\u0070"]))
    lines = []
    for text in draw(st.lists(texts, min_size=1, max_size=8)):
        line = before + text + after
        if draw(st.integers(0, 9)) == 0:
            cut = draw(st.integers(0, len(line)))
            line = draw(
                st.sampled_from(
                    [
                        line + b" ",
                        b"x" + line,
                        line[:-1],
                        line.replace(b"200", b"500"),
                        line.replace(b"message", b"content"),
                        b"",
                        b" \x0b",  # blank to the eye, not to the parsers
                        line + line,  # two objects on a line
                        line[:cut] + b"\n" + line[cut:],  # an object across two lines
                        COMPACT[0] + text + COMPACT[1],  # another shape
                    ]
                )
            )
        lines.append(line)
    body = gap.join(lines)
    if draw(st.booleans()):
        body += gap
    return gap[1:] + body if draw(st.booleans()) else body


@both_parsers
@settings(max_examples=500, deadline=None)
@given(bodies_in_a_shape(), st.lists(st.integers(0, 600), max_size=6), st.booleans())
@example(  # the text is a key, the message written escaped: probe "p" alone passes
    body=b'{"data":{"message":"\\u0070"},"p":1}\n{"data":{"message":"\\u0070"},"zz":1}\n',
    points=[],
    strict=False,
)
@example(  # the same for probe "q"
    body=b'{"data":{"message":"\\u0071"},"q":1}\n{"data":{"message":"\\u0071"},"zz":1}\n',
    points=[],
    strict=False,
)
@example(  # the text read is a later duplicate; the slot found is the earlier message
    body=b'{"data":{"message":"a","message":"\\u0062"},"k":"b"}\n'
    b'{"data":{"message":"a","message":"\\u0062"},"k":"c"}\n',
    points=[],
    strict=False,
)
@example(  # an encoded surrogate before the text: the stdlib reads the line, not strictly
    body=b'{"k":"\xed\xa0\x80","data":{"message":"a"}}\n{"k":"\xed\xa0\x80","data":{"message":"b"}}',
    points=[],
    strict=False,
)
def test_learned_shapes_answer_as_the_parsers_do(
    loads: Loads, body: bytes, points: list[int], strict: bool
) -> None:
    forget_learned_shapes()
    assert_reads_as_line_by_line(body, points, loads=loads, strict=strict)


@both_parsers
@settings(max_examples=200, deadline=None)
@given(bodies_in_a_shape(), bodies_in_a_shape(), st.lists(st.integers(0, 600), max_size=4))
def test_shapes_learned_from_one_body_read_another_exactly(
    loads: Loads, teacher: bytes, body: bytes, points: list[int]
) -> None:
    """Shapes are kept per process: whatever was learned before holds for any body."""
    forget_learned_shapes()
    outcome(StreamDecoder(json_loads=loads), [teacher])
    assert_reads_as_line_by_line(body, points, loads=loads, strict=False)


@both_parsers
@settings(max_examples=200, deadline=None)
@given(
    line_templates(learnable=True),
    st.lists(plain_texts.filter(bool), min_size=2, max_size=6),
)
def test_a_consistent_shape_is_learned_from_the_first_block(
    loads: Loads, template: tuple[bytes, bytes, bytes], texts: list[bytes]
) -> None:
    """Any consistent shape with a plain first text is sliced from the first block on."""
    forget_learned_shapes()
    before, after, gap = template
    first = before + texts[0] + after
    # Learnable: the first text's JSON string appears in its line exactly once (a fixed
    # part such as "a\"b" may hold it too).
    assume(first.count(b'"' + texts[0] + b'"') == 1)
    body = gap.join(before + text + after for text in texts) + gap
    decoder = StreamDecoder(json_loads=loads)
    answered = []
    original = decoder_module.shape_texts

    def counting(block: bytes, shape: Shape) -> list[str] | None:
        result = original(block, shape)
        answered.append(result is not None)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decoder_module, "shape_texts", counting)
        pieces = decoder.feed(body) + decoder.finish()
    assert pieces == [text.decode() for text in texts]
    assert answered[-1] is True  # the block, answered by the shape learned from it
    assert (decoder.readable, decoder.anomalies) == (len(texts), 0)


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
