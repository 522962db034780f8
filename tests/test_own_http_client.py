"""A caller's own httpx client (``http_client=``) gets every rule of a call, as the SDK's does.

What the escape hatch used to get wrong: ``first_piece`` applied to every read after the
first piece; ``total`` not held while a response head trickled in on the blocking client;
``close()`` from another thread not stopping a stream that waits for its head; a second
``asyncio.run`` failing with "Event loop is closed" (the SDK's own client). And an httpx2
client, which openai-python uses, is accepted as well.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from aichatonline import APIConnectionError, APITimeoutError, AsyncClient, Client, Timeout
from aichatonline.testing import Fault, LocalServer
from tests import hostile
from tests.helpers import PROMPT, REPLY, fast

pytestmark = pytest.mark.usefixtures("isolated")


def test_first_piece_holds_only_until_the_first_piece(server: LocalServer) -> None:
    # The first piece comes at once, then a silence longer than first_piece (shorter than
    # read): the answer is whole.
    server.inject(Fault(stall=0.8, stall_after=1))
    timeout = Timeout(read=5.0, first_piece=0.4)
    with httpx.Client() as own, Client(base_url=server.base_url, http_client=own) as client:
        assert client.complete(PROMPT, timeout=timeout) == REPLY


@pytest.mark.anyio
async def test_first_piece_holds_only_until_the_first_piece_async(
    server: LocalServer, anyio_backend: str
) -> None:
    server.inject(Fault(stall=0.8, stall_after=1))
    timeout = Timeout(read=5.0, first_piece=0.4)
    async with (
        httpx.AsyncClient() as own,
        AsyncClient(base_url=server.base_url, http_client=own) as client,
    ):
        assert await client.complete(PROMPT, timeout=timeout) == REPLY


TRICKLE = 0.2  # a byte every 0.2 s: well within the read limit
TOTAL = 1.0


def test_total_holds_while_a_head_trickles_through_your_client() -> None:
    chat = hostile.trickle(hostile.CHUNKED_HEAD, TRICKLE, give_up=6.0)
    with hostile.HostileServer(hostile.route(chat=chat)) as server, httpx.Client() as own:
        client = Client(
            base_url=server.base_url,
            http_client=own,
            timeout=Timeout(5.0, total=TOTAL),
            retry_policy=fast(0),
        )
        client.token = hostile.TOKEN  # the chat request opens the connection
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            client.complete(PROMPT)
        assert time.monotonic() - started < TOTAL + 0.5
    assert info.value.limit == "total"


def _close_soon(client: Client, after: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(after), client.close()))
    thread.start()
    return thread


@pytest.mark.parametrize("own", [False, True], ids=["default-client", "your-client"])
def test_close_from_another_thread_stops_a_stream_waiting_for_its_head(own: bool) -> None:
    # The answer never comes. On the SDK's own client the chat reuses the token's
    # connection (its transport knows that connection); yours opens a new one here.
    with hostile.HostileServer(hostile.route(chat=hostile.silent(give_up=10.0))) as server:
        http: Any = httpx.Client() if own else None
        client = Client(base_url=server.base_url, http_client=http, retry_policy=fast(0))
        if own:
            client.token = hostile.TOKEN
        else:
            client.get_token()
        closer = _close_soon(client, 0.3)
        started = time.monotonic()
        with pytest.raises(APIConnectionError, match="closed"):
            client.complete(PROMPT)
        assert time.monotonic() - started < 2.0
        closer.join()
        if http is not None:
            http.close()


def test_a_second_asyncio_run_starts_afresh(server: LocalServer) -> None:
    client = AsyncClient(base_url=server.base_url)
    assert asyncio.run(client.complete(PROMPT)) == REPLY
    assert asyncio.run(client.complete(PROMPT)) == REPLY  # the first loop's connections closed
    asyncio.run(client.aclose())


def test_an_httpx2_client_carries_the_requests(server: LocalServer) -> None:
    httpx2 = pytest.importorskip("httpx2")
    with httpx2.Client() as own, Client(base_url=server.base_url, http_client=own) as client:
        assert client.complete(PROMPT) == REPLY
        assert "".join(client.stream(PROMPT)) == REPLY


@pytest.mark.anyio
async def test_an_httpx2_async_client_carries_the_requests(
    server: LocalServer, anyio_backend: str
) -> None:
    httpx2 = pytest.importorskip("httpx2")
    async with (
        httpx2.AsyncClient() as own,
        AsyncClient(base_url=server.base_url, http_client=own) as client,
    ):
        assert await client.complete(PROMPT) == REPLY
