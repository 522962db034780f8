"""The incremental NDJSON stream decoder: the same answer for every split of the bytes.

Every test runs with the stdlib parser and with orjson (the ``speed`` extra).
``decode`` is the reference driver: it feeds chunks, collects the pieces and
stops at the first error; only ``ProtocolError`` and ``ServiceError`` are
caught, so anything else a decoder raises fails the test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aichatonline._core import DEFAULT_MAX_LINE_BYTES, StreamDecoder
from aichatonline._core.decoder import default_json_loads
from aichatonline._exceptions import ProtocolError, ServiceError

Loads = Callable[[bytes], Any]
LOADERS = [json.loads, orjson.loads]
both_parsers = pytest.mark.parametrize("loads", LOADERS, ids=["json", "orjson"])

Outcome = tuple[list[str], tuple[type[BaseException], str] | None]


def decode(chunks: Iterable[bytes], loads: Loads, **options: Any) -> Outcome:
    """Feed ``chunks`` then finish; return the pieces and the first error (type, message)."""
    decoder = StreamDecoder(json_loads=loads, **options)
    pieces: list[str] = []
    try:
        for chunk in chunks:
            pieces += decoder.feed(chunk)
        pieces += decoder.finish()
    except (ProtocolError, ServiceError) as exc:
        return pieces, (type(exc), str(exc))
    return pieces, None


def split_at(body: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(body)})
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]


def fragments(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def line(text: str, key: str = "message", **extra: Any) -> bytes:
    return json.dumps({"code": 200, "data": {key: text}, **extra}, ensure_ascii=False).encode()


# -- building valid streams ------------------------------------------------------------------


@st.composite
def valid_streams(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A well-formed body in any of the tolerated shapes, and the pieces it carries."""
    pieces = draw(st.lists(st.text(max_size=12), max_size=12))
    parts: list[bytes] = []
    for piece in pieces:
        if draw(st.booleans()):
            parts.append(draw(st.sampled_from([b"\n", b"\r\n", b"  \t\n", b"data: \n"])))
        payload: dict[str, Any] = {"data": {draw(st.sampled_from(["message", "content"])): piece}}
        code = draw(st.sampled_from([200, "200", None]))
        if code is not None:
            payload["code"] = code
        ascii_only = draw(st.booleans())
        prefix = draw(st.sampled_from([b"", b"data: ", b"data:"]))
        ending = draw(st.sampled_from([b"\n", b"\r\n"]))
        parts.append(prefix + json.dumps(payload, ensure_ascii=ascii_only).encode() + ending)
    body = b"".join(parts)
    if body and draw(st.booleans()):
        body = body.rstrip(b"\r\n")  # the final line without its line end
    return body, [piece for piece in pieces if piece]


split_points = st.lists(st.integers(0, 4000), max_size=12)


@both_parsers
@settings(max_examples=150, deadline=None)
@given(valid_streams(), split_points)
def test_every_split_gives_the_same_pieces(
    loads: Loads, stream: tuple[bytes, list[str]], points: list[int]
) -> None:
    body, expected = stream
    assert decode([body], loads) == (expected, None)
    assert decode(split_at(body, points), loads) == (expected, None)


@both_parsers
@settings(max_examples=40, deadline=None)
@given(valid_streams())
def test_one_byte_fragments(loads: Loads, stream: tuple[bytes, list[str]]) -> None:
    body, expected = stream
    assert decode(fragments(body, 1), loads) == (expected, None)


FIXED_PIECES = [
    "Hel",
    "lo, ",
    "wörld 😀",
    "",
    "e\u0301\u0301 combining",
    " 中文\n",
    "line\rbreak\r\n",
    "\u2028\u2029",
    "👩\u200d👩\u200d👧 end",
]


