"""Every misbehaviour of a server ends in the exact text or a typed error, never a wrong text.

The fault table (``tests/faults.py``: statuses, drops, stalls, bad lines, token failures)
runs through ``stream()`` and ``complete()``; each outcome is the exact answer or the exact
error, with the exact number of requests, and the client stays usable. Then what the table
does not script: a dropped answer resumed where the caller is (even inside a piece), an
answer that changes between attempts, a refused connection, a 200 that has no readable line
(an HTML page, an empty or undecodable body), a ``Retry-After`` on a 503, and the text of
the lines themselves: a surrogate pair split across two pieces is re-paired, a surrogate
that can never be paired becomes U+FFFD (``strict=True``: ``ProtocolError``).

Every test runs on the blocking ``Client`` and on the ``AsyncClient`` under asyncio and trio
(``tests/faces.py``), against the bundled local server or a raw socket server
(``tests/hostile.py``).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aichatonline import (
    APIConnectionError,
    ProtocolError,
    ServerError,
    StreamInterrupted,
    Timeout,
)
from aichatonline.testing import Fault, LocalServer
from tests import hostile
from tests.faces import Api, backend_of
from tests.faults import COMPLETE_CASES, STREAM_CASES, Case, case_params, verify
from tests.helpers import (
    PROMPT,
    REPLY,
    caused_by,
    closed_port,
    fast,
    pool_active_requests,
    timeout_of,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


# --------------------------------------------------------------------------- the fault table


@pytest.mark.parametrize("case", case_params(STREAM_CASES))
async def test_fault_stream(api: Api, case: Case, server: LocalServer) -> None:
    server.inject(*case.faults)
    async with api.entered(api.kind(base_url=server.base_url, **case.client_options())) as client:
        outcome = await api.run(client.stream(PROMPT))
        verify(case, server, pieces=outcome.pieces, text=outcome.text, exc=outcome.error)
        assert pool_active_requests(client) == 0
        # The client stays usable after whatever happened.
        assert await api(client.complete(PROMPT)) == REPLY


@pytest.mark.parametrize("case", case_params(COMPLETE_CASES))
async def test_fault_complete(api: Api, case: Case, server: LocalServer) -> None:
    server.inject(*case.faults)
    async with api.entered(api.kind(base_url=server.base_url, **case.client_options())) as client:
        text: str | None = None
        exc: Exception | None = None
        try:
            text = await api(client.complete(PROMPT))
        except Exception as caught:  # noqa: BLE001 - any error, to check that it is one of ours
            exc = caught
        verify(case, server, pieces=None, text=text, exc=exc)
        assert pool_active_requests(client) == 0
        assert await api(client.complete(PROMPT)) == REPLY


# --------------------------------------------------------------------------- retries and resumes


async def test_stream_counts_its_retries(api: Api, client: Any, server: LocalServer) -> None:
    # A 503, then a drop after 3 pieces (resumed): two retries, one answer.
    server.inject(Fault(status=503), Fault(drop_after=3))
    outcome = await api.run(client.stream(PROMPT))
    assert outcome.error is None
    assert outcome.pieces == server.pieces_for(PROMPT)
    assert outcome.stream.retries == 2
    assert len(server.chat_requests) == 3


async def test_stream_counts_the_lines_it_skipped(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.inject(Fault(malformed=True))
    outcome = await api.run(client.stream(PROMPT))
    assert outcome.error is None
    assert outcome.pieces == server.pieces_for(PROMPT)  # the text is whole
    assert outcome.stream.anomalies > 0
    server.inject(Fault(malformed=True))
    assert (await api(client.complete(PROMPT, full=True))).anomalies == outcome.stream.anomalies


async def test_complete_restarts_a_dropped_stream_from_scratch(
    api: Api, client: Any, server: LocalServer
) -> None:
    # The second attempt gives another answer: complete() has shown nothing yet, so it returns
    # that answer whole, never a splice of the two.
    server.inject(Fault(drop_after=3), Fault(variant=True))
    assert await api(client.complete(PROMPT)) == f"Variant 1: {REPLY}"
    assert len(server.chat_requests) == 2


async def test_complete_gives_up_when_every_attempt_drops_at_the_same_point(
    api: Api, server: LocalServer
) -> None:
    # Every attempt breaks after the same two pieces. complete() starts each attempt over,
    # so re-reading those two pieces is no progress: max_retries=2 means three requests.
    server.always = Fault(drop_after=2)
    timeout = Timeout(total=1.5, read=10.0)
    async with api.entered(api.client(server, retry_policy=fast(2), timeout=timeout)) as client:
        with pytest.raises(StreamInterrupted) as info:
            await api(client.complete(PROMPT))
    assert len(server.chat_requests) == 3
    assert info.value.partial == "".join(server.pieces_for(PROMPT)[:2])
    assert isinstance(info.value.__cause__, APIConnectionError)
    assert timeout_of(info.value) is None  # the retries ran out, not the time


async def test_resumed_stream_skips_a_piece_that_ends_inside_the_delivered_text(
    api: Api, client: Any, server: LocalServer
) -> None:
    # The pieces of the first attempt are 8 characters; the re-sent answer is cut differently
    # (5 characters), so the resume point falls inside a piece.
    server.inject(Fault(drop_after=3))
    expected = server.pieces_for(PROMPT)
    stream = client.stream(PROMPT)
    pieces = [await api.next(stream) for _ in range(3)]
    server.piece_size = 5
    pieces += await api.drain(stream)
    assert pieces[:3] == expected[:3]
    assert "".join(pieces) == REPLY
    assert pieces[3] == REPLY[24:25]  # the rest of the piece the resume point cut
    assert len(server.chat_requests) == 2


# --------------------------------------------------------------------------- no connection


async def test_connection_refused_is_an_api_connection_error(api: Api) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with api.entered(api.kind(base_url=url, retry_policy=fast(1))) as client:
        with pytest.raises(APIConnectionError) as info:
            await api(client.complete(PROMPT))
        # The SDK's own connections: httpx's error (the socket's, underneath) is the cause.
        assert caused_by(info.value, OSError)
        assert not isinstance(info.value, StreamInterrupted)
        with pytest.raises(APIConnectionError):
            await api(client.get_token())
        with pytest.raises(APIConnectionError):
            await api.drain(client.stream(PROMPT))


async def test_connection_refused_through_your_own_http_client(api: Api) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with api.entered(api.http_client()) as own:
        client = api.kind(base_url=url, http_client=own, retry_policy=fast(1))
        async with api.entered(client):
            with pytest.raises(APIConnectionError) as info:
                await api(client.complete(PROMPT))
        # Your httpx client's error is the cause.
        assert isinstance(info.value.__cause__, httpx.ConnectError)


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
async def test_unreadable_200_is_a_protocol_error_retried_once(api: Api, body: str) -> None:
    with hostile.HostileServer(hostile.route(chat=UNREADABLE[body])) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(1))) as client:
            outcome = await api.run(client.stream(PROMPT))
        assert isinstance(outcome.error, ProtocolError), outcome
        assert outcome.text == ""
        assert len(server.chat_requests) == 2


async def test_unreadable_200_then_a_good_answer(api: Api) -> None:
    chat = [UNREADABLE["html"], hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(2))) as client:
            assert await api(client.complete(PROMPT)) == "Hello"
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


async def test_stream_counts_anomalies_over_all_attempts(api: Api) -> None:
    with hostile.HostileServer(hostile.route(chat=WITH_ANOMALIES)) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(2))) as client:
            outcome = await api.run(client.stream(PROMPT))
        assert outcome.error is None, outcome
        assert outcome.text == "Hello"
        assert outcome.stream.anomalies == 3
        assert len(server.chat_requests) == 2


# --------------------------------------------------------------------------- 503 Retry-After

RETRY_AFTER = 1  # seconds; the retry policy itself never waits (fast())


def _busy(seconds: str) -> hostile.Handler:
    return hostile.reply(503, b'{"error":"busy"}', {"Retry-After": seconds})


async def test_503_retry_after_is_honoured(api: Api) -> None:
    chat = [_busy(str(RETRY_AFTER)), hostile.stream(["Hel", "lo"])]
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(2))) as client:
            assert await api(client.complete(PROMPT)) == "Hello"
        first, second = server.chat_requests
        assert second.at - first.at >= RETRY_AFTER - 0.05


async def test_503_retry_after_too_long_is_not_waited_for(api: Api) -> None:
    with hostile.HostileServer(hostile.route(chat=_busy("3600"))) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(2))) as client:
            outcome = await api.run(client.stream(PROMPT))
        assert isinstance(outcome.error, ServerError), outcome
        assert outcome.error.retry_after == 3600
        assert len(server.chat_requests) == 1  # as a 429 asking for an hour: no retry
        assert outcome.seconds < 1


# --------------------------------------------------------------------------- surrogates


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


SPLIT_PAIR = lines_of("Rocket ", "\ud83d", "\ude80 launched")
REPAIRED = "Rocket \U0001f680 launched"
#: Halves that can never be paired: a high one before a non-surrogate, a low one first
#: in its piece, a high one at the very end.
LONE_HALVES = lines_of("a", "\ud83d", "b", "\ude80c", "\ud83d")
REPLACED = "a\ufffdb\ufffdc\ufffd"
#: A high half first, then a piece that cannot complete it: nothing readable was delivered.
LONE_FIRST = lines_of("\ud83d", "b")


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
async def test_split_surrogate_pair_is_repaired(api: Api, parser: str, strict: bool) -> None:
    with hostile.HostileServer(hostile.route(chat=SPLIT_PAIR)) as server:
        client = api.kind(base_url=server.base_url, retry_policy=fast(0), strict=strict)
        async with api.entered(client):
            outcome = await api.run(client.stream(PROMPT))
            assert await api(client.complete(PROMPT)) == REPAIRED
    assert outcome.error is None, outcome
    assert "".join(outcome.pieces) == outcome.text == REPAIRED
    assert_encodable(outcome.pieces)
    assert outcome.stream.anomalies == 0


async def test_unpairable_surrogates_become_replacement_characters(api: Api, parser: str) -> None:
    with hostile.HostileServer(hostile.route(chat=LONE_HALVES)) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(0))) as client:
            outcome = await api.run(client.stream(PROMPT))
    assert outcome.error is None, outcome
    assert "".join(outcome.pieces) == outcome.text == REPLACED
    assert_encodable(outcome.pieces)


async def test_unpairable_surrogate_is_a_protocol_error_in_strict_mode(
    api: Api, parser: str
) -> None:
    with hostile.HostileServer(hostile.route(chat=LONE_FIRST)) as server:
        client = api.kind(base_url=server.base_url, retry_policy=fast(0), strict=True)
        async with api.entered(client):
            outcome = await api.run(client.stream(PROMPT))
    assert isinstance(outcome.error, ProtocolError), outcome
    assert outcome.pieces == []
