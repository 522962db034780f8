"""The sharded transport under the default clients: its books stay right under churn.

``AsyncShardedTransport`` (and its generated twin ``ShardedTransport``) keeps a list of
shards and of those with room; these tests race requests against idle shards being closed
(by a sweep after ``keepalive_expiry``, or for being one spare too many), on asyncio, trio
and from threads, and check that every request succeeds and the books end balanced.
"""

from __future__ import annotations

import threading
import time

import anyio
import httpx
import pytest

from aichatonline._async.shards import AsyncShardedTransport
from aichatonline._sync.shards import ShardedTransport
from aichatonline.testing import TOKEN_PATH, LocalServer

pytestmark = pytest.mark.usefixtures("isolated")


def _url(server: LocalServer) -> str:
    return f"{server.base_url}{TOKEN_PATH}"


@pytest.mark.anyio
async def test_a_sweep_closing_idle_shards_never_hands_one_out(
    shared_server: LocalServer,
) -> None:
    # Three shards of one connection each go idle, expire, and two requests arrive at once:
    # the first one's sweep closes the expired shards while the second looks for room.
    transport = AsyncShardedTransport(
        shard_size=1,
        spare_shards=100,
        limits=httpx.Limits(max_connections=None, keepalive_expiry=0.3),
    )
    url = _url(shared_server)
    async with httpx.AsyncClient(transport=transport) as client:

        async def get() -> None:
            (await client.get(url)).raise_for_status()

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(get)
        assert (transport.shards, transport.in_flight) == (3, 0)
        await anyio.sleep(1.1)  # expired, and a sweep is due (they run once a second)
        async with anyio.create_task_group() as group:
            for _ in range(2):
                group.start_soon(get)
        assert transport.in_flight == 0
        assert 1 <= transport.shards <= 2  # the expired three closed, one or two new


@pytest.mark.anyio
async def test_many_requests_through_small_shards_leave_the_books_balanced(
    shared_server: LocalServer,
) -> None:
    transport = AsyncShardedTransport(
        shard_size=2,
        spare_shards=1,
        limits=httpx.Limits(max_connections=None, keepalive_expiry=0.05),
    )
    url = _url(shared_server)
    async with httpx.AsyncClient(transport=transport) as client:

        async def get(delay: float) -> None:
            await anyio.sleep(delay)
            (await client.get(url)).raise_for_status()

        for burst in range(2):
            async with anyio.create_task_group() as group:
                for index in range(24):
                    group.start_soon(get, (index % 7) * 0.01)
            assert transport.in_flight == 0, burst
            assert transport.shards <= 1  # spare shards beyond one were closed
            await anyio.sleep(1.1)


@pytest.mark.anyio
async def test_a_capped_transport_queues_in_the_least_loaded_shard(
    shared_server: LocalServer,
) -> None:
    transport = AsyncShardedTransport(
        shard_size=2, limits=httpx.Limits(max_connections=4, keepalive_expiry=5.0)
    )
    url = _url(shared_server)
    async with httpx.AsyncClient(transport=transport) as client:
        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(client.get, url)
        assert transport.shards == 2  # max_connections / shard_size, never more
        assert transport.in_flight == 0


def test_threads_taking_and_giving_back_shards_keep_the_books(shared_server: LocalServer) -> None:
    # The blocking twin is shared by threads: its books change under a lock.
    transport = ShardedTransport(
        shard_size=1,
        spare_shards=2,
        limits=httpx.Limits(max_connections=None, keepalive_expiry=0.2),
    )
    url = _url(shared_server)
    failures: list[BaseException] = []
    deadline = time.monotonic() + 2.5  # long enough for a few sweeps to race the requests

    def hammer(client: httpx.Client) -> None:
        while time.monotonic() < deadline:
            try:
                client.get(url).raise_for_status()
            except Exception as exc:  # noqa: BLE001 (collected and reported by the test)
                failures.append(exc)
                return
            time.sleep(0.001 * (threading.get_ident() % 5))

    with httpx.Client(transport=transport) as client:
        threads = [threading.Thread(target=hammer, args=(client,)) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert transport.in_flight == 0
        assert transport.shards <= 2
    assert transport.shards == 0  # closing the client closed every shard