def fixed_body() -> bytes:
    lines = [
        line(FIXED_PIECES[0]) + b"\n",
        b"\n",
        line(FIXED_PIECES[1]) + b"\r\n",
        b"data: " + line(FIXED_PIECES[2]) + b"\n",
        line(FIXED_PIECES[3]) + b"\n",
        b"\r\n",
        line(FIXED_PIECES[4], key="content") + b"\r\n",
        json.dumps({"data": {"message": FIXED_PIECES[5]}}, ensure_ascii=True).encode() + b"\n",
        b'{"code": "200", "data": {"message": ' + json.dumps(FIXED_PIECES[6]).encode() + b"}}\n",
        line(FIXED_PIECES[7]) + b"\n",
        line(FIXED_PIECES[8]),  # no final newline
    ]
    return b"".join(lines)


FIXED_EXPECTED = [piece for piece in FIXED_PIECES if piece]


@both_parsers
def test_fixed_body_one_shot(loads: Loads) -> None:
    assert decode([fixed_body()], loads) == (FIXED_EXPECTED, None)
    assert "".join(FIXED_EXPECTED) == "".join(FIXED_PIECES)


@both_parsers
def test_every_two_split_of_a_fixed_body(loads: Loads) -> None:
    body = fixed_body()
    for point in range(len(body) + 1):
        assert decode([body[:point], body[point:]], loads) == (FIXED_EXPECTED, None), point


@both_parsers
@pytest.mark.parametrize("size", [1, 2, 3, 7, 97, 100_000])
def test_fragment_sizes(loads: Loads, size: int) -> None:
    assert decode(fragments(fixed_body(), size), loads) == (FIXED_EXPECTED, None)


@both_parsers
def test_every_two_split_with_empty_feeds_between(loads: Loads) -> None:
    body = fixed_body()
    for point in range(0, len(body) + 1, 5):
        chunks = [b"", body[:point], b"", b"", body[point:], b""]
        assert decode(chunks, loads) == (FIXED_EXPECTED, None), point


@both_parsers
def test_multibyte_character_split_mid_code_point(loads: Loads) -> None:
    text = "a😀b€c"
    encoded = line(text) + b"\n"
    start = encoded.index("😀".encode())
    for offset in (1, 2, 3):
        decoder = StreamDecoder(json_loads=loads)
        assert decoder.feed(encoded[: start + offset]) == []
        assert decoder.feed(encoded[start + offset :]) == [text]
        assert decoder.finish() == []
    euro = encoded.index("€".encode())
    chunks = [encoded[: euro + 1], encoded[euro + 1 : euro + 2], encoded[euro + 2 :]]
    assert decode(chunks, loads) == ([text], None)


def test_default_parser_is_orjson() -> None:
    assert default_json_loads() is orjson.loads
    decoder = StreamDecoder()
    assert decoder.feed(line("x") + b"\n" + line("y")) == ["x"]
    assert decoder.finish() == ["y"]


# -- any bytes: only our two errors, and the same outcome for every split -------------------

MALFORMED_LINES = [
    b"not json",
    b"[1, 2]",
    b'"a string"',
    b"42",
    b"null",
    b"{}",
    b'{"code": 200}',
    b'{"data": {}}',
    b'{"data": "hello"}',
    b'{"data": {"message": 5}}',
    b'{"data": {"message": null}}',
    b'{"data": {"content": ["x"]}}',
    b'{"data": {"message": ' + b'"\xff\xfe"}}',
    b"\xff\xfe\xfd\x80",
    b"\xc3",
    b"data: [DONE]",
    b'{"data": {"message": "unterminated',
    b"[" * 100_000,
    b"{" * 50_000,
]

stream_lines = st.one_of(
    st.builds(line, st.text(max_size=8)),
    st.sampled_from([b"", b"\r", b"data: ", *MALFORMED_LINES[:-2]]),
    st.sampled_from(
        [
            b'{"code": 500, "message": "boom"}',
            b'{"code": "429", "msg": "slow down"}',
            b'{"code": 401, "data": {"message": "no token"}}',
            b'{"code": 0}',
        ]
    ),
    st.binary(max_size=12),
)


