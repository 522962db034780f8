"""Token churn over loopback: concurrent streams through two revocations in a burst.

Every stream of a client shares one token. When the service revokes it, every stream in
flight hears of it; only the first to hear refreshes it, the others send again with the
new token without spending anything (``_core/call.py``, token generations). So a second
revocation in the same burst fails no stream (before, each stream had spent its one
refresh on the first and ended in ``AuthenticationError`` on the second).
"""

from __future__ import annotations

import anyio
import pytest

from aichatonline import AsyncClient
from aichatonline.testing import Fault, LocalServer
from tests.helpers import PROMPT, REPLY, arun_stream, fast

STREAMS = 8


@pytest.mark.anyio
async def test_concurrent_streams_survive_two_revocations_in_a_burst(
    server: LocalServer, anyio_backend: str
) -> None:
    async with AsyncClient(base_url=server.base_url, retry_policy=fast(max_retries=0)) as client:
        assert await client.complete(PROMPT) == REPLY  # the first token, shared from here on
        # The first revocation: every stream sends the revoked token and is refused.
        server.expire_tokens()
        # The second, in the same burst: a stream in the middle of the pack, sending the
        # token fetched after the first, has it revoked; the streams after it are refused.
        second = STREAMS // 2
        server.inject(*[Fault()] * (STREAMS + second), Fault(expire_token=True))
        outcomes: list[tuple[list[str], Exception | None]] = []

        async def one_stream() -> None:
            pieces, _, error = await arun_stream(client)
            outcomes.append((pieces, error))

        async with anyio.create_task_group() as group:
            for _ in range(STREAMS):
                group.start_soon(one_stream)
    assert [error for _, error in outcomes] == [None] * STREAMS
    assert all("".join(pieces) == REPLY for pieces, _ in outcomes)
    assert server.tokens_issued == 3  # the first, then one fetch for each revocation
    tokens = [request.headers["uniqueid"] for request in server.chat_requests[1:]]
    first, second_token, third = (tokens.count(token) for token in dict.fromkeys(tokens))
    assert first == STREAMS  # every stream was refused the first token
    # No fault after the second revocation: each stream ends with one request that
    # succeeds, with the second token or the third; the rest of the second's were refused.
    refused_second = second_token - (STREAMS - third)
    assert refused_second >= 2  # more than one stream heard of the second revocation
