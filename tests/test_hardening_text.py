"""Issue 8, item 3: text is never lost or changed silently.

- A surrogate pair split across two pieces (``"\\ud83d"`` then ``"\\ude80 launched"``, both
  valid JSON lines) is re-paired, with and without orjson; a surrogate that can never be
  paired becomes U+FFFD (``strict=True``: ``ProtocolError``).
- A 200 answer with no readable line (an HTML page, an empty body, a body in an encoding we
  did not ask for) is a ``ProtocolError``, retried once; ``stream.anomalies`` counts the
  lines skipped.
- A 503 with ``Retry-After`` is honoured as a 429's is.

Sync client, and async client on asyncio and trio, against ``tests/hostile.py`` servers.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator

import pytest

from aichatonline import AsyncClient, Client, ProtocolError, ServerError
from tests import hostile
from tests.helpers import fast

PROMPT = "Launch it"


pytestmark = pytest.mark.usefixtures("isolated")


@pytest.fixture(params=["orjson", "stdlib"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with orjson, then with the standard library's parser (orjson hidden)."""
    from aichatonline._core import decoder

    if request.param == "stdlib":
        monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson -> ImportError
    decoder.default_json_loads.cache_clear()
    yield str(request.param)
    decoder.default_json_loads.cache_clear()


def lines_of(*texts: str) -> hostile.Handler:
    """A chunked 200 answer whose lines carry ``texts`` (escaped JSON), one chunk each."""
    body = [hostile.chunk(hostile.ndjson(text)) for text in texts]
    return hostile.raw(hostile.CHUNKED_HEAD, *body, hostile.chunk(b""))


def assert_encodable(pieces: list[str]) -> None:
    """No lone surrogate reached the caller (it would fail later, printing or sending)."""
    for piece in pieces:
        piece.encode("utf-8")


# --------------------------------------------------------------------------- surrogates

SPLIT_PAIR = lines_of("Rocket ", "\ud83d", "\ude80 launched")
REPAIRED = "Rocket \U0001f680 launched"
#: Halves that can never be paired: a high one before a non-surrogate, a low one first
#: in its piece, a high one at the very end.
LONE_HALVES = lines_of("a", "\ud83d", "b", "\ude80c", "\ud83d")
REPLACED = "a\ufffdb\ufffdc\ufffd"


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_split_surrogate_pair_is_repaired_sync(parser: str, strict: bool) -> None:
    server = hostile.HostileServer(hostile.route(chat=SPLIT_PAIR))
    with server, Client(base_url=server.base_url, retry_policy=fast(0), strict=strict) as client:
        outcome = hostile.drain(client.stream(PROMPT))
        assert client.complete(PROMPT) == REPAIRED
    assert outcome.error is None, outcome
    assert "".join(outcome.pieces) == outcome.text == REPAIRED
    assert_encodable(outcome.pieces)
    assert outcome.stream.anomalies == 0  # type: ignore[attr-defined]


@pytest.mark.anyio
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
async def test_split_surrogate_pair_is_repaired_async(
    anyio_backend: str, parser: str, strict: bool
) -> None:
    with hostile.HostileServer(hostile.route(chat=SPLIT_PAIR)) as server:
        async with AsyncClient(
            base_url=server.base_url, retry_policy=fast(0), strict=strict
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
            assert await client.complete(PROMPT) == REPAIRED
    assert outcome.error is None, outcome
    assert "".join(outcome.pieces) == outcome.text == REPAIRED
    assert_encodable(outcome.pieces)
    assert outcome.stream.anomalies == 0  # type: ignore[attr-defined]


def test_unpairable_surrogates_become_replacement_characters_sync(parser: str) -> None:
    server = hostile.HostileServer(hostile.route(chat=LONE_HALVES))
    with server, Client(base_url=server.base_url, retry_policy=fast(0)) as client:
        outcome = hostile.drain(client.stream(PROMPT))
    assert outcome.error is None, outcome
    assert "".join(outcome.pieces) == outcome.text == REPLACED
    assert_encodable(outcome.pieces)


@pytest.mark.anyio
async def test_unpairable_surrogates_become_replacement_characters_async(
    anyio_backend: str, parser: str
) -> None:
    with hostile.HostileServer(hostile.route(chat=LONE_HALVES)) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(0)) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
    assert outcome.error is None, outcome
    assert "".join(outcome.pieces) == outcome.text == REPLACED
    assert_encodable(outcome.pieces)


#: A high half first, then a piece that cannot complete it: nothing readable was delivered.
LONE_FIRST = lines_of("\ud83d", "b")


def test_unpairable_surrogate_is_a_protocol_error_in_strict_mode_sync(parser: str) -> None:
    server = hostile.HostileServer(hostile.route(chat=LONE_FIRST))
    with server, Client(base_url=server.base_url, retry_policy=fast(0), strict=True) as client:
        outcome = hostile.drain(client.stream(PROMPT))
    assert isinstance(outcome.error, ProtocolError), outcome
    assert outcome.pieces == []


@pytest.mark.anyio
async def test_unpairable_surrogate_is_a_protocol_error_in_strict_mode_async(
    anyio_backend: str, parser: str
) -> None:
    with hostile.HostileServer(hostile.route(chat=LONE_FIRST)) as server:
        async with AsyncClient(
            base_url=server.base_url, retry_policy=fast(0), strict=True
        ) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
    assert isinstance(outcome.error, ProtocolError), outcome
    assert outcome.pieces == []


# --------------------------------------------------------------------------- unreadable 200s

_HTML = (
    b"<!DOCTYPE html><html><head><title>Down for maintenance</title></head>\n<body>\n"
    + (b"<p>We will be back soon.</p>\n" * 20)
    + b"</body></html>\n"
)
_GARBAGE = random.Random(8).randbytes(2048)  # not brotli: bytes nobody can read