@st.composite
def mixed_bodies(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(stream_lines, max_size=10))
    body = b"".join(raw + draw(st.sampled_from([b"\n", b"\r\n"])) for raw in lines)
    return body[:-1] if body and draw(st.booleans()) else body


@both_parsers
@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.binary(max_size=300), mixed_bodies()),
    split_points,
    st.booleans(),
    st.sampled_from([DEFAULT_MAX_LINE_BYTES, 24, 64]),
)
def test_any_bytes_same_outcome_for_every_split(
    loads: Loads, body: bytes, points: list[int], strict: bool, limit: int
) -> None:
    options = {"strict": strict, "max_line_bytes": limit}
    one_shot = decode([body], loads, **options)
    assert decode(split_at(body, points), loads, **options) == one_shot
    assert decode(fragments(body, 1), loads, **options) == one_shot


@both_parsers
@settings(max_examples=60, deadline=None)
@given(mixed_bodies(), st.booleans())
def test_nothing_after_an_error_is_returned(loads: Loads, body: bytes, strict: bool) -> None:
    pieces, error = decode([body], loads, strict=strict)
    if error is None:
        return
    # Decoding the lines one at a time, the error line is the first that raises:
    # the pieces returned are exactly those of the lines before it.
    before: list[str] = []
    for raw in body.split(b"\n"):
        got, line_error = decode([raw], loads, strict=strict)
        if line_error is not None:
            assert line_error == error
            break
        before += got
    assert pieces == before


@both_parsers
@pytest.mark.parametrize("depth", [500, 1000, 1023, 1024, 1025, 5000])
@pytest.mark.parametrize("where", ["code", "message", "msg", "data"])
def test_deeply_nested_values_never_escape(loads: Loads, depth: int, where: str) -> None:
    nested = b"[" * depth + b"]" * depth
    if where == "data":
        raw = b'{"code": 500, "data": {"message": ' + nested + b"}}"
    elif where == "code":
        raw = b'{"code": ' + nested + b"}"
    else:
        raw = b'{"code": 500, "' + where.encode() + b'": ' + nested + b"}"
    body = line("before") + b"\n" + raw + b"\n" + line("after") + b"\n"
    pieces, error = decode([body], loads)
    if error is None:  # too deep for the parser: a skipped anomaly
        assert pieces == ["before", "after"]
    else:  # parsed: an in-band error (RecursionError used to escape here)
        assert pieces == ["before"]
        assert error[0] is ServiceError
    if depth <= (500 if loads is json.loads else 1000):
        assert error is not None


# -- malformed lines ----------------------------------------------------------------------


@both_parsers
@pytest.mark.parametrize("bad", MALFORMED_LINES, ids=lambda b: repr(b[:24]))
def test_malformed_line_is_skipped_and_counted(loads: Loads, bad: bytes) -> None:
    decoder = StreamDecoder(json_loads=loads)
    body = line("a") + b"\n" + bad + b"\r\n" + line("b") + b"\n"
    assert decoder.feed(body) == ["a", "b"]
    assert decoder.finish() == []
    assert decoder.anomalies == 1


@both_parsers
@pytest.mark.parametrize("bad", MALFORMED_LINES, ids=lambda b: repr(b[:24]))
def test_malformed_line_is_an_error_in_strict_mode(loads: Loads, bad: bytes) -> None:
    decoder = StreamDecoder(json_loads=loads, strict=True)
    assert decoder.feed(line("a") + b"\n" + bad + b"\n" + line("b") + b"\n") == ["a"]
    with pytest.raises(ProtocolError, match="unreadable stream line"):
        decoder.feed(b"")
    with pytest.raises(ProtocolError):
        decoder.finish()


@both_parsers
@pytest.mark.parametrize("bad", MALFORMED_LINES[:6], ids=lambda b: repr(b[:24]))
def test_malformed_final_line_in_strict_mode(loads: Loads, bad: bytes) -> None:
    decoder = StreamDecoder(json_loads=loads, strict=True)
    assert decoder.feed(line("a") + b"\n" + bad) == ["a"]
    with pytest.raises(ProtocolError):
        decoder.finish()


