"""How the decoder learns a line shape, which lines it learns from, and what it keeps.

The Hypothesis tests in ``test_decoder_plain.py`` show that whatever is learned gives
exactly what reading line by line gives; these show the rules of learning itself: from a
plain text written once, never from an empty or escaped text or an error line, probes
that must read back, a budget of careful reads, a bounded process-wide cache per parser,
and a caller's own parser that sees every line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aichatonline._core import StreamDecoder
from aichatonline._core import decoder_shapes as shapes_module
from aichatonline._core.decoder_lines import LineReader
from aichatonline._core.decoder_shapes import (
    FIXED_SHAPES,
    forget_learned_shapes,
    known_shapes,
    learn_shape,
    remember_shape,
    shape_of,
    shape_texts,
    trim_blank_lines,
)
from tests.test_decoder_plain import ParsersOnly, outcome

Loads = Callable[[bytes], Any]
both_parsers = pytest.mark.parametrize("loads", [json.loads, orjson.loads], ids=["json", "orjson"])

NO_CODE = (b'{"data":{"message":"', b'"}}')


@pytest.fixture(autouse=True)
def _no_learned_shapes() -> Iterator[None]:
    forget_learned_shapes()
    yield
    forget_learned_shapes()


class Reads:
    """The careful reading of one line, counting its calls (and the lines it read)."""

    def __init__(self, loads: Loads) -> None:
        self.reader = LineReader(json_loads=loads)
        self.lines: list[bytes] = []

    def __call__(self, line: bytes) -> str | None:
        self.lines.append(line)
        return self.reader.read_alone(line)


def body_of(shape: tuple[bytes, bytes], *texts: str, gap: bytes = b"\n") -> bytes:
    return gap.join(shape[0] + text.encode() + shape[1] for text in texts) + gap


# -- what a line teaches -------------------------------------------------------------------


@both_parsers
@pytest.mark.parametrize(
    ("line", "before", "after"),
    [
        (b'{"data":{"message":"hi"}}', b'{"data":{"message":"', b'"}}'),
        (b'{"data":{"message":"hi"},"code":200}', b'{"data":{"message":"', b'"},"code":200}'),
        (b'data: {"data":{"message":"hi"}}\r', b'data: {"data":{"message":"', b'"}}\r'),
        (b'{"id":"a\\/b","data":{"message":"hi"}}', b'{"id":"a\\/b","data":{"message":"', b'"}}'),
        (
            b'{"code":200,"data":{"message":"hi","id":"x"}}',  # ends as a known shape does
            b'{"code":200,"data":{"message":"',
            b'","id":"x"}}',
        ),
        (
            b'{"data":{"message":null,"content":"hi"}}',
            b'{"data":{"message":null,"content":"',
            b'"}}',
        ),
    ],
    ids=["no code", "code last", "sse and cr", "escape elsewhere", "known ends", "content"],
)  # fmt: skip
def test_a_plain_text_written_once_teaches_its_shape(
    loads: Loads, line: bytes, before: bytes, after: bytes
) -> None:
    reads = Reads(loads)
    shape = learn_shape(line, FIXED_SHAPES, reads)
    assert shape == shape_of(before, after)
    # the line itself, then the two probes
    assert reads.lines == [line, before + b"p" + after, before + b"q" + after]


@both_parsers
@pytest.mark.parametrize(
    "line",
    [
        b'{"data":{"message":""}}',  # empty: nothing to find
        b'{"data":{"message":"say \\"hi\\""}}',  # escaped
        b'{"data":{"message":"caf\\u00e9"}}',  # escaped, though plain once read
        b'{"data":{"message":"a"},"k":"a"}',  # written twice
        b'{"code":500,"data":{"message":"a"}}',  # an error line
        b'{"data":{"text":"a"}}',  # no text
        b"not json",
        b'{"data":{"message":"\\u0070"},"p":1}',  # "p" once, but as a key: the probes see it
        b'{"k":"\\"a","data":{"message":"\\u0061"}}',  # "a" once, but inside another string
    ],
)
def test_lines_that_teach_nothing(loads: Loads, line: bytes) -> None:
    assert learn_shape(line, FIXED_SHAPES, Reads(loads)) is None


@both_parsers
def test_a_probe_that_does_not_read_back_teaches_nothing(loads: Loads) -> None:
    line = b'{"data":{"message":"hi"}}'
    for wrong in ("p", "q"):
        reads = Reads(loads)

        def lying(candidate: bytes, wrong: str = wrong, reads: Reads = reads) -> str | None:
            text = reads(candidate)
            return "x" if text == wrong else text

        assert learn_shape(line, FIXED_SHAPES, lying) is None


@both_parsers
def test_reading_a_line_to_learn_from_it_logs_nothing(
    loads: Loads, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aichatonline")
    reader = LineReader(json_loads=loads)
    assert reader.read_alone(b"not json") is None
    assert reader.read_alone(b'{"code":500,"message":"no"}') is None
    assert reader.read_alone(b'{"data":{"message":"hi"}}') == "hi"
    assert (caplog.records, reader.anomalies, reader.readable) == ([], 0, 0)


def test_fixed_parts_must_be_utf8() -> None:
    line = b'{"k":"\xed\xa0\x80","data":{"message":"hi"}}'  # the stdlib reads it
    assert LineReader(json_loads=json.loads).read_alone(line) == "hi"
    assert learn_shape(line, FIXED_SHAPES, Reads(json.loads)) is None


def test_fixed_parts_are_bounded() -> None:
    padding = b'"pad":"' + b"x" * 1100 + b'",'
    line = b"{" + padding + b'"data":{"message":"hi"}}'
    assert learn_shape(line, FIXED_SHAPES, Reads(json.loads)) is None


def test_a_known_shape_with_other_blank_lines_needs_no_read() -> None:
    block = body_of(NO_CODE, "a", "b", gap=b"\n\n").rstrip(b"\n")
    known = (shape_of(*NO_CODE),)
    assert learn_shape(block, known, None) == shape_of(*NO_CODE, b"\n\n")
    assert learn_shape(block, (*known, shape_of(*NO_CODE, b"\n\n")), None) is None


def test_without_reads_nothing_new_is_learned() -> None:
    assert learn_shape(b'{"data":{"message":"hi"}}', FIXED_SHAPES, None) is None


# -- the decoder learning ------------------------------------------------------------------


@both_parsers
@pytest.mark.parametrize(
    "gap", [b"\n", b"\n\n", b"\r\n", b"\r\n\r\n"], ids=["lf", "sse", "crlf", "sse crlf"]
)
def test_the_first_block_is_sliced(
    loads: Loads, gap: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[bytes] = []

    def counting(block: bytes, shape: shapes_module.Shape) -> list[str] | None:
        texts = shape_texts(block, shape)
        if texts is not None:
            answered.append(block)
        return texts

    monkeypatch.setattr("aichatonline._core.decoder.shape_texts", counting)
    before = b"data: " + NO_CODE[0] if gap.count(b"\n") == 2 else NO_CODE[0]
    body = body_of((before, NO_CODE[1]), "a", "b", "c", gap=gap)
    assert outcome(StreamDecoder(json_loads=loads), [body]) == (["a", "b", "c"], None, 0, 3)
    assert len(answered) == 1


@both_parsers
def test_a_second_decoder_starts_with_what_the_first_learned(loads: Loads) -> None:
    body = body_of(NO_CODE, "a", "b")
    StreamDecoder(json_loads=loads).feed(body)
    assert known_shapes(loads)[0] == shape_of(*NO_CODE)
    other = json.loads if loads is orjson.loads else orjson.loads
    assert known_shapes(other) == FIXED_SHAPES  # kept per parser
    second = StreamDecoder(json_loads=loads)
    assert second.feed(body) == ["a", "b"]
    assert second._learning == 48  # nothing to learn


@both_parsers
def test_one_line_blocks_learn_once(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    for text in "abcdefgh":
        assert decoder.feed(NO_CODE[0] + text.encode() + NO_CODE[1] + b"\n") == [text]
    assert decoder._learning == 48 - 3  # the first line and its two probes


@both_parsers
def test_learning_stops_after_its_budget(loads: Loads) -> None:
    """Lines of no consistent shape (a counter before the text) cost a bounded number of
    careful reads, and read as they always did."""
    decoder = StreamDecoder(json_loads=loads)
    reference = ParsersOnly(json_loads=loads)
    for index in range(100):
        line = b'{"n":%d,"data":{"message":"%d"}}\n' % (index, index)
        line += b'{"n":-%d,"data":{"message":"x"}}\n' % index
        assert decoder.feed(line) == reference.feed(line)
    assert decoder._learning <= 0
    assert decoder._learning > -3  # the last learning may end its probes past zero


def test_the_cache_is_bounded_and_keeps_the_newest_first() -> None:
    shapes = [shape_of(b'{"k":%d,"data":{"message":"' % n, b'"}}') for n in range(12)]
    for shape in shapes:
        remember_shape(json.loads, shape)
    remember_shape(json.loads, FIXED_SHAPES[0])  # the fixed ones are always there anyway
    remember_shape(json.loads, shapes[-1])  # already kept
    assert known_shapes(json.loads) == (*shapes[:3:-1], *FIXED_SHAPES)


@both_parsers
def test_a_shape_that_serves_no_block_is_not_kept(loads: Loads) -> None:
    # The first line teaches its shape, the second line is not in it.
    body = NO_CODE[0] + b"a" + NO_CODE[1] + b"\n" + b'{"data":{"message":"b"},"x":1}\n'
    assert StreamDecoder(json_loads=loads).feed(body) == ["a", "b"]
    assert known_shapes(loads) == FIXED_SHAPES


def test_a_parser_of_the_callers_own_sees_every_line() -> None:
    seen: list[bytes] = []

    def loads(data: bytes) -> Any:
        seen.append(data)
        return json.loads(data)

    body = body_of(NO_CODE, "a", "b") + body_of(FIXED_SHAPES[0][:2], "c")
    assert StreamDecoder(json_loads=loads).feed(body) == ["a", "b", "c"]
    assert known_shapes(loads) == FIXED_SHAPES
    parsed = b"".join(seen)  # every line went through it (in one call, or one by one)
    assert all(line in parsed for line in body.splitlines())


# -- blank lines around a block --------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "trimmed"),
    [
        (b"a\n", b"a"),
        (b"\na", b"a"),
        (b"\r\n \n\ta\r\n\r\n", b"\ta\r"),
        (b"a\r\n\r", b"a\r"),
        (b" \t\r\n\r", b""),
        (b"a\n\nb", b"a\n\nb"),
        (b" a \n", b" a "),
        (b"\x0b\na", b"\x0b\na"),  # not blank: the parsers refuse it
        (b"a\n\x0c", b"a\n\x0c"),
    ],
)
def test_trim_blank_lines(block: bytes, trimmed: bytes) -> None:
    assert trim_blank_lines(block) == trimmed
    if trimmed == block:
        assert trim_blank_lines(block) is block


@given(
    st.lists(
        st.sampled_from([b"", b" ", b"\t", b"\r", b"a", b" a\r", b" \x0b", b"\x0c"]), max_size=8
    )
)
def test_trim_blank_lines_drops_exactly_the_blank_lines_at_the_ends(lines: list[bytes]) -> None:
    def blank(line: bytes) -> bool:
        return not line.strip(b" \t\r")

    kept = list(lines)
    while kept and blank(kept[0]):
        kept.pop(0)
    while kept and blank(kept[-1]):
        kept.pop()
    assert trim_blank_lines(b"\n".join(lines)) == b"\n".join(kept)