UNREADABLE = {
    "html": hostile.reply(200, _HTML, {"Content-Type": "text/html; charset=utf-8"}),
    "empty": hostile.reply(200, b"", {"Content-Type": "application/x-ndjson"}),
    "empty-chunked": hostile.raw(hostile.CHUNKED_HEAD, hostile.chunk(b"")),
    "brotli": hostile.reply(
        200, _GARBAGE, {"Content-Type": "application/x-ndjson", "Content-Encoding": "br"}
    ),
}


@pytest.mark.parametrize("body", list(UNREADABLE))
def test_unreadable_200_is_a_protocol_error_retried_once_sync(body: str) -> None:
    with hostile.HostileServer(hostile.route(chat=UNREADABLE[body])) as server:
        with Client(base_url=server.base_url, retry_policy=fast(1)) as client:
            outcome = hostile.drain(client.stream(PROMPT))
        assert isinstance(outcome.error, ProtocolError), outcome
        assert outcome.text == ""
        assert len(server.chat_requests) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("body", list(UNREADABLE))
async def test_unreadable_200_is_a_protocol_error_retried_once_async(
    anyio_backend: str, body: str
) -> None:
    with hostile.HostileServer(hostile.route(chat=UNREADABLE[body])) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(1)) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
        assert isinstance(outcome.error, ProtocolError), outcome
        assert outcome.text == ""
        assert len(server.chat_requests) == 2


def test_unreadable_200_then_a_good_answer_sync() -> None:
    chat = [UNREADABLE["html"], hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        with Client(base_url=server.base_url, retry_policy=fast(2)) as client:
            assert client.complete(PROMPT) == "Hello"
        assert len(server.chat_requests) == 2


@pytest.mark.anyio
async def test_unreadable_200_then_a_good_answer_async(anyio_backend: str) -> None:
    chat = [UNREADABLE["html"], hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(2)) as client:
            assert await client.complete(PROMPT) == "Hello"
        assert len(server.chat_requests) == 2


_JUNK = hostile.chunk(b"<html>not a line of the stream</html>\n")
_NO_TEXT = hostile.chunk(b'{"code":200,"data":{}}\n')
#: Two skipped lines in the first attempt, which breaks off; one more in the second.
WITH_ANOMALIES = [
    hostile.raw(hostile.CHUNKED_HEAD, _JUNK, hostile.chunk(hostile.ndjson("Hel")), _NO_TEXT),
    hostile.raw(
        hostile.CHUNKED_HEAD,
        hostile.chunk(hostile.ndjson("Hel")),
        _JUNK,
        hostile.chunk(hostile.ndjson("lo")),
        hostile.chunk(b""),
    ),
]


def test_stream_counts_anomalies_over_all_attempts_sync() -> None:
    with hostile.HostileServer(hostile.route(chat=WITH_ANOMALIES)) as server:
        with Client(base_url=server.base_url, retry_policy=fast(2)) as client:
            outcome = hostile.drain(client.stream(PROMPT))
        assert outcome.error is None, outcome
        assert outcome.text == "Hello"
        assert outcome.stream.anomalies == 3  # type: ignore[attr-defined]
        assert len(server.chat_requests) == 2


@pytest.mark.anyio
async def test_stream_counts_anomalies_over_all_attempts_async(anyio_backend: str) -> None:
    with hostile.HostileServer(hostile.route(chat=WITH_ANOMALIES)) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(2)) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
        assert outcome.error is None, outcome
        assert outcome.text == "Hello"
        assert outcome.stream.anomalies == 3  # type: ignore[attr-defined]
        assert len(server.chat_requests) == 2


# --------------------------------------------------------------------------- 503 Retry-After

RETRY_AFTER = 1  # seconds; the retry policy itself never waits (fast())


def _busy(seconds: str) -> hostile.Handler:
    return hostile.reply(503, b'{"error":"busy"}', {"Retry-After": seconds})


def _check_waited(server: hostile.HostileServer) -> None:
    first, second = server.chat_requests
    assert second.at - first.at >= RETRY_AFTER - 0.05


def test_503_retry_after_is_honoured_sync() -> None:
    chat = [_busy(str(RETRY_AFTER)), hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        with Client(base_url=server.base_url, retry_policy=fast(2)) as client:
            assert client.complete(PROMPT) == "Hello"
        _check_waited(server)


@pytest.mark.anyio
async def test_503_retry_after_is_honoured_async(anyio_backend: str) -> None:
    chat = [_busy(str(RETRY_AFTER)), hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(2)) as client:
            assert await client.complete(PROMPT) == "Hello"
        _check_waited(server)


def test_503_retry_after_too_long_is_not_waited_for_sync() -> None:
    with hostile.HostileServer(hostile.route(chat=_busy("3600"))) as server:
        with Client(base_url=server.base_url, retry_policy=fast(2)) as client:
            outcome = hostile.drain(client.stream(PROMPT))
        assert isinstance(outcome.error, ServerError), outcome
        assert outcome.error.retry_after == 3600
        assert len(server.chat_requests) == 1  # as a 429 asking for an hour: no retry
        assert outcome.seconds < 1


@pytest.mark.anyio
async def test_503_retry_after_too_long_is_not_waited_for_async(anyio_backend: str) -> None:
    with hostile.HostileServer(hostile.route(chat=_busy("3600"))) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(2)) as client:
            outcome = await hostile.adrain(client.stream(PROMPT))
        assert isinstance(outcome.error, ServerError), outcome
        assert outcome.error.retry_after == 3600
        assert len(server.chat_requests) == 1
        assert outcome.seconds < 1