@both_parsers
def test_anomalies_are_counted_one_per_line(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    body = b"x\n\n[1]\n\r\n" + line("ok") + b"\n{}\ndata: \nnope"
    assert decoder.feed(body) == ["ok"]
    assert decoder.finish() == []
    assert decoder.anomalies == 4  # x, [1], {}, nope: blank lines are not anomalies


@both_parsers
def test_blank_lines_are_not_anomalies_even_in_strict_mode(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads, strict=True)
    body = b"\n\r\n \t\r\ndata: \n" + line("ok") + b"\n\n"
    assert decoder.feed(body) == ["ok"]
    assert decoder.finish() == []
    assert decoder.anomalies == 0


@both_parsers
def test_empty_message_is_not_a_piece_nor_an_anomaly(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads, strict=True)
    assert decoder.feed(line("") + b"\n" + line("", key="content") + b"\n") == []
    assert decoder.finish() == []
    assert decoder.anomalies == 0


@both_parsers
def test_message_wins_over_content(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    raw = b'data: {"data": {"message": "m", "content": "c"}}\n{"data": {"content": "c2"}}\n'
    assert decoder.feed(raw) == ["m", "c2"]


# -- in-band errors -------------------------------------------------------------------------


@both_parsers
@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        (b'{"code": 500, "message": "boom"}', 500, "boom"),
        (b'{"code": "500", "message": "boom"}', "500", "boom"),
        (b'{"code": 429, "msg": "slow down"}', 429, "slow down"),
        (b'{"code": 401, "data": {"message": "bad token"}}', 401, "bad token"),
        (b'{"code": 403, "data": null}', 403, None),
        (b'{"code": 0}', 0, None),
        (b'data: {"code": 500, "message": "sse"}\r', 500, "sse"),
        (b'{"code": 500, "message": 12}', 500, "12"),
    ],
)
def test_in_band_error(loads: Loads, raw: bytes, code: object, message: str | None) -> None:
    decoder = StreamDecoder(json_loads=loads)
    body = line("one") + b"\n" + line("two") + b"\n" + raw + b"\n" + line("after") + b"\n"
    assert decoder.feed(body) == ["one", "two"]
    with pytest.raises(ServiceError) as info:
        decoder.feed(line("more") + b"\n")
    assert info.value.code == code
    assert info.value.message == message
    assert repr(code) in str(info.value)
    if message is not None:
        assert message in str(info.value)
    with pytest.raises(ServiceError):
        decoder.finish()  # the error sticks: nothing after it is ever returned


