"""Per-call options, ``with_options()`` and ``complete(..., full=True)``, on the blocking
``Client`` and the ``AsyncClient`` (asyncio and trio), against the local server.

- ``timeout=``, ``max_retries=`` and ``extra_headers=`` apply to one call of ``stream()``,
  ``complete()`` or ``chat.completions.create()`` (streamed or not) and to no other; bad
  values fail before any I/O.
- ``client.with_options(...)`` is a client with other settings sharing the connections, the
  token and the open streams (the httpx / openai convention), so closing either one closes
  both: the connections are one pool.
- ``complete(..., full=True)`` is a ``Completion`` describing that one call.

Every test runs as ``[sync]`` (the blocking ``Client``, called from the test's event loop,
which is harmless: the server has its own thread), ``[asyncio]`` and ``[trio]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from aichatonline import (
    DEFAULT_MODEL,
    APIConnectionError,
    APITimeoutError,
    Completion,
    InvalidRequestError,
    ProtocolError,
    RetryPolicy,
    ServerError,
    StreamInterrupted,
    Timeout,
)
from aichatonline.testing import Fault, LocalServer
from tests.faces import Api, backend_of
from tests.helpers import (
    PROMPT,
    REPLY,
    SAFE_TIMEOUT,
    assert_ours,
    assert_timed_out,
    await_server,
    fast,
    pool_active_requests,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


#: The four calls that take per-call options.
CALLS = ["stream", "complete", "create", "create-streamed"]


def start(client: Any, how: str, **options: Any) -> Any:
    """Make the call ``how`` (no I/O yet for the streams)."""
    if how == "stream":
        return client.stream(PROMPT, **options)
    if how == "complete":
        return client.complete(PROMPT, **options)
    messages = [{"role": "user", "content": PROMPT}]
    streamed = how == "create-streamed"
    return client.chat.completions.create(
        model=DEFAULT_MODEL, messages=messages, stream=streamed, **options
    )


async def answer(api: Api, client: Any, how: str, **options: Any) -> str:
    """The text of one call made as ``how``."""
    result = await api(start(client, how, **options))
    if how == "stream":
        return "".join(await api.drain(result))
    if how == "complete":
        assert type(result) is str
        return str(result)
    if how == "create":
        return str(result.choices[0].message.content)
    chunks = await api.drain(result)
    assert chunks[-1].choices[0].finish_reason == "stop"
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks)


async def failure(api: Api, client: Any, how: str, **options: Any) -> Exception:
    """The error one call made as ``how`` ends with."""
    try:
        await answer(api, client, how, **options)
    except Exception as exc:  # noqa: BLE001 - checked by the caller
        assert_ours(exc)
        return exc
    raise AssertionError("the call did not fail")


# --------------------------------------------------------------------------- per call


@pytest.mark.parametrize("how", CALLS)
async def test_a_timeout_for_one_call(api: Api, client: Any, server: LocalServer, how: str) -> None:
    assert await answer(api, client, how) == REPLY  # the token is fetched
    server.always = Fault(stall=0.3)  # every answer starts after 0.3 s of silence
    short = Timeout(read=0.1, total=10.0)
    exc = await failure(api, client, how, timeout=short)
    assert isinstance(exc, APITimeoutError)
    assert_timed_out(exc, "read", 0.1)
    assert len(server.chat_requests) == 1 + 3  # retried as a read timeout is, then given up
    assert client.timeout == SAFE_TIMEOUT  # the client's own setting is untouched
    # The client's default (10 s of silence allowed) still gets the same slow answer.
    assert await answer(api, client, how) == REPLY
    # A plain number and an httpx.Timeout are taken as the client takes them.
    server.always = None
    assert await answer(api, client, how, timeout=5) == REPLY
    assert await answer(api, client, how, timeout=httpx.Timeout(5.0)) == REPLY
    assert await answer(api, client, how, timeout=None) == REPLY


@pytest.mark.parametrize("how", CALLS)
async def test_max_retries_for_one_call(
    api: Api, client: Any, server: LocalServer, how: str
) -> None:
    server.inject(Fault(status=503))
    exc = await failure(api, client, how, max_retries=0)
    assert isinstance(exc, ServerError)
    assert exc.status_code == 503
    assert len(server.chat_requests) == 1
    assert client.max_retries == 2
    server.inject(Fault(status=503))
    assert await answer(api, client, how) == REPLY  # the client's default retries it
    assert len(server.chat_requests) == 3
    # More than the client's setting, for one call.
    server.inject(*[Fault(status=503)] * 4)
    assert await answer(api, client, how, max_retries=4) == REPLY
    assert len(server.chat_requests) == 8
    assert not server.pending_faults


@pytest.mark.parametrize("how", CALLS)
async def test_extra_headers_for_one_call(
    api: Api, client: Any, server: LocalServer, how: str
) -> None:
    server.inject(Fault(status=503))
    text = await answer(api, client, how, extra_headers={"X-Trace": "trace-1", "X-Other": "2"})
    assert text == REPLY
    first, retried = server.chat_requests
    for request in (first, retried):  # every attempt of the call carries them
        assert request.headers["x-trace"] == "trace-1"
        assert request.headers["x-other"] == "2"
        assert request.headers["user-agent"]  # beside the SDK's own headers
        assert request.headers["uniqueid"]
    assert await answer(api, client, how) == REPLY
    assert "x-trace" not in server.chat_requests[-1].headers  # one call only


@pytest.mark.parametrize("name", ["User-Agent", "user-agent", "ACCEPT"])
async def test_extra_headers_replace_the_sdks_header_of_that_name(
    api: Api, client: Any, server: LocalServer, name: str
) -> None:
    """A header given per call replaces the SDK's header of the same name, whatever its case
    (HTTP names are case-insensitive); the request must not carry both."""
    await api(client.complete(PROMPT, extra_headers={name: "probe/1"}))
    assert server.chat_requests[-1].headers[name.lower()] == "probe/1"


async def test_a_content_type_given_per_call_is_treated_the_same_in_any_case(
    api: Api, client: Any, server: LocalServer
) -> None:
    """The SDK sends JSON and sets ``Content-Type`` itself. Whether a caller's
    ``Content-Type`` is refused or replaced, its case must not matter, and the request must
    never carry two."""

    async def outcome(name: str) -> str:
        try:
            await api(client.complete(PROMPT, extra_headers={name: "text/plain"}))
        except InvalidRequestError as exc:
            return f"refused ({exc.field})"
        return server.chat_requests[-1].headers["content-type"]

    outcomes = [await outcome("Content-Type"), await outcome("content-type")]
    assert outcomes[0] == outcomes[1], outcomes
    assert "," not in outcomes[1], outcomes


BAD_CALL_OPTIONS = [
    pytest.param({"timeout": "soon"}, "timeout", id="timeout-string"),
    pytest.param({"timeout": -1}, "timeout", id="timeout-negative"),
    pytest.param({"timeout": float("nan")}, "timeout", id="timeout-nan"),
    pytest.param({"max_retries": -1}, "max_retries", id="max-retries-negative"),
    pytest.param({"max_retries": True}, "max_retries", id="max-retries-bool"),
    pytest.param({"max_retries": 1.5}, "max_retries", id="max-retries-float"),
    pytest.param({"extra_headers": "X-Trace: 1"}, "extra_headers", id="headers-a-string"),
    pytest.param({"extra_headers": {"X Trace": "1"}}, "extra_headers", id="header-name"),
    pytest.param({"extra_headers": {"X-Trace": "a\r\nb"}}, "extra_headers", id="header-crlf"),
    pytest.param({"extra_headers": {"X-Trace": 1}}, "extra_headers", id="header-value-int"),
    pytest.param({"extra_headers": {"UniqueId": "mine"}}, "extra_headers", id="token-header"),
    pytest.param({"extra_headers": {"Host": "evil"}}, "extra_headers", id="host-header"),
]


@pytest.mark.parametrize("how", CALLS)
@pytest.mark.parametrize(("options", "field"), BAD_CALL_OPTIONS)
async def test_bad_per_call_options_fail_before_any_io(
    api: Api, client: Any, server: LocalServer, how: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        # Raised by the call itself: a stream is not even handed out.
        await api(start(client, how, **options))
    assert info.value.field is not None
    assert info.value.field.split(".")[0] == field  # "timeout.connect" names the limit
    assert server.requests == []
    assert await answer(api, client, how) == REPLY  # the client is fine


# --------------------------------------------------------------------------- with_options


async def test_with_options_gives_other_settings_and_leaves_the_original_alone(
    api: Api, client: Any, server: LocalServer
) -> None:
    policy = RetryPolicy(max_retries=4, initial_backoff=0, max_backoff=0, jitter=0)
    original = (client.timeout, client.retry_policy, client.strict, client.base_url)
    clone = client.with_options(timeout=Timeout(7.0), retry_policy=policy, strict=True)
    assert type(clone) is type(client)
    assert clone is not client
    assert (clone.timeout, clone.retry_policy, clone.strict) == (Timeout(7.0), policy, True)
    assert clone.base_url == client.base_url
    assert (client.timeout, client.retry_policy, client.strict, client.base_url) == original
    # Not given: kept from the original.
    same = client.with_options()
    assert (same.timeout, same.retry_policy, same.strict) == original[:3]
    fewer = client.with_options(max_retries=0)
    assert fewer.max_retries == 0
    assert fewer.retry_policy == dataclasses.replace(client.retry_policy, max_retries=0)
    assert client.max_retries == 2
    # Settings changed on the clone later stay on the clone.
    clone.max_retries = 1
    clone.timeout = 3
    assert client.max_retries == 2
    assert client.timeout == SAFE_TIMEOUT


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"timeout": "soon"}, id="timeout"),
        pytest.param({"max_retries": -1}, id="max-retries"),
        pytest.param({"strict": "yes"}, id="strict"),
        pytest.param({"retry_policy": 3}, id="retry-policy"),
        pytest.param({"max_retries": 1, "retry_policy": fast()}, id="both"),
    ],
)
async def test_with_options_checks_its_values(
    api: Api, client: Any, server: LocalServer, options: dict[str, Any]
) -> None:
    before = (client.timeout, client.retry_policy, client.strict)
    with pytest.raises(InvalidRequestError):
        client.with_options(**options)
    assert (client.timeout, client.retry_policy, client.strict) == before
    assert server.requests == []


async def test_with_options_shares_the_connections_and_the_token(
    api: Api, client: Any, server: LocalServer
) -> None:
    patient = client.with_options(max_retries=5)
    assert await api(patient.complete(PROMPT)) == REPLY
    assert await api(client.complete(PROMPT)) == REPLY
    assert server.tokens_issued == 1
    assert patient.token == client.token is not None
    assert server.open_connections == 1  # one pool: one keep-alive connection
    # A token refreshed by one is the other's too.
    server.expire_tokens()
    assert await api(patient.complete(PROMPT)) == REPLY
    assert server.tokens_issued == 2
    assert client.token == patient.token
    assert await api(client.complete(PROMPT)) == REPLY
    assert server.tokens_issued == 2
    # Setting the token on one sets it on both.
    client.token = None
    assert patient.token is None


async def test_first_calls_of_a_client_and_its_clone_share_one_token_fetch(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.inject(Fault(endpoint="token", stall=0.2))  # both calls wait on the same fetch
    clone = client.with_options(max_retries=4)
    results: list[str] = []

    def call(which: Any) -> Callable[[], Any]:
        if api.sync:
            return lambda: results.append(which.complete(PROMPT))

        async def acall() -> None:
            results.append(await which.complete(PROMPT))

        return acall

    await api.both(call(client), call(clone))
    assert results == [REPLY, REPLY]
    assert server.tokens_issued == 1
    assert len(server.token_requests) == 1


async def test_a_clones_settings_apply_to_its_calls_only(
    api: Api, client: Any, server: LocalServer
) -> None:
    hasty = client.with_options(max_retries=0)
    server.inject(Fault(status=503))
    with pytest.raises(ServerError):
        await api(hasty.complete(PROMPT))
    server.inject(Fault(status=503))
    assert await api(client.complete(PROMPT)) == REPLY
    # timeout
    impatient = client.with_options(timeout=Timeout(read=0.1, total=10.0))
    server.always = Fault(stall=0.3)
    with pytest.raises(APITimeoutError):
        await api(impatient.complete(PROMPT))
    assert await api(client.complete(PROMPT)) == REPLY
    server.always = None
    # strict
    strict = client.with_options(strict=True)
    server.inject(Fault(malformed=True))
    with pytest.raises(ProtocolError):
        await api(strict.complete(PROMPT))
    server.inject(Fault(malformed=True))
    result = await api(client.complete(PROMPT, full=True))
    assert result.text == REPLY
    assert result.anomalies > 0


async def test_closing_a_clone_closes_the_shared_connections(
    api: Api, client: Any, server: LocalServer
) -> None:
    """Documented here: a clone is the same pool, so closing either closes both (as with
    openai's ``with_options``); a caller closes the client it made, once."""
    clone = client.with_options(max_retries=0)
    assert await api(clone.complete(PROMPT)) == REPLY
    await api.close(clone)
    assert clone.is_closed
    assert client.is_closed
    with pytest.raises(InvalidRequestError, match="closed"):
        await api(client.complete(PROMPT))
    with pytest.raises(InvalidRequestError, match="closed"):
        client.stream(PROMPT)
    assert len(server.chat_requests) == 1
    await api.close(client)  # closing again is harmless


async def test_closing_the_original_ends_a_clones_running_stream(
    api: Api, client: Any, paced: LocalServer
) -> None:
    clone = client.with_options(max_retries=4)
    stream = clone.stream(PROMPT)
    pieces = [await api.next(stream), await api.next(stream)]
    await api.close(client)
    with pytest.raises(StreamInterrupted) as info:
        await api.drain(stream)
    assert info.value.partial == "".join(pieces) == "".join(paced.pieces_for(PROMPT)[:2])
    assert isinstance(info.value.__cause__, APIConnectionError)
    assert await await_server(paced, lambda s: s.disconnects == 1)


# --------------------------------------------------------------------------- full results


async def test_complete_full_returns_a_completion(
    api: Api, client: Any, server: LocalServer
) -> None:
    result = await api(client.complete(PROMPT, full=True))
    assert isinstance(result, Completion)
    assert result.text == str(result) == f"{result}" == REPLY
    (request,) = server.chat_requests
    assert result.conversation_id == request.json()["conversationId"]
    assert (result.finish_reason, result.retries, result.anomalies) == ("stop", 0, 0)
    assert result.headers["content-type"].startswith("text/event-stream")
    assert result.headers["server"] == "aichatonline-testing"
    assert all(name == name.lower() for name in result.headers)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.text = "changed"  # type: ignore[misc]
    # Without it (or with it false): the text, a plain str.
    plain = await api(client.complete(PROMPT))
    assert type(plain) is str
    assert plain == REPLY
    assert type(await api(client.complete(PROMPT, full=False))) is str


async def test_a_completion_describes_its_own_call(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.inject(Fault(status=503))
    retried = await api(client.complete(PROMPT, full=True))
    assert (retried.text, retried.retries) == (REPLY, 1)
    # The headers of the last attempt (the 503's were JSON, the answer's an event stream).
    assert retried.headers["content-type"].startswith("text/event-stream")
    # The next call counts its own retries, not the client's.
    assert (await api(client.complete(PROMPT, full=True))).retries == 0
    server.inject(Fault(drop_after=3), Fault(status=429, retry_after="0"))
    restarted = await api(client.complete(PROMPT, full=True))
    assert (restarted.text, restarted.retries) == (REPLY, 2)
    server.inject(Fault(malformed=True))
    skipped = await api(client.complete(PROMPT, full=True))
    assert skipped.text == REPLY
    assert skipped.anomalies > 0
    # A conversation id passed in is the one sent and reported.
    named = await api(client.complete(PROMPT, full=True, conversation_id="conv-12345"))
    assert named.conversation_id == "conv-12345"
    assert server.chat_requests[-1].json()["conversationId"] == "conv-12345"
    ids = {request.json()["conversationId"] for request in server.chat_requests}
    assert len(ids) == 5  # each call its own conversation unless told otherwise


async def test_full_results_and_per_call_options_together(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.inject(Fault(status=503), Fault(status=503), Fault(status=503))
    result = await api(
        client.complete(PROMPT, full=True, max_retries=3, timeout=5, extra_headers={"X-Trace": "t"})
    )
    assert (result.text, result.retries) == (REPLY, 3)
    assert all(r.headers["x-trace"] == "t" for r in server.chat_requests)
    assert pool_active_requests(client) == 0
