"""A call gives the server's answer exactly: ``stream()``, ``complete()`` and what they send.

The pieces of a stream are the server's pieces, in order, and its ``text`` is their sum;
``complete()`` returns the whole answer (``full=True``: a ``Completion`` describing the
call); the request carries the prompt, a conversation id, the browser-like headers and
whatever ``extra_headers`` one call adds. A stream is ``completed`` only once every piece
was handed out.

Every test runs on the blocking ``Client`` and on the ``AsyncClient`` under asyncio and trio
(``tests/faces.py``), against the bundled local server.
"""

from __future__ import annotations

from typing import Any

import pytest

from aichatonline import BROWSER_USER_AGENT, Completion, format_prompt
from aichatonline.testing import Fault, LocalServer, reply_for
from tests.faces import END, Api, backend_of
from tests.helpers import PROMPT, REPLY

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


async def test_stream_delivers_the_servers_pieces_exactly(
    api: Api, client: Any, server: LocalServer
) -> None:
    outcome = await api.run(client.stream(PROMPT))
    assert outcome.error is None
    assert outcome.pieces == server.pieces_for(PROMPT)
    stream = outcome.stream
    assert stream.text == "".join(outcome.pieces) == REPLY
    (request,) = server.chat_requests
    assert request.json() == {"conversationId": stream.conversation_id, "prompt": PROMPT}
    assert len(stream.conversation_id) == 10
    assert (stream.retries, stream.anomalies) == (0, 0)
    assert stream.headers is not None
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert "chars=" in repr(stream)


async def test_complete_returns_the_whole_answer(
    api: Api, client: Any, server: LocalServer
) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
    ]
    prompt = format_prompt(messages)
    assert await api(client.complete(messages)) == reply_for(prompt)
    assert (
        server.chat_requests[0].json()["prompt"] == "System: Be brief.\nUser: Hi there\nAssistant:"
    )


async def test_complete_full_returns_a_completion(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.inject(Fault(status=503))
    result = await api(client.complete(PROMPT, full=True))
    assert isinstance(result, Completion)
    assert result.text == str(result) == REPLY
    assert result.conversation_id == server.chat_requests[-1].json()["conversationId"]
    assert (result.finish_reason, result.retries, result.anomalies) == ("stop", 1, 0)
    assert result.headers["content-type"].startswith("text/event-stream")


async def test_many_small_pieces_and_long_answers(
    api: Api, client: Any, server: LocalServer
) -> None:
    server.pieces, server.piece_size = 2000, 1
    outcome = await api.run(client.stream(PROMPT))
    assert outcome.error is None
    assert outcome.pieces == server.pieces_for(PROMPT)
    server.pieces, server.piece_size = 50, 4000
    assert await api(client.complete(PROMPT)) == "".join(server.pieces_for(PROMPT))


async def test_explicit_conversation_id_is_sent(api: Api, client: Any, server: LocalServer) -> None:
    stream = client.stream(PROMPT, conversation_id="myconv1234")
    assert stream.conversation_id == "myconv1234"
    assert (await api.run(stream)).text == REPLY
    assert await api(client.complete(PROMPT, conversation_id="other12345")) == REPLY
    assert [r.json()["conversationId"] for r in server.chat_requests] == [
        "myconv1234",
        "other12345",
    ]


async def test_stream_conversation_id_is_read_only(api: Api, client: Any) -> None:
    stream = client.stream(PROMPT, conversation_id="conv-1")
    assert stream.conversation_id == "conv-1"
    with pytest.raises(AttributeError):
        stream.conversation_id = "other"
    assert stream.conversation_id == "conv-1"
    await api.close(stream)


async def test_next_and_exhaustion(api: Api, client: Any, server: LocalServer) -> None:
    stream = client.stream(PROMPT)
    assert stream.headers is None  # nothing was sent yet
    first = await api.next(stream)
    assert first == server.pieces_for(PROMPT)[0]
    assert stream.text == first
    rest = await api.drain(stream)
    assert first + "".join(rest) == REPLY
    assert await api.next(stream) is END  # StopIteration / StopAsyncIteration again
    assert "chars=" in repr(stream)
    assert stream.conversation_id in repr(stream)


async def test_completed_only_when_every_piece_was_handed_out(api: Api, client: Any) -> None:
    stream = client.stream(PROMPT)
    await api.next(stream)
    assert not stream.completed
    got = stream.text
    while got != REPLY:  # every piece, without asking for the end of the stream
        piece = await api.next(stream)
        assert piece is not END, f"the stream ended after {got!r}"
        got += piece
    assert await api.next(stream) is END
    assert stream.completed
    assert stream.text == REPLY


async def test_browser_headers_and_custom_user_agent(api: Api, server: LocalServer) -> None:
    async with api.entered(api.client(server)) as client:
        await api(client.complete(PROMPT))
    async with api.entered(api.client(server, user_agent="my-app/1.0")) as client:
        await api(client.complete(PROMPT))
    token_request, chat_request, _, custom = server.requests
    assert token_request.method == "GET"
    canvas = token_request.query["canvas"]
    assert canvas.startswith("-")
    assert len(canvas) == 11
    headers = chat_request.headers
    assert headers["user-agent"] == BROWSER_USER_AGENT
    assert headers["referer"] == f"{server.base_url}/chatgpt/chat/"
    assert headers["origin"] == server.base_url
    assert headers["content-type"] == "application/json"
    assert headers["sec-fetch-mode"] == "cors"
    assert headers["uniqueid"]
    assert custom.headers["user-agent"] == "my-app/1.0"


async def test_extra_headers_go_with_one_call(api: Api, client: Any, server: LocalServer) -> None:
    assert await api(client.complete(PROMPT, extra_headers={"X-Trace": "abc"})) == REPLY
    assert (await api.run(client.stream(PROMPT, extra_headers={"X-Trace": "def"}))).text == REPLY
    assert await api(client.complete(PROMPT)) == REPLY
    assert [r.headers.get("x-trace") for r in server.chat_requests] == ["abc", "def", None]