@both_parsers
def test_in_band_error_as_the_final_line(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    assert decoder.feed(line("ok") + b'\n{"code": 500, "message": "end"}') == ["ok"]
    with pytest.raises(ServiceError, match="end"):
        decoder.finish()


@both_parsers
def test_in_band_error_is_raised_even_in_lenient_mode_and_split(loads: Loads) -> None:
    body = line("a") + b'\n{"code": 502, "msg": "upstream"}\n' + line("b")
    for point in range(len(body) + 1):
        pieces, error = decode([body[:point], body[point:]], loads)
        assert pieces == ["a"]
        assert error is not None
        assert error[0] is ServiceError
        assert "upstream" in error[1]


@both_parsers
@pytest.mark.parametrize("code", [b"200", b'"200"', None])
def test_success_codes_are_not_errors(loads: Loads, code: bytes | None) -> None:
    field = b"" if code is None else b'"code": ' + code + b", "
    decoder = StreamDecoder(json_loads=loads, strict=True)
    assert decoder.feed(b"{" + field + b'"data": {"message": "hi"}}\n') == ["hi"]
    assert decoder.finish() == []


# -- bounded lines ------------------------------------------------------------------------

LIMIT = 64


def exact_line(size: int, text_char: str = "x") -> bytes:
    """A valid line of exactly ``size`` bytes."""
    empty = len(line(""))
    raw = line(text_char * (size - empty))
    assert len(raw) == size
    return raw


@both_parsers
def test_line_of_exactly_the_bound_is_fine(loads: Loads) -> None:
    raw = exact_line(LIMIT)
    text = json.loads(raw)["data"]["message"]
    for chunks in ([raw + b"\n"], fragments(raw + b"\n", 1), [raw], fragments(raw, 1)):
        assert decode(chunks, loads, max_line_bytes=LIMIT) == ([text], None)


@both_parsers
@pytest.mark.parametrize("size", [1, 7, 100_000])
def test_line_one_byte_over_the_bound(loads: Loads, size: int) -> None:
    raw = exact_line(LIMIT + 1)
    body = line("ok") + b"\n" + raw + b"\n" + line("after") + b"\n"
    pieces, error = decode(fragments(body, size), loads, max_line_bytes=LIMIT)
    assert pieces == ["ok"]
    assert error == (ProtocolError, f"a stream line exceeds the limit of {LIMIT} bytes")


@both_parsers
def test_too_long_complete_line_in_one_feed(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads, max_line_bytes=LIMIT)
    assert decoder.feed(line("ok") + b"\n" + b"y" * (LIMIT + 1) + b"\n" + line("no") + b"\n") == [
        "ok"
    ]
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(b"")
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.finish()


@both_parsers
def test_too_long_unterminated_final_line(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads, max_line_bytes=LIMIT)
    assert decoder.feed(line("ok") + b"\n" + b"z" * (LIMIT + 1)) == ["ok"]
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.finish()


@both_parsers
def test_growing_line_is_refused_before_it_ends(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads, max_line_bytes=LIMIT)
    for _ in range(LIMIT):
        assert decoder.feed(b"a") == []
        assert decoder._size <= LIMIT
        assert sum(map(len, decoder._fragments)) <= LIMIT
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(b"a")  # byte LIMIT + 1, no newline yet
    assert decoder._fragments == []
    with pytest.raises(ProtocolError):
        decoder.feed(b"\n")


def test_large_line_is_refused_without_buffering_it() -> None:
    limit = 256 * 1024
    decoder = StreamDecoder(max_line_bytes=limit)
    chunk = b"q" * (64 * 1024)
    for _ in range(limit // len(chunk)):
        assert decoder.feed(chunk) == []
        assert sum(map(len, decoder._fragments)) <= limit
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(chunk)  # the 5th chunk: refused without being kept
    assert decoder._fragments == []


def test_default_bound() -> None:
    assert DEFAULT_MAX_LINE_BYTES == 4 * 1024 * 1024
    decoder = StreamDecoder()
    assert decoder.feed(b"w" * DEFAULT_MAX_LINE_BYTES) == []
    with pytest.raises(ProtocolError):
        decoder.feed(b"w")


@pytest.mark.parametrize("limit", [0, -1])
def test_bound_must_be_positive(limit: int) -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        StreamDecoder(max_line_bytes=limit)


def test_cost_is_linear_in_the_input() -> None:
    # One 200 kB line fed a byte at a time: re-joining the buffer on every feed
    # (quadratic) copies ~20 GB and takes far longer than this budget.
    text = "x" * 200_000
    decoder = StreamDecoder()
    started = time.perf_counter()
    pieces: list[str] = []
    for chunk in fragments(line(text) + b"\n", 1):
        pieces += decoder.feed(chunk)
    assert time.perf_counter() - started < 5.0
    assert pieces == [text]


# -- life cycle ----------------------------------------------------------------------------


@both_parsers
def test_empty_feed_is_harmless(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    assert decoder.feed(b"") == []
    assert decoder.feed(line("ab")[:5]) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(line("ab")[5:]) == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == ["ab"]
    assert decoder.feed(b"") == []
    assert decoder.finish() == []
    assert decoder.anomalies == 0


@both_parsers
def test_finish_returns_the_last_line(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    assert decoder.feed(line("a") + b"\n" + line("b")) == ["a"]
    assert decoder.finish() == ["b"]


def test_finish_twice_raises() -> None:
    decoder = StreamDecoder()
    assert decoder.finish() == []
    with pytest.raises(RuntimeError):
        decoder.finish()


def test_feed_after_finish_raises() -> None:
    decoder = StreamDecoder()
    decoder.feed(line("a"))
    assert decoder.finish() == ["a"]
    with pytest.raises(RuntimeError):
        decoder.feed(b"")
    with pytest.raises(RuntimeError):
        decoder.feed(line("b") + b"\n")


def test_a_finished_decoder_stays_finished_after_a_final_line_error() -> None:
    decoder = StreamDecoder(strict=True)
    decoder.feed(b"garbage")
    with pytest.raises(ProtocolError):
        decoder.finish()
    with pytest.raises((ProtocolError, RuntimeError)):
        decoder.feed(line("x") + b"\n")


# -- surrogate halves split across pieces --------------------------------------------------


def escaped(text: str) -> bytes:
    """A stream line whose text is written with ASCII escapes (lone surrogates as ``\\udXXX``)."""
    return json.dumps({"code": 200, "data": {"message": text}}, ensure_ascii=True).encode()


ROCKET_HIGH, ROCKET_LOW = "\ud83d", "\ude80"


@both_parsers
def test_a_pair_split_across_two_pieces_is_re_paired(loads: Loads) -> None:
    body = escaped(ROCKET_HIGH) + b"\n" + escaped(ROCKET_LOW + " launched") + b"\n"
    assert b"\\ud83d" in body
    decoder = StreamDecoder(json_loads=loads)
    assert decoder.feed(body) == ["\U0001f680 launched"]
    assert decoder.finish() == []
    assert decoder.anomalies == 0


@both_parsers
def test_a_pair_split_across_feeds(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    assert decoder.feed(escaped("go " + ROCKET_HIGH) + b"\n") == ["go "]  # the half waits
    assert decoder.feed(b"\n\r\n") == []  # blank lines between do not pair or drop it
    assert decoder.feed(escaped(ROCKET_LOW + "!") + b"\n") == ["\U0001f680!"]
    assert decoder.finish() == []
    assert decoder.anomalies == 0


@both_parsers
def test_a_pair_split_with_an_empty_message_between(loads: Loads) -> None:
    body = escaped("a" + ROCKET_HIGH) + b"\n" + escaped("") + b"\n" + escaped(ROCKET_LOW) + b"\n"
    assert decode([body], loads) == (["a", "\U0001f680"], None)


@both_parsers
def test_a_pair_split_into_the_final_line(loads: Loads) -> None:
    body = escaped(ROCKET_HIGH) + b"\n" + escaped(ROCKET_LOW + "end")  # no final newline
    assert decode([body], loads) == (["\U0001f680end"], None)


@both_parsers
@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ([ROCKET_LOW + "x"], ["\ufffdx"]),
        (["x" + ROCKET_HIGH, "y"], ["x", "\ufffdy"]),
        (["a" + ROCKET_HIGH + "b"], ["a\ufffdb"]),
        ([ROCKET_HIGH + ROCKET_HIGH, ROCKET_LOW], ["\ufffd\U0001f680"]),
        (["x", ROCKET_LOW, ROCKET_HIGH], ["x", "\ufffd", "\ufffd"]),
        (["x" + ROCKET_HIGH], ["x", "\ufffd"]),
    ],
)
def test_a_half_that_is_never_paired_becomes_a_replacement(
    loads: Loads, texts: list[str], expected: list[str]
) -> None:
    body = b"".join(escaped(text) + b"\n" for text in texts)
    for chunks in ([body], fragments(body, 1), [body[:-1]]):  # also: no final newline
        decoder = StreamDecoder(json_loads=loads)
        pieces: list[str] = []
        for chunk in chunks:
            pieces += decoder.feed(chunk)
        pieces += decoder.finish()
        assert "".join(pieces) == "".join(expected)
        assert decoder.anomalies == "".join(expected).count("\ufffd")
        "".join(pieces).encode("utf-8")  # always encodable


@both_parsers
@pytest.mark.parametrize("terminated", [True, False], ids=["terminated", "final line"])
@pytest.mark.parametrize(
    "bad_text", [ROCKET_LOW + "x", "x" + ROCKET_LOW + "y"], ids=["low first", "low inside"]
)
def test_strict_a_lone_half_is_an_error_after_the_pieces_before_it(
    loads: Loads, terminated: bool, bad_text: str
) -> None:
    body = escaped("one") + b"\n" + escaped("two") + b"\n" + escaped(bad_text)
    if terminated:
        body += b"\n"
    decoder = StreamDecoder(json_loads=loads, strict=True)
    assert decoder.feed(body) == ["one", "two"]
    with pytest.raises(ProtocolError, match="surrogate"):
        decoder.finish()


@both_parsers
@pytest.mark.parametrize("terminated", [True, False], ids=["terminated", "final line"])
def test_strict_a_high_half_at_the_end(loads: Loads, terminated: bool) -> None:
    body = escaped("one") + b"\n" + escaped("two" + ROCKET_HIGH)
    if terminated:
        body += b"\n"
    decoder = StreamDecoder(json_loads=loads, strict=True)
    pieces = decoder.feed(body)
    # The text before the half is delivered either way, then the error: at once when the
    # last call has no pieces to give, else kept in .error and raised by finish() again.
    if terminated:  # no pieces left to give with it: raised at once
        with pytest.raises(ProtocolError, match="surrogate"):
            decoder.finish()
    else:  # "two" first, the error kept for the next call
        pieces += decoder.finish()
        assert isinstance(decoder.error, ProtocolError)
        with pytest.raises(ProtocolError, match="surrogate"):
            decoder.finish()
    assert pieces == ["one", "two"]


@both_parsers
def test_strict_a_lone_half_in_a_later_feed(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads, strict=True)
    assert decoder.feed(escaped("a" + ROCKET_HIGH) + b"\n") == ["a"]
    assert decoder.feed(escaped("b") + b"\n") == []
    with pytest.raises(ProtocolError, match="surrogate"):
        decoder.feed(escaped("c") + b"\n")


def test_both_parsers_give_identical_text_for_split_pairs() -> None:
    texts = ["Hi " + ROCKET_HIGH, ROCKET_LOW + " and \U0001f600", ROCKET_HIGH, ROCKET_LOW, "."]
    body = b"".join(escaped(text) + b"\n" for text in texts)
    results = [decode([body], loads) for loads in LOADERS]
    assert results[0] == results[1]
    assert "".join(results[0][0]) == "Hi \U0001f680 and \U0001f600\U0001f680."


def utf16_units(text: str) -> list[str]:
    """``text`` as UTF-16 code units (astral characters as two surrogate halves)."""
    units: list[str] = []
    for char in text:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            units += [chr(0xD800 + (code >> 10)), chr(0xDC00 + (code & 0x3FF))]
        else:
            units.append(char)
    return units


@st.composite
def streams_cut_by_utf16_units(draw: st.DrawFn) -> tuple[bytes, str]:
    """An answer with astral characters, cut into pieces at any UTF-16 unit, as a body."""
    alphabet = st.sampled_from(["a", "é", " ", "中", "\U0001f680", "\U0001f600", "\U00010348"])
    text = "".join(draw(st.lists(alphabet, max_size=20)))
    units = utf16_units(text)
    cuts = sorted(draw(st.sets(st.integers(0, len(units)), max_size=8)))
    pieces = ["".join(units[a:b]) for a, b in zip([0, *cuts], [*cuts, len(units)], strict=True)]
    lines = []
    for piece in pieces:
        try:
            piece.encode()
            ascii_only = draw(st.booleans())
        except UnicodeEncodeError:
            ascii_only = True  # a lone half can only travel as an escape
        raw = json.dumps({"data": {"message": piece}}, ensure_ascii=ascii_only).encode()
        lines.append(raw + draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"])))
    body = b"".join(lines)
    if body and draw(st.booleans()):
        body = body.rstrip(b"\r\n")
    return body, text


@both_parsers
@settings(max_examples=150, deadline=None)
@given(streams_cut_by_utf16_units(), split_points)
def test_any_split_of_a_stream_with_split_pairs_gives_the_same_text(
    loads: Loads, stream: tuple[bytes, str], points: list[int]
) -> None:
    body, text = stream
    for chunks in ([body], split_at(body, points)):
        decoder = StreamDecoder(json_loads=loads, strict=True)
        pieces: list[str] = []
        for chunk in chunks:
            pieces += decoder.feed(chunk)
        pieces += decoder.finish()
        assert "".join(pieces) == text
        assert all(pieces)  # no empty piece handed out
        assert decoder.anomalies == 0


# -- readable lines ------------------------------------------------------------------------


@both_parsers
@pytest.mark.parametrize(
    ("body", "readable", "anomalies"),
    [
        (b"", 0, 0),
        (b"\n\r\n\n", 0, 0),
        (b"<!DOCTYPE html>\n<html><body>Maintenance</body></html>\n", 0, 2),
        (b"not json", 0, 1),
        (b'{"data": {"message": "a"}}\n{"data": {"message": "b"}}', 2, 0),
        (b'{"data": {"message": ""}}\n', 1, 0),
        (b'{"data": {"content": ""}}\njunk\n', 1, 1),
        (b'data: {"data": {"message": "sse"}}\n', 1, 0),
        (b'{"data": {"message": "x"}}\n{}\n[1]\n{"data": {"message": "y"}}\n', 2, 2),
    ],
)
def test_readable_counts_the_lines_read_as_messages(
    loads: Loads, body: bytes, readable: int, anomalies: int
) -> None:
    for chunks in ([body], fragments(body, 1)):
        decoder = StreamDecoder(json_loads=loads)
        assert decoder.readable == 0
        for chunk in chunks:
            decoder.feed(chunk)
        decoder.finish()
        assert decoder.readable == readable
        assert decoder.anomalies == anomalies


@both_parsers
def test_an_in_band_error_is_a_readable_line(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    assert decoder.feed(b'{"code": 500, "message": "boom"}\n') == []
    assert decoder.readable == 1
    with pytest.raises(ServiceError):
        decoder.finish()


@both_parsers
def test_readable_counts_a_piece_held_for_its_pair(loads: Loads) -> None:
    decoder = StreamDecoder(json_loads=loads)
    assert decoder.feed(escaped(ROCKET_HIGH) + b"\n") == []
    assert decoder.readable == 1


# UTF-8-encoded surrogates (as CESU-8 writes them) are invalid UTF-8; json.loads(bytes)
# decodes them with "surrogatepass", so they must not slip past the pairing either.
ENCODED_HALVES = b'{"data": {"message": "a\xed\xa0\xbd"}}\n{"data": {"message": "\xed\xba\x80b"}}\n'


@both_parsers
def test_utf8_encoded_surrogates_never_reach_the_caller_as_lone_halves(loads: Loads) -> None:
    for chunks in ([ENCODED_HALVES], fragments(ENCODED_HALVES, 1)):
        pieces, error = decode(chunks, loads)
        assert error is None
        text = "".join(pieces)
        text.encode("utf-8")  # no lone surrogate: always encodable
        assert text.startswith("a")
        assert text.endswith("b")


@both_parsers
def test_utf8_encoded_surrogates_in_strict_mode(loads: Loads) -> None:
    pieces, error = decode([b'{"data": {"message": "x\xed\xa0\xbdy"}}\n'], loads, strict=True)
    assert error is not None
    assert error[0] is ProtocolError
    assert pieces == []
