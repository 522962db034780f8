"""``client.chat.completions.create()``: OpenAI's shape, on the blocking ``Client`` and on the
``AsyncClient`` (asyncio and trio), against the local server.

What is checked: the ``ChatCompletion`` and the ``ChatCompletionChunk`` stream (their fields,
and that openai's own models parse their ``to_dict()``), leaving a stream early, the resume
and error guarantees of ``stream()`` under the fault matrix, and the honest handling of
OpenAI's parameters (ignored knobs, refused ones that fail before any request).

Every test runs three times: ``[sync]`` drives the blocking ``Client`` (its calls block the
test's event loop, which is harmless: the server runs in its own thread), ``[asyncio]`` and
``[trio]`` the ``AsyncClient``. ``Api`` hides the one difference (``await`` or not).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio
import openai.types.chat as openai_chat
import pytest

from aichatonline import (
    DEFAULT_MODEL,
    MODELS,
    APIStatusError,
    AsyncChatCompletionStream,
    AuthenticationError,
    ChatCompletionStream,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    StreamInterrupted,
    format_prompt,
)
from aichatonline._core import MODEL_ALIASES
from aichatonline.testing import Fault, LocalServer
from aichatonline.types import ChatCompletion, ChatCompletionChunk
from tests.faces import END, Api, backend_of
from tests.helpers import (
    PROMPT,
    REPLY,
    assert_ours,
    await_server,
    pool_active_requests,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]

USER = [{"role": "user", "content": PROMPT}]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


async def create(api: Api, client: Any, **params: Any) -> Any:
    params.setdefault("model", DEFAULT_MODEL)
    params.setdefault("messages", USER)
    return await api(client.chat.completions.create(**params))


def parses_as_openai_completion(completion: ChatCompletion) -> None:
    data = completion.to_dict()
    parsed = openai_chat.ChatCompletion.model_validate(data)
    assert parsed.model_dump(mode="json", exclude_unset=True) == data
    assert parsed.id == completion.id
    assert parsed.choices[0].message.content == completion.choices[0].message.content
    assert parsed.usage is None


def parses_as_openai_chunk(chunk: ChatCompletionChunk) -> None:
    data = chunk.to_dict()
    parsed = openai_chat.ChatCompletionChunk.model_validate(data)
    assert parsed.model_dump(mode="json", exclude_unset=True) == data
    assert parsed.id == chunk.id


def contents(chunks: list[ChatCompletionChunk]) -> list[str]:
    """The text pieces of a chunk list (the role chunk and the finish chunk carry none)."""
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str | None]:
    return [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]


# --------------------------------------------------------------------------- stream=False


async def test_create_returns_a_chat_completion(api: Api, client: Any, server: LocalServer) -> None:
    before = int(time.time())
    completion = await create(api, client, stream=False)
    after = int(time.time())
    assert isinstance(completion, ChatCompletion)
    assert completion.id.startswith("chatcmpl-")
    assert len(completion.id) > len("chatcmpl-")
    assert completion.object == "chat.completion"
    assert before <= completion.created <= after
    assert completion.model == "gpt-4o-mini"
    (choice,) = completion.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == REPLY
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    assert completion.usage is None
    assert completion.system_fingerprint is None
    parses_as_openai_completion(completion)
    (request,) = server.chat_requests
    assert request.json()["prompt"] == format_prompt(USER)
    # Each answer has its own id.
    again = await create(api, client)
    assert again.id != completion.id
    assert again.choices[0].message.content == REPLY


@pytest.mark.parametrize("model", [*MODELS, *MODEL_ALIASES])
async def test_models_and_aliases_resolve_to_the_providers_model(
    api: Api, client: Any, model: str
) -> None:
    completion = await create(api, client, model=model)
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == REPLY
    stream = await create(api, client, model=model, stream=True)
    chunks = await api.drain(stream)
    assert {chunk.model for chunk in chunks} == {"gpt-4o-mini"}


async def test_the_whole_conversation_goes_as_one_prompt(
    api: Api, client: Any, server: LocalServer
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Tell me "}, {"type": "text", "text": "more"}],
        },
    ]
    completion = await create(api, client, messages=messages)
    prompt = "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Tell me more\nAssistant:"
    assert server.chat_requests[-1].json()["prompt"] == prompt == format_prompt(messages)
    assert completion.choices[0].message.content == server.reply_for(prompt)


async def test_errors_of_a_whole_answer_raise_from_create(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.inject(Fault(status=400, body=b"bad prompt"))
    with pytest.raises(APIStatusError) as info:
        await create(api, client)
    assert info.value.status_code == 400
    assert_ours(info.value)


# --------------------------------------------------------------------------- stream=True


async def test_create_streams_chat_completion_chunks(
    api: Api, client: Any, server: LocalServer
) -> None:
    before = int(time.time())
    stream = await create(api, client, stream=True)
    if api.sync:
        assert isinstance(stream, ChatCompletionStream)
        assert iter(stream) is stream
    else:
        assert isinstance(stream, AsyncChatCompletionStream)
        assert stream.__aiter__() is stream
        assert not hasattr(stream, "__iter__")
    assert server.chat_requests == []  # the request goes out when iteration starts
    chunks = await api.drain(stream)
    after = int(time.time())

    first, *middle, last = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert first.choices[0].finish_reason is None
    assert first.choices[0].delta.to_dict() == {"role": "assistant", "content": ""}
    assert [c.choices[0].delta.content for c in middle] == server.pieces_for(PROMPT)
    assert all(c.choices[0].delta.role is None for c in middle)
    assert all(c.choices[0].finish_reason is None for c in middle)
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None
    assert last.choices[0].delta.to_dict() == {}
    assert "".join(contents(chunks)) == REPLY == stream.text

    assert len({chunk.id for chunk in chunks}) == 1
    assert first.id.startswith("chatcmpl-")
    assert len({chunk.created for chunk in chunks}) == 1
    assert before <= first.created <= after
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk.model for chunk in chunks} == {"gpt-4o-mini"}
    assert all(chunk.usage is None for chunk in chunks)
    assert all(len(chunk.choices) == 1 and chunk.choices[0].index == 0 for chunk in chunks)
    for chunk in chunks:
        parses_as_openai_chunk(chunk)
        assert "usage" not in chunk.to_dict()  # only the include_usage chunk carries it
    assert stream.retries == 0
    assert await api.next(stream) is END  # and it stays ended
    assert len(server.chat_requests) == 1


async def test_include_usage_adds_a_last_chunk_without_choices(
    api: Api, client: Any, server: LocalServer
) -> None:
    stream = await create(api, client, stream=True, stream_options={"include_usage": True})
    chunks = await api.drain(stream)
    *text_chunks, usage_chunk = chunks
    assert text_chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(contents(text_chunks)) == REPLY
    assert usage_chunk.choices == []
    assert usage_chunk.usage is None
    assert usage_chunk.id == text_chunks[0].id
    assert usage_chunk.created == text_chunks[0].created
    data = usage_chunk.to_dict()
    assert data["choices"] == []
    assert data["usage"] is None
    parses_as_openai_chunk(usage_chunk)
    assert await api.next(stream) is END
    # Without it (or with it false) there is no such chunk.
    plain = await api.drain(
        await create(api, client, stream=True, stream_options={"include_usage": False})
    )
    assert all(chunk.choices for chunk in plain)
    assert plain[-1].choices[0].finish_reason == "stop"


async def test_a_stream_read_to_its_end_gives_the_connection_back(
    api: Api, client: Any, server: LocalServer
) -> None:
    async with api.entered(await create(api, client, stream=True)) as stream:
        chunks = await api.drain(stream)
    assert "".join(contents(chunks)) == REPLY
    await api.close(stream)  # closing again is harmless
    assert pool_active_requests(client) == 0
    completion = await create(api, client)
    assert completion.choices[0].message.content == REPLY
    assert server.disconnects == 0
    assert server.open_connections == 1  # the token fetch and both answers: one connection


@pytest.mark.parametrize("how", ["close", "context-manager"])
async def test_leaving_a_stream_early_releases_its_connection(
    api: Api, client: Any, paced: LocalServer, how: str
) -> None:
    server = paced
    stream = await create(api, client, stream=True)
    chunks = []
    if how == "close":
        for _ in range(3):
            chunks.append(await api.next(stream))
        await api.close(stream)
    else:
        async with api.entered(stream):
            for _ in range(3):
                chunks.append(await api.next(stream))
    assert contents(chunks) == server.pieces_for(PROMPT)[:2]
    assert await await_server(server, lambda s: s.disconnects == 1)
    assert pool_active_requests(client) == 0
    assert await api.next(stream) is END  # no "stop" chunk: the answer did not end
    assert stream.text == "".join(server.pieces_for(PROMPT)[:2])
    server.delay = 0.0
    completion = await create(api, client)
    assert completion.choices[0].message.content == "".join(server.pieces_for(PROMPT))


async def test_closing_while_another_reader_waits_does_not_claim_a_finished_answer(
    api: Api, client: Any, paced: LocalServer
) -> None:
    """Closed from another thread or task: the reader stops, with no ``finish_reason="stop"``
    chunk (the answer did not end; ``stop`` would tell the reader it had the whole text)."""
    server = paced
    stream = await create(api, client, stream=True)
    chunks: list[ChatCompletionChunk] = []
    if api.sync:
        three = threading.Event()
        errors: list[BaseException] = []

        def read() -> None:
            try:
                for chunk in stream:
                    chunks.append(chunk)
                    if len(chunks) == 3:
                        three.set()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert three.wait(5)
        stream.close()
        reader.join(5)
        assert not reader.is_alive()
        assert errors == []
    else:
        arrived = anyio.Event()

        async def aread() -> None:
            async for chunk in stream:
                chunks.append(chunk)
                if len(chunks) == 3:
                    arrived.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(aread)
                await arrived.wait()
                await stream.aclose()
    assert len(contents(chunks)) < len(server.pieces_for(PROMPT))
    assert "stop" not in finish_reasons(chunks), [c.to_dict() for c in chunks[-2:]]
    assert await await_server(server, lambda s: s.disconnects == 1)


async def test_an_error_before_the_first_piece_raises_at_the_first_next(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.inject(Fault(status=404))
    stream = await create(api, client, stream=True)
    assert server.requests == []
    with pytest.raises(APIStatusError) as info:
        await api.next(stream)  # not a role chunk first: the error comes first
    assert info.value.status_code == 404
    assert stream.text == ""
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param((Fault(status=404),), id="before-the-first-piece"),
        pytest.param((Fault(drop_after=3), Fault(variant=True)), id="interrupted-mid-stream"),
    ],
)
async def test_a_stream_that_raised_yields_nothing_more(
    api: Api, client: Any, server: LocalServer, faults: tuple[Fault, ...]
) -> None:
    """After its error, a stream is over: going on must not produce a role chunk or a
    ``finish_reason="stop"`` chunk, which would dress a failed answer up as a finished one."""
    server.inject(*faults)
    stream = await create(api, client, stream=True)
    _, error = await api.collect(stream)
    assert isinstance(error, (APIStatusError, StreamInterrupted)), repr(error)
    after = [await api.next(stream), await api.next(stream)]
    shown = [c if c is END else (c.choices[0].delta, c.choices[0].finish_reason) for c in after]
    assert after == [END, END], shown


# --------------------------------------------------------------------------- the fault matrix


@dataclass(frozen=True)
class Scenario:
    """A misbehaviour, and what ``create()`` makes of it (streamed and not)."""

    id: str
    faults: tuple[Fault, ...]
    error: type[Exception] | None = None
    #: Pieces a streamed caller got before the error.
    delivered: int = 0
    chat_requests: int = 2
    tokens: int = 1
    retries: int = 1
    #: Whether ``stream=False`` (which starts a dropped answer over) has the same outcome.
    whole_too: bool = True


SCENARIOS = [
    Scenario("drop-after-3", (Fault(drop_after=3),)),
    Scenario("reset-after-3", (Fault(drop_after=3, drop_reset=True),)),
    Scenario("drop-before-the-first-piece", (Fault(drop_after=0),)),
    Scenario("429-then-ok", (Fault(status=429, retry_after="0"),)),
    Scenario("503-then-ok", (Fault(status=503),)),
    # A rejected token is fetched again, once; that is not a retry.
    Scenario("401-token-expired", (Fault(expire_token=True),), tokens=2, retries=0),
    Scenario(
        "divergent-resume",
        (Fault(drop_after=3), Fault(variant=True)),
        error=StreamInterrupted,
        delivered=3,
        whole_too=False,
    ),
    Scenario(
        "500-exhausted", (Fault(status=500),) * 3, error=ServerError, chat_requests=3, retries=2
    ),
    Scenario(
        "429-exhausted",
        (Fault(status=429, retry_after="0"),) * 3,
        error=RateLimitError,
        chat_requests=3,
        retries=2,
    ),
    Scenario(
        "401-twice",
        (Fault(expire_token=True),) * 2,
        error=AuthenticationError,
        tokens=2,
        retries=0,
    ),
    Scenario(
        "drops-exhausted-mid-stream",
        (Fault(drop_after=2),) * 3,
        error=StreamInterrupted,
        delivered=2,
        chat_requests=3,
        retries=2,
    ),
]


def check_requests(server: LocalServer, scenario: Scenario) -> None:
    assert len(server.chat_requests) == scenario.chat_requests
    assert len(server.token_requests) == server.tokens_issued == scenario.tokens
    bodies = [request.json() for request in server.chat_requests]
    assert len({body["conversationId"] for body in bodies}) == 1  # one call, one conversation
    assert {body["prompt"] for body in bodies} == {PROMPT}
    assert not server.pending_faults


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.id) for s in SCENARIOS])
async def test_a_streamed_create_under_faults(
    api: Api, client: Any, server: LocalServer, scenario: Scenario
) -> None:
    server.inject(*scenario.faults)
    expected = server.pieces_for(PROMPT)
    stream = await create(api, client, stream=True)
    chunks, error = await api.collect(stream)
    if scenario.error is None:
        assert error is None, repr(error)
        assert contents(chunks) == expected  # resumed: no piece lost, none repeated
        assert "".join(contents(chunks)) == REPLY == stream.text
        assert finish_reasons(chunks) == [None] * (len(chunks) - 1) + ["stop"]
    else:
        assert isinstance(error, scenario.error), repr(error)
        assert_ours(error)
        assert contents(chunks) == expected[: scenario.delivered]
        assert "stop" not in finish_reasons(chunks)
        if scenario.delivered:
            assert chunks[0].choices[0].delta.role == "assistant"
        if isinstance(error, StreamInterrupted):
            assert error.partial == "".join(expected[: scenario.delivered]) == stream.text
    assert len({chunk.id for chunk in chunks}) <= 1
    assert stream.retries == scenario.retries
    check_requests(server, scenario)


@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.id) for s in SCENARIOS if s.whole_too])
async def test_a_whole_create_under_faults(
    api: Api, client: Any, server: LocalServer, scenario: Scenario
) -> None:
    server.inject(*scenario.faults)
    if scenario.error is None:
        completion = await create(api, client)
        assert completion.choices[0].message.content == REPLY
        assert completion.choices[0].finish_reason == "stop"
    else:
        with pytest.raises(scenario.error) as info:
            await create(api, client)
        assert_ours(info.value)
        if isinstance(info.value, StreamInterrupted):
            expected = "".join(server.pieces_for(PROMPT)[: scenario.delivered])
            assert info.value.partial == expected
    check_requests(server, scenario)


# --------------------------------------------------------------------------- parameters

#: OpenAI parameters accepted and ignored (the service has no such knob).
HARMLESS: dict[str, Any] = {
    "temperature": 0.2,
    "top_p": 0.9,
    "max_tokens": 3,
    "max_completion_tokens": 3,
    "user": "user-1234",
    "stop": ["You"],
    "seed": 7,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "logit_bias": {"50256": -100},
    "metadata": {"purpose": "test"},
    "store": False,
    "service_tier": "auto",
    "reasoning_effort": "low",
    "parallel_tool_calls": False,
    "n": 1,
    "response_format": {"type": "text"},
    "tool_choice": "none",
    "tools": [],
    "logprobs": False,
}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_harmless_knobs_are_accepted_and_ignored(
    api: Api, client: Any, server: LocalServer, streamed: bool
) -> None:
    if streamed:
        stream = await create(api, client, stream=True, **HARMLESS)
        text = "".join(contents(await api.drain(stream)))
    else:
        completion = await create(api, client, **HARMLESS)
        text = completion.choices[0].message.content
    # The whole answer: max_tokens did not cut it, stop= did not end it at "You".
    assert text == REPLY
    # Nothing of them reaches the service: the body is the one it always is.
    (request,) = server.chat_requests
    body = request.json()
    assert set(body) == {"conversationId", "prompt"}
    assert body["prompt"] == PROMPT


_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
_JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {}}}
_IMAGE = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
]
_AUDIO = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]

REFUSED = [
    pytest.param({"n": 2}, "n", id="n-2"),
    pytest.param({"tools": [_TOOL]}, "tools", id="tools"),
    pytest.param({"tools": [_TOOL], "tool_choice": "auto"}, "tool_choice", id="tool-choice"),
    pytest.param({"functions": [_TOOL["function"]]}, "functions", id="functions"),
    pytest.param({"response_format": _JSON_SCHEMA}, "response_format", id="json-schema"),
    pytest.param({"response_format": {"type": "json_object"}}, "response_format", id="json"),
    pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
    pytest.param({"top_logprobs": 3}, "top_logprobs", id="top-logprobs"),
    pytest.param({"modalities": ["text", "audio"]}, "modalities", id="audio-out"),
    pytest.param({"web_search_options": {}}, "web_search_options", id="web-search"),
    pytest.param(
        {"messages": [{"role": "user", "content": _IMAGE}]},
        "messages[0].content[1]",
        id="image-part",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": _AUDIO}]},
        "messages[0].content[0]",
        id="audio-part",
    ),
    pytest.param(
        {"messages": [*USER, {"role": "tool", "content": "42", "tool_call_id": "c1"}]},
        "messages[1].role",
        id="tool-message",
    ),
    pytest.param({"messages": PROMPT}, "messages", id="messages-a-string"),
    pytest.param({"messages": []}, "messages", id="messages-empty"),
    pytest.param({"model": "gpt-5-ultra"}, "model", id="unknown-model"),
    pytest.param({"model": ""}, "model", id="empty-model"),
    pytest.param({"temperature": 3}, "temperature", id="temperature-out-of-range"),
    pytest.param({"max_tokens": "ten"}, "max_tokens", id="max-tokens-not-a-number"),
    pytest.param({"frobnicate": True}, "frobnicate", id="unknown-parameter"),
]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("params", "field"), REFUSED)
async def test_parameters_that_change_the_answer_are_refused_before_any_request(
    api: Api,
    client: Any,
    server: LocalServer,
    params: dict[str, Any],
    field: str,
    streamed: bool,
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        # Streamed too, create() itself raises: no stream is handed out.
        await create(api, client, stream=streamed, **params)
    assert info.value.field == field, info.value
    assert field.split("[")[0] in str(info.value)
    assert server.requests == []  # not even the token fetch


async def test_an_unknown_model_names_the_models_there_are(
    api: Api, client: Any, server: LocalServer
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await create(api, client, model="gpt-5-ultra")
    assert info.value.field == "model"
    for name in [*MODELS, *MODEL_ALIASES]:
        assert name in str(info.value)
    assert "gpt-5-ultra" in str(info.value)
    assert server.requests == []


async def test_stream_options_need_a_stream(api: Api, client: Any, server: LocalServer) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await create(api, client, stream=False, stream_options={"include_usage": True})
    assert info.value.field == "stream_options"
    assert server.requests == []
