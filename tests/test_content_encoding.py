"""Content codings, undone by httpx: every body decoded, a decompression bomb refused.

The SDK asks for gzip and deflate (the original's browser-like headers). httpx undoes any
list of them, in order, for the chat answer, the token and error bodies alike; a coding
that was not asked for is an unreadable answer, never text read from undecoded bytes. One
network read that expands past ``EXPANSION_LIMIT`` is a decompression bomb: a typed error,
not memory. Run on the blocking client, asyncio and trio, against raw socket servers.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import pytest

from aichatonline import BlockedError, ProtocolError, StreamInterrupted
from aichatonline._core import EXPANSION_LIMIT
from aichatonline.testing._faults import CLOUDFLARE_PAGE
from tests import hostile
from tests.faces import Api, backend_of
from tests.helpers import assert_ours

pytestmark = pytest.mark.usefixtures("isolated")

MiB = 1024 * 1024


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


def line(text: str) -> bytes:
    return json.dumps({"code": 200, "data": {"message": text}}).encode() + b"\n"


def deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def encoded(body: bytes, coding: str) -> bytes:
    """``body`` with the codings of a ``Content-Encoding`` value applied, in order."""
    for name in (part.strip() for part in coding.split(",")):
        body = gzip.compress(body) if name == "gzip" else deflate(body)
    return body


def answer(body: bytes, coding: str, status: int = 200) -> hostile.Handler:
    return hostile.reply(status, body, {"Content-Encoding": coding})


async def complete(api: Api, server: hostile.HostileServer, **options: Any) -> str:
    client = api.client(server, max_retries=0, timeout=30, **options)  # type: ignore[arg-type]
    try:
        return str(await api(client.complete("hi")))
    finally:
        await api.close(client)


TEXTS = [f"piece {i} é😀 " * 3 for i in range(5_000)]
BODY = b"".join(line(text) for text in TEXTS)


@pytest.mark.anyio
@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate, gzip", "gzip, gzip"])
async def test_a_compressed_answer_is_exact(api: Api, coding: str) -> None:
    chat = answer(encoded(BODY, coding), coding)
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        assert await complete(api, server) == "".join(TEXTS)


@pytest.mark.anyio
async def test_a_gzipped_token_body_is_read(api: Api) -> None:
    token = json.dumps({"code": 200, "data": hostile.TOKEN}).encode()
    with hostile.HostileServer(hostile.route(token_=answer(gzip.compress(token), "gzip"))) as s:
        assert await complete(api, s) == "Hello"
        assert s.chat_requests[0].headers["uniqueid"] == hostile.TOKEN


@pytest.mark.anyio
async def test_a_gzipped_cloudflare_page_is_recognised(api: Api) -> None:
    chat = answer(gzip.compress(CLOUDFLARE_PAGE), "gzip", status=403)
    with (
        hostile.HostileServer(hostile.route(chat=chat)) as server,
        pytest.raises(BlockedError) as info,
    ):
        await complete(api, server)
    assert_ours(info.value)
    assert len(server.chat_requests) == 1  # a block is not retried


@pytest.mark.anyio
async def test_a_coding_not_asked_for_is_unreadable(api: Api) -> None:
    chat = answer(BODY, "br")  # not asked for: httpx would pass the bytes on undecoded
    with (
        hostile.HostileServer(hostile.route(chat=chat)) as server,
        pytest.raises(ProtocolError, match="'br'"),
    ):
        await complete(api, server)


def bomb(block: bytes, blocks: int) -> bytes:
    """``blocks`` copies of ``block``, gzipped (about a thousandfold for a plain block)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return b"".join(compressor.compress(block) for _ in range(blocks)) + compressor.flush()


#: 64 MiB of well-formed answer lines, in well under 1 MiB of gzip: one read of it expands
#: past the limit.
ANSWER_BOMB = bomb(line("ab") * 30_000, 64)


@pytest.mark.anyio
async def test_a_gzip_bomb_is_a_protocol_error(api: Api) -> None:
    assert len(ANSWER_BOMB) < MiB < EXPANSION_LIMIT
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    chat = hostile.raw(head % len(ANSWER_BOMB), ANSWER_BOMB)
    # A ProtocolError; or, when a first smaller read gave some text already, the
    # StreamInterrupted that carries it, for the same reason.
    errors = (ProtocolError, StreamInterrupted)
    with (
        hostile.HostileServer(hostile.route(chat=chat)) as server,
        pytest.raises(errors, match="decompression bomb") as info,
    ):
        await complete(api, server)
    assert_ours(info.value)
