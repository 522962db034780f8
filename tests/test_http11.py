"""The sans-IO HTTP/1.1 client codec: request heads out, response heads and bodies in.

``read`` is the reference driver, feeding chunks as the I/O layer does: into
``receive_head`` until the head is complete, then ``first_body`` once, then ``receive_body``
until ``done``; the peer closing is ``end_of_stream``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aichatonline._core.http11 import (
    MAX_HEAD,
    BadResponse,
    IncompleteResponse,
    ResponseHead,
    ResponseParser,
    request_head,
)
from aichatonline._exceptions import APIError, ProtocolError

TOKEN = "tok-SECRET-5b1e9c"


class Read:
    """What the parser made of a response."""

    def __init__(self, parser: ResponseParser, head: ResponseHead | None, body: bytes) -> None:
        self.parser = parser
        self.head = head
        self.body = body


def read(chunks: Iterable[bytes], method: str = "GET", *, close: bool = True) -> Read:
    """Feed ``chunks`` as the I/O layer would; ``close``: the peer closes after the last one."""
    parser = ResponseParser(method)
    head: ResponseHead | None = None
    body = b""
    for chunk in chunks:
        if head is None:
            head = parser.receive_head(chunk)
            if head is not None:
                body += parser.first_body()
        elif not parser.done:
            body += parser.receive_body(chunk)
    if close and not parser.done:
        parser.end_of_stream()
    return Read(parser, head, body)


def split_at(data: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def one_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def every_two_split(data: bytes) -> Iterable[list[bytes]]:
    for cut in range(len(data) + 1):
        yield [data[:cut], data[cut:]]


# -- request heads ------------------------------------------------------------------------------


def test_request_head() -> None:
    head = request_head(
        "POST",
        "/aichatonline/api/chat/gpt?x=1",
        [("Host", "example.com:8080"), ("Content-Length", "12"), ("UniqueId", "tok")],
    )
    assert head == (
        b"POST /aichatonline/api/chat/gpt?x=1 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Content-Length: 12\r\n"
        b"UniqueId: tok\r\n"
        b"\r\n"
    )


def test_request_head_without_headers() -> None:
    assert request_head("GET", "/", []) == b"GET / HTTP/1.1\r\n\r\n"


def test_request_head_keeps_order_and_repeats() -> None:
    head = request_head("GET", "/", [("B", "1"), ("A", "2"), ("B", "3")])
    assert head == b"GET / HTTP/1.1\r\nB: 1\r\nA: 2\r\nB: 3\r\n\r\n"


def test_request_head_is_read_by_h11_as_sent() -> None:
    headers = [
        ("Host", "[::1]:8123"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("Content-Type", "application/json"),
        ("Content-Length", "2"),
        ("Cookie", "a=1; b=2"),
    ]
    server = h11.Connection(h11.SERVER)
    server.receive_data(request_head("POST", "/p?canvas=-abc", headers) + b"{}")
    event = server.next_event()
    assert isinstance(event, h11.Request)
    assert event.method == b"POST"
    assert event.target == b"/p?canvas=-abc"
    assert event.http_version == b"1.1"
    assert [(name.decode(), value.decode()) for name, value in event.headers.raw_items()] == (
        headers
    )
    data = server.next_event()
    assert isinstance(data, h11.Data)
    assert data.data == b"{}"


# -- response heads -----------------------------------------------------------------------------


def test_head_and_content_length_body() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    result = read([response], close=False)
    assert result.head is not None
    assert result.head.status == 200
    assert result.head.version == "1.1"
    assert result.head.headers == {"content-type": "text/plain", "content-length": "5"}
    assert result.body == b"hello"
    assert result.parser.done
    assert result.parser.keep_alive
    assert result.parser.leftover == b""


def test_head_arrives_in_pieces() -> None:
    parser = ResponseParser()
    assert parser.receive_head(b"HTTP/1.1 200 OK\r\nContent-Le") is None
    assert parser.receive_head(b"ngth: 3\r\n\r") is None
    assert parser.head is None
    head = parser.receive_head(b"\nabc")
    assert head is not None
    assert parser.head is head
    assert parser.first_body() == b"abc"
    assert parser.done


def test_header_names_lower_case_values_trimmed() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nX-Thing:   v a l  \t\r\nCONTENT-LENGTH: 0\r\n\r\n"])
    assert result.head is not None
    assert result.head.headers == {"x-thing": "v a l", "content-length": "0"}


def test_repeated_headers_are_joined() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nX-A: 3\r\nContent-Length: 0\r\n\r\n"])
    assert result.head is not None
    assert result.head.headers["x-a"] == "1, 2, 3"


def test_set_cookie_values_are_kept_apart() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\n"
        b"Set-Cookie: a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT\r\n"
        b"Content-Length: 0\r\n"
        b"set-cookie: b=2; Path=/\r\n\r\n"
    )
    result = read([response])
    assert result.head is not None
    assert result.head.set_cookie == ["a=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "b=2; Path=/"]


def test_no_set_cookie() -> None:
    result = read([b"HTTP/1.1 204 No Content\r\n\r\n"])
    assert result.head is not None
    assert result.head.set_cookie == []


@pytest.mark.parametrize(
    ("line", "status", "version"),
    [
        (b"HTTP/1.1 200 OK", 200, "1.1"),
        (b"HTTP/1.1 200", 200, "1.1"),
        (b"HTTP/1.1 200 ", 200, "1.1"),
        (b"HTTP/1.0 404 Not Found Here", 404, "1.0"),
        (b"HTTP/1.1 599 Whatever \xe9", 599, "1.1"),
    ],
)
def test_status_lines(line: bytes, status: int, version: str) -> None:
    result = read([line + b"\r\nContent-Length: 0\r\n\r\n"])
    assert result.head is not None
    assert (result.head.status, result.head.version) == (status, version)


def test_latin1_header_values() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\nContent-Length: 0\r\n\r\n"])
    assert result.head is not None
    assert result.head.headers["x-name"] == "caf\xe9"


@pytest.mark.parametrize("line", [b"X-A: b\r", b"X-A: b\rc", b"X-A: \rb"], ids=repr)
def test_a_bare_cr_never_reaches_a_header_value(line: bytes) -> None:
    # RFC 9112 2.2: a bare CR is invalid, or replaced by a space; never passed on.
    response = b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n"
    try:
        result = read([response])
    except BadResponse:
        return
    assert result.head is not None
    assert "\r" not in result.head.headers["x-a"]


def test_bare_newlines() -> None:
    response = b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: b\n\nhi"
    for chunks in [[response], one_byte(response), *every_two_split(response)]:
        result = read(chunks)
        assert result.head is not None
        assert result.head.headers == {"content-length": "2", "x-a": "b"}
        assert result.body == b"hi"


def test_bare_newlines_in_chunked_framing() -> None:
    response = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n2;x=y\nde\n0\nT: 1\n\n"
    for chunks in [[response], one_byte(response)]:
        result = read(chunks, close=False)
        assert result.body == b"abcde"
        assert result.parser.done


# -- body framing -------------------------------------------------------------------------------


def test_content_length_zero() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], close=False)
    assert result.parser.done
    assert result.body == b""
    assert result.parser.keep_alive


def test_content_length_body_in_many_reads() -> None:
    parser = ResponseParser()
    parser.receive_head(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert parser.first_body() == b""
    assert not parser.done
    assert parser.receive_body(b"0123") == b"0123"
    assert not parser.done
    assert parser.receive_body(b"456789") == b"456789"
    assert parser.done


@pytest.mark.parametrize("value", [b"5, 5", b"5,5", b" 5 "])
def test_identical_content_lengths_are_one(value: bytes) -> None:
    result = read([b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nhello"])
    assert result.body == b"hello"


@pytest.mark.parametrize(
    "value",
    [
        b"5, 6",
        b"-1",
        b"+5",
        b"0x10",
        b"abc",
        b"",
        b"5 5",
        b"1.0",
        b"\xb2",
        b"\xb9\xb3",
        b"1" * 5000,
    ],
    ids=lambda value: repr(value[:12]),
)
def test_invalid_content_length(value: bytes) -> None:
    with pytest.raises(BadResponse, match="Content-Length"):
        read([b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nhello"])


def test_chunked_with_extensions_and_trailers() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"1 ; a=b ; c\r\n,\r\n"
        b"0006\r\n world\r\n"
        b"A\r\n0123456789\r\n"
        b"0;last\r\n"
        b"X-Trailer: t\r\n"
        b"X-Other: u\r\n"
        b"\r\n"
    )
    for chunks in [[response], one_byte(response), *every_two_split(response)]:
        result = read(chunks, close=False)
        assert result.body == b"hello, world0123456789"
        assert result.parser.done
        assert result.parser.keep_alive
        assert result.parser.leftover == b""


def test_chunked_without_trailers() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"])
    assert result.body == b"hi"
    assert result.parser.done


def test_chunked_is_the_last_coding_that_counts() -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    result = read([response], close=False)
    assert result.body == b"hi"
    assert result.parser.done


def test_a_coding_other_than_chunked_reads_to_the_close() -> None:
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcdef"
    result = read([response], close=False)
    assert not result.parser.done
    assert result.body == b"abcdef"  # not cut at the Content-Length
    result.parser.end_of_stream()
    assert result.parser.done
    assert not result.parser.keep_alive


def test_read_to_close() -> None:
    parser = ResponseParser()
    parser.receive_head(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\nab")
    assert parser.first_body() == b"ab"
    assert parser.receive_body(b"cd") == b"cd"
    assert not parser.done
    parser.end_of_stream()
    assert parser.done
    assert not parser.keep_alive


@pytest.mark.parametrize(
    ("method", "status"),
    [("HEAD", 200), ("HEAD", 404), ("GET", 204), ("GET", 304), ("POST", 304), ("CONNECT", 200)],
)
def test_responses_without_a_body(method: str, status: int) -> None:
    parser = ResponseParser(method)
    head = parser.receive_head(
        f"HTTP/1.1 {status} X\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    assert head is not None
    assert parser.first_body() == b""
    assert parser.done


def test_connect_refused_has_a_body() -> None:
    response = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope"
    result = read([response], "CONNECT", close=False)
    assert result.body == b"nope"
    assert result.parser.done


def test_bytes_after_a_connect_answer_are_leftover() -> None:
    parser = ResponseParser("CONNECT")
    parser.receive_head(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01")
    assert parser.first_body() == b""
    assert parser.done
    assert parser.leftover == b"\x16\x03\x01"


# -- interim responses --------------------------------------------------------------------------


def test_interim_responses_are_skipped() -> None:
    response = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    )
    for chunks in [[response], one_byte(response), *every_two_split(response)]:
        result = read(chunks)
        assert result.head is not None
        assert result.head.status == 200
        assert "link" not in result.head.headers
        assert result.body == b"hi"


def test_switching_protocols_is_refused() -> None:
    with pytest.raises(BadResponse, match="101"):
        read([b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"])


# -- keep-alive ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0", False),
        (b"HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 0", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0", True),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0", True),
        (b"HTTP/1.1 204 No Content", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 0", False),
    ],
)
def test_keep_alive(head: bytes, keep_alive: bool) -> None:
    body = b"0\r\n\r\n" if b"chunked" in head else b""
    result = read([head + b"\r\n\r\n" + body], close=False)
    assert result.parser.done
    assert result.parser.keep_alive is keep_alive


def test_a_body_read_to_the_close_never_keeps_alive() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nbody"])
    assert result.parser.done
    assert not result.parser.keep_alive


def test_te_and_cl_together_is_read_as_chunked() -> None:
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )
    result = read([response], close=False)
    assert result.body == b"hello"
    assert result.parser.done
    assert not result.parser.keep_alive


# -- leftover -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA", b"hello"),
        (b"HTTP/1.1 204 No Content\r\n\r\nEXTRA", b""),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nEXTRA",
            b"hello",
        ),
    ],
)
def test_bytes_past_the_end_are_leftover_and_end_keep_alive(response: bytes, body: bytes) -> None:
    for cut in range(response.index(b"\r\n\r\n") + 4, len(response) - 5):
        # the extra bytes come with the read that completes the message
        result = read([response[:cut], response[cut:]], close=False)
        assert result.body == body
        assert result.parser.done
        assert result.parser.leftover == b"EXTRA"
        assert not result.parser.keep_alive


def test_a_message_that_ends_exactly_leaves_nothing() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"], close=False)
    assert result.parser.leftover == b""
    assert result.parser.keep_alive


# -- the peer closing early ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n",
    ],
)
def test_end_of_stream_before_the_end(data: bytes) -> None:
    with pytest.raises(IncompleteResponse) as info:
        read([data] if data else [])
    assert isinstance(info.value, ConnectionError)
    assert not isinstance(info.value, APIError)  # the I/O layer turns it into ours


def test_end_of_stream_messages() -> None:
    parser = ResponseParser()
    with pytest.raises(IncompleteResponse, match="without answering"):
        parser.end_of_stream()
    parser = ResponseParser()
    parser.receive_head(b"HTTP/1.1 2")
    with pytest.raises(IncompleteResponse, match="head"):
        parser.end_of_stream()


def test_end_of_stream_after_a_complete_message_is_fine() -> None:
    result = read([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"], close=False)
    result.parser.end_of_stream()
    assert result.parser.done
    assert result.body == b"hi"


# -- malformed responses ------------------------------------------------------------------------

MALFORMED = [
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"http/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1  200 OK\r\n\r\n",
    b"ICY 200 OK\r\n\r\n",
    b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNo-Colon-Here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name : v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: b\r\n\tfolded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000001\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhelloo\r\n",
]


@pytest.mark.parametrize("data", MALFORMED, ids=repr)
def test_malformed_responses(data: bytes) -> None:
    for chunks in [[data], one_byte(data)]:
        with pytest.raises(BadResponse) as info:
            read(chunks)
        assert isinstance(info.value, ProtocolError)
        assert info.value.retryable  # like a dropped connection


def _with_token(template: bytes) -> bytes:
    return template.replace(b"TOKEN", TOKEN.encode())


LEAKY = [
    b"HTTP/1.1 2x0 TOKEN\r\n\r\n",
    b"TOKEN 200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTOKEN\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX TOKEN: v\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nA: b\r\n TOKEN\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: TOKEN\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, TOKEN\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nTOKEN\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloTOKEN\r\n",
    b"HTTP/1.1 200 OK\r\nX-Echo: TOKEN\r\n" + b"X-Pad: " + b"p" * MAX_HEAD + b"\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;TOKEN" + b"e" * 2000,
]


@pytest.mark.parametrize("template", LEAKY, ids=lambda t: repr(t[:60]))
def test_bad_response_messages_never_quote_the_bytes(template: bytes) -> None:
    data = _with_token(template)
    for chunks in [[data], split_at(data, range(0, len(data), 100))]:
        with pytest.raises(BadResponse) as info:
            read(chunks)
        error = info.value
        for text in (str(error), repr(error), *map(str, error.args)):
            assert TOKEN not in text
            assert "SECRET" not in text


# -- bounds -------------------------------------------------------------------------------------


def test_a_head_growing_past_the_bound_is_refused_before_it_ends() -> None:
    parser = ResponseParser()
    parser.receive_head(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Pad: " + b"p" * 1000 + b"\r\n"
    fed = 0
    refused = None
    while refused is None and fed <= 2 * MAX_HEAD:
        try:
            parser.receive_head(line)
        except BadResponse as exc:
            refused = exc
        fed += len(line)
    assert refused is not None
    assert "head" in str(refused)
    assert fed <= MAX_HEAD + 2 * len(line)


def test_a_head_just_under_the_bound_is_fine() -> None:
    start = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: "
    data = start + b"p" * (MAX_HEAD - len(start) - 4) + b"\r\n\r\n"
    assert len(data) == MAX_HEAD
    for chunks in [[data], split_at(data, range(0, len(data), 1000))]:
        result = read(chunks)
        assert result.head is not None
        assert len(result.head.headers["x-pad"]) == MAX_HEAD - len(start) - 4


def test_a_complete_head_over_the_bound_is_refused() -> None:
    # A head larger than MAX_HEAD is refused however it arrives, also in one read.
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: " + b"p" * MAX_HEAD + b"\r\n\r\n"
    with pytest.raises(BadResponse, match="head"):
        read(split_at(data, range(0, len(data), 1000)))
    with pytest.raises(BadResponse, match="head"):
        read([data])


def _chunked_head() -> ResponseParser:
    parser = ResponseParser()
    parser.receive_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    parser.first_body()
    return parser


def test_a_chunk_line_growing_past_the_bound_is_refused() -> None:
    parser = _chunked_head()
    parser.receive_body(b"5;ext=")
    for _ in range(10):
        parser.receive_body(b"e" * 100)  # 1006 bytes so far: still within the bound
    with pytest.raises(BadResponse, match="chunk-size line"):
        parser.receive_body(b"e" * 100)


@pytest.mark.parametrize("where", ["size line", "trailer"])
def test_a_complete_chunk_line_over_the_bound_is_refused(where: str) -> None:
    long = b"e" * 2000
    if where == "size line":
        data = b"5;ext=" + long + b"\r\nhello\r\n0\r\n\r\n"
    else:
        data = b"5\r\nhello\r\n0\r\nX-T: " + long + b"\r\n\r\n"
    with pytest.raises(BadResponse):
        _chunked_head().receive_body(data)


def test_a_huge_chunk_is_streamed_not_buffered() -> None:
    parser = _chunked_head()
    assert parser.receive_body(b"100000\r\n") == b""
    total = 0
    for _ in range(16):
        piece = parser.receive_body(b"x" * 65536)
        assert len(piece) == 65536  # handed out as it comes
        total += len(piece)
    assert total == 0x100000
    assert not parser.done
    parser.receive_body(b"\r\n0\r\n\r\n")
    assert parser.done


# -- properties ---------------------------------------------------------------------------------

token_chars = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
    min_size=1,
    max_size=10,
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


@st.composite
def valid_responses(draw: st.DrawFn) -> tuple[bytes, int, dict[str, str], list[str], bytes]:
    """A well-formed response, and the status, headers, Set-Cookie values and body it carries."""
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    status = draw(st.sampled_from([200, 201, 400, 404, 429, 500, 503]))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    lines = [f"HTTP/1.1 {status} Reason Phrase".encode()]
    interim = draw(st.integers(0, 2))
    prefix = b"".join(b"HTTP/1.1 100 Continue" + eol + eol for _ in range(interim))
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in draw(st.lists(st.tuples(token_chars, header_values), max_size=5)):
        key = "x-" + name.lower()
        lines.append(f"X-{name}: {value}".encode())
        headers[key] = value if key not in headers else f"{headers[key]}, {value}"
    for value in draw(st.lists(header_values, max_size=2)):
        lines.append(f"Set-Cookie: {value}".encode())
        cookies.append(value)
        headers["set-cookie"] = (
            value if "set-cookie" not in headers else (f"{headers['set-cookie']}, {value}")
        )
    if framing == "length":
        lines.append(f"Content-Length: {len(body)}".encode())
        headers["content-length"] = str(len(body))
        encoded = body
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        headers["transfer-encoding"] = "chunked"
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=6)))
        parts = [p for p in split_at(body, cuts) if p]
        encoded = b""
        for part in parts:
            extension = draw(st.sampled_from([b"", b";a=b", b" ; name"]))
            size = f"{len(part):x}".encode()
            encoded += (
                (size.upper() if draw(st.booleans()) else size) + extension + eol + part + eol
            )
        encoded += b"0" + eol
        if draw(st.booleans()):
            encoded += b"X-Trailer: t" + eol
        encoded += eol
    else:
        encoded = body
    raw = prefix + eol.join(lines) + eol + eol + encoded
    return raw, status, headers, cookies, body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_responses(), st.lists(st.integers(0, 2000), max_size=10))
def test_every_split_gives_the_same_head_and_body(
    response: tuple[bytes, int, dict[str, str], list[str], bytes], points: list[int]
) -> None:
    raw, status, headers, cookies, body = response
    for chunks in ([raw], split_at(raw, points)):
        result = read(chunks)
        assert result.head is not None
        assert result.head.status == status
        assert result.head.headers == headers
        assert result.head.set_cookie == cookies
        assert result.body == body
        assert result.parser.done
        assert result.parser.leftover == b""


@settings(max_examples=25, deadline=None)
@given(valid_responses())
def test_one_byte_reads_give_the_same_head_and_body(
    response: tuple[bytes, int, dict[str, str], list[str], bytes],
) -> None:
    raw, status, headers, _, body = response
    result = read(one_byte(raw))
    assert result.head is not None
    assert (result.head.status, result.head.headers, result.body) == (status, headers, body)


def _read_anything(chunks: list[bytes], method: str) -> None:
    started = time.perf_counter()
    with contextlib.suppress(BadResponse, IncompleteResponse):
        read(chunks, method)
    assert time.perf_counter() - started < 2.0


latin1 = st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=6).map(
    lambda text: text.encode("latin-1")
)
fuzzed_lines = st.one_of(
    st.builds(lambda name, value: name.encode() + b": " + value, token_chars, latin1),
    st.builds(lambda value: b"Content-Length: " + value, st.one_of(latin1, st.binary(max_size=6))),
    st.builds(lambda value: b"Transfer-Encoding: " + value, st.sampled_from([b"chunked", b"x"])),
    st.sampled_from([b"", b"HTTP/1.1 200 OK", b"HTTP/1.0 100 Continue", b"0", b"5;x", b"hello"]),
    st.binary(max_size=30),
)


@st.composite
def hostile_bytes(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    lines = draw(st.lists(fuzzed_lines, max_size=6))
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    head = b"HTTP/1.1 200 OK" + eol + eol.join(lines)
    if draw(st.booleans()):  # most often a complete head, then anything
        head += eol + eol + draw(st.binary(max_size=100))
    return head


@settings(max_examples=300, deadline=None)
@given(
    hostile_bytes(),
    st.lists(st.integers(0, 500), max_size=8),
    st.sampled_from(["GET", "POST", "HEAD", "CONNECT"]),
)
def test_any_bytes_raise_only_the_codec_s_two_errors(
    data: bytes, points: list[int], method: str
) -> None:
    _read_anything([data], method)
    _read_anything(split_at(data, points), method)


@settings(max_examples=100, deadline=None)
@given(valid_responses(), st.integers(0, 10_000), st.binary(min_size=1, max_size=3))
def test_a_corrupted_valid_response_raises_only_the_codec_s_two_errors(
    response: tuple[bytes, int, dict[str, str], list[str], bytes], where: int, junk: bytes
) -> None:
    raw = response[0]
    at = where % (len(raw) + 1)
    _read_anything([raw[:at] + junk + raw[at + len(junk) :]], "GET")


numberish = st.text(alphabet="0123456789 ,+-.\t\xb2\xb3\xb9\xbc", min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.one_of(numberish.map(lambda text: text.encode("latin-1")), st.binary(max_size=8)))
def test_any_content_length_value_is_a_length_or_a_bad_response(value: bytes) -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n" + b"x" * 20
    try:
        result = read([response], close=False)
    except BadResponse:
        return
    length = int(value.decode("latin-1").split(",")[0].strip(" \t"))
    assert result.body == b"x" * min(length, 20)
    assert result.parser.done is (length <= 20)
