"""The token: fetched once per client, shared by every call, refreshed when it must be.

- The first call fetches it; a warm chat is one round trip on a reused connection;
  ``get_token()`` caches and ``refresh=True`` replaces it; a token kept from an earlier
  session can be set; a stale, expired or revoked one is replaced once, also in the middle
  of a resumed stream; ``with_options()`` copies share it and the connections.
- Single flight: many callers at once (200 threads or tasks) share one fetch, and every
  answer is exact; a failed fetch is shared by its waiters too (a 503 whose retries ran
  out, a 403 no retry mends). But a waiter is never handed a failure the fetcher brought
  on itself (its own ``Timeout(total=...)``, its own ``max_retries=0``): it fetches for
  itself.

Every test runs on the blocking ``Client`` (threads) and on the ``AsyncClient`` (tasks)
under asyncio and trio (``tests/faces.py``), against the bundled local server or a raw
socket server (``tests/hostile.py``). Revocations in a burst: ``test_token_churn.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from aichatonline import (
    APITimeoutError,
    AuthenticationError,
    InvalidRequestError,
    ServerError,
    Timeout,
)
from aichatonline.testing import Fault, LocalServer
from tests import hostile
from tests.faces import Api, backend_of
from tests.helpers import PROMPT, REPLY, SAFE_TIMEOUT, fast, pool_active_requests

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


# --------------------------------------------------------------------------- one client, one token


async def test_token_is_fetched_once_and_a_warm_chat_is_one_round_trip(
    api: Api, client: Any, server: LocalServer
) -> None:
    assert client.token is None
    assert await api(client.complete(PROMPT)) == REPLY
    token = client.token
    assert token is not None
    server.reset()
    for _ in range(3):
        assert await api(client.complete(PROMPT)) == REPLY
        assert (await api.run(client.stream(PROMPT))).text == REPLY
    assert len(server.requests) == 6
    assert all(r.path == "/aichatonline/api/chat/gpt" for r in server.requests)
    assert {r.headers["uniqueid"] for r in server.requests} == {token}
    assert server.tokens_issued == 0
    # The connection is reused: one open on the server.
    assert server.open_connections == 1


async def test_get_token_caches_and_refreshes(api: Api, client: Any, server: LocalServer) -> None:
    token = await api(client.get_token())
    assert token == client.token
    assert await api(client.get_token()) == token
    assert server.tokens_issued == 1
    fresh = await api(client.get_token(refresh=True))
    assert fresh != token
    assert client.token == fresh
    assert server.tokens_issued == 2
    await api(client.complete(PROMPT))
    assert server.chat_requests[0].headers["uniqueid"] == fresh


async def test_token_can_be_set_from_an_earlier_session(api: Api, server: LocalServer) -> None:
    async with api.entered(api.client(server)) as first:
        kept = await api(first.get_token())
    async with api.entered(api.client(server)) as second:
        second.token = kept
        assert await api(second.complete(PROMPT)) == REPLY
    assert server.tokens_issued == 1
    assert server.chat_requests[0].headers["uniqueid"] == kept


async def test_a_stale_token_is_replaced_once(api: Api, client: Any, server: LocalServer) -> None:
    client.token = "stale-token-from-yesterday"
    assert await api(client.complete(PROMPT)) == REPLY
    assert client.token != "stale-token-from-yesterday"
    assert [r.headers["uniqueid"] for r in server.chat_requests] == [
        "stale-token-from-yesterday",
        client.token,
    ]
    assert server.tokens_issued == 1


async def test_expired_tokens_are_refreshed_mid_session(
    api: Api, client: Any, server: LocalServer
) -> None:
    assert await api(client.complete(PROMPT)) == REPLY
    server.expire_tokens()
    outcome = await api.run(client.stream(PROMPT))
    assert outcome.error is None
    assert outcome.pieces == server.pieces_for(PROMPT)
    assert server.tokens_issued == 2
    assert len(server.chat_requests) == 3


async def test_token_ttl_expiry_is_handled(api: Api, server: LocalServer) -> None:
    server.token_ttl = 0.2
    async with api.entered(api.client(server)) as client:
        assert await api(client.complete(PROMPT)) == REPLY
        await anyio.sleep(0.3)
        assert await api(client.complete(PROMPT)) == REPLY
    assert server.tokens_issued == 2
    assert len(server.chat_requests) == 3  # the rejected one, then its retry


async def test_token_ttl_expiry_during_a_resumed_stream(
    api: Api, client: Any, server: LocalServer
) -> None:
    # The stream drops after 3 pieces; by the time it is re-sent, the token has expired: a
    # fresh token, and the resumed answer goes on exactly where the caller is.
    server.token_ttl = 0.3
    server.inject(Fault(drop_after=3))
    stream = client.stream(PROMPT)
    pieces = [await api.next(stream) for _ in range(3)]
    await anyio.sleep(0.4)
    pieces += await api.drain(stream)
    assert pieces == server.pieces_for(PROMPT)
    assert server.tokens_issued == 2
    assert len(server.chat_requests) == 3


async def test_with_options_shares_the_token_and_the_connections(
    api: Api, client: Any, server: LocalServer
) -> None:
    patient = client.with_options(max_retries=5, timeout=Timeout(total=10.0))
    assert (patient.max_retries, client.max_retries) == (5, 2)
    assert patient.timeout.total == 10.0
    assert client.timeout == SAFE_TIMEOUT
    assert await api(client.complete(PROMPT)) == REPLY
    assert await api(patient.complete(PROMPT)) == REPLY
    assert patient.token == client.token
    assert server.tokens_issued == 1
    assert server.open_connections == 1
    with pytest.raises(InvalidRequestError):
        client.with_options(max_retries=1, retry_policy=fast())


# --------------------------------------------------------------------------- many callers at once


async def test_200_callers_share_one_token_fetch(api: Api, server: LocalServer) -> None:
    server.pieces = 3
    # A slow token endpoint: every caller arrives while the first fetch is under way.
    server.inject(Fault(endpoint="token", stall=0.3))
    expected = "".join(server.pieces_for(PROMPT))
    async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast())) as client:
        results = await api.concurrently([lambda: client.complete(PROMPT)] * 200)
        assert pool_active_requests(client) == 0
    assert results == [expected] * 200
    assert server.tokens_issued == 1
    assert len(server.token_requests) == 1
    assert len(server.chat_requests) == 200


async def test_200_concurrent_streams_are_all_exact(api: Api, server: LocalServer) -> None:
    server.pieces = 4
    expected = server.pieces_for(PROMPT)
    async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast())) as client:
        await api(client.get_token())

        async def one() -> list[str]:
            outcome = await api.run(client.stream(PROMPT))
            assert outcome.error is None
            return outcome.pieces

        results = await api.concurrently([one] * 200)
        assert pool_active_requests(client) == 0
    assert results == [expected] * 200
    assert len(server.chat_requests) == 200
    assert len({r.json()["conversationId"] for r in server.chat_requests}) == 200


async def test_callers_waiting_on_a_failed_token_fetch_share_its_error(
    api: Api, server: LocalServer
) -> None:
    server.always = Fault(endpoint="token", status=503, retry_after="0.2")
    async with api.entered(api.client(server)) as client:

        async def call() -> BaseException | None:
            try:
                await api(client.get_token())
            except ServerError as exc:
                return exc
            return None

        outcomes = await api.concurrently([call] * 10)
    assert all(isinstance(outcome, ServerError) for outcome in outcomes)
    assert len(server.token_requests) == 3  # one flight: the first try and two retries


# --------------------------------------------------------------------------- whose failure it is


def _token_requests(server: hostile.HostileServer) -> list[hostile.Request]:
    return [r for r in server.requests if r.path == hostile.TOKEN_PATH]


async def _two_callers(
    api: Api, server: hostile.HostileServer, first: Callable[[], Any], second: Callable[[], Any]
) -> tuple[Any, Any]:
    """Run ``first`` in the background and, once its token request reached the server (so
    that ``second`` waits for that fetch), ``second``: their results or errors."""
    outcomes: dict[str, Any] = {}

    async def run(name: str, call: Callable[[], Any]) -> None:
        try:
            outcomes[name] = await api(call())
        except Exception as exc:  # noqa: BLE001 (the test looks at it)
            outcomes[name] = exc

    async with api.background(lambda: run("first", first)):
        assert await api.wait_until(lambda: len(_token_requests(server)) >= 1)
        await run("second", second)
    return outcomes["first"], outcomes["second"]


#: A token endpoint that takes 1 s to answer the first request, then answers at once.
SLOW_FIRST_TOKEN = [hostile.delayed(1.0, hostile.token()), hostile.token()]
#: The first token request gets a 503 (after 0.3 s), the next ones a token.
TOKEN_503_FIRST = [hostile.delayed(0.3, hostile.reply(503)), hostile.token()]
#: Every token request is refused with a 403 (after 0.3 s): no retry mends it.
TOKEN_403 = hostile.delayed(0.3, hostile.reply(403))
IMPATIENT = Timeout(5, total=0.3)


async def test_the_fetchers_own_timeout_is_not_handed_to_a_patient_waiter(api: Api) -> None:
    with hostile.HostileServer(hostile.route(token_=SLOW_FIRST_TOKEN)) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(2))) as c:
            impatient, patient = await _two_callers(
                api,
                server,
                lambda: c.complete(PROMPT, timeout=IMPATIENT, max_retries=0),
                lambda: c.complete(PROMPT),
            )
    assert isinstance(impatient, APITimeoutError), repr(impatient)
    assert impatient.limit == "total", repr(impatient)
    assert patient == "Hello", f"the patient caller got the impatient one's failure: {patient!r}"
    assert len(_token_requests(server)) == 2  # the patient caller fetched for itself


async def test_a_failure_of_a_fetcher_without_retries_is_not_shared(api: Api) -> None:
    with hostile.HostileServer(hostile.route(token_=TOKEN_503_FIRST)) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(2))) as c:
            no_retries, with_retries = await _two_callers(
                api, server, lambda: c.complete(PROMPT, max_retries=0), lambda: c.complete(PROMPT)
            )
    assert isinstance(no_retries, ServerError), repr(no_retries)
    assert with_retries == "Hello", f"the caller with retries got a 503: {with_retries!r}"
    assert len(_token_requests(server)) == 2


async def test_a_refusal_is_shared_by_callers_with_the_same_limits(api: Api) -> None:
    with hostile.HostileServer(hostile.route(token_=TOKEN_403)) as server:
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=fast(2))) as c:
            first, second = await _two_callers(
                api, server, lambda: c.complete(PROMPT), lambda: c.complete(PROMPT)
            )
    for outcome in (first, second):
        assert isinstance(outcome, AuthenticationError), repr(outcome)
        assert outcome.status_code == 403
    assert len(_token_requests(server)) == 1  # one fetch for both callers
