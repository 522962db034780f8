"""Edges of the client surface found in review, on the blocking ``Client`` and the
``AsyncClient`` (asyncio and trio):

- a conversation turn closed after its last piece, before the iteration's end, is kept;
  one closed before its last piece is not, and ``completed`` says so;
- the chat-completion stream has ``close()`` on the async client too (openai's
  ``AsyncStream`` name), and it releases the connection;
- ``client.chat`` is one object per client, and a ``with_options`` clone has its own;
- ``stream.conversation_id`` is read-only (setting it did nothing before).
"""

from __future__ import annotations

from typing import Any

import pytest

from aichatonline.testing import LocalServer
from tests import hostile
from tests.faces import END, Api, backend_of
from tests.helpers import PROMPT, REPLY, pool_active_requests

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


async def read_exactly(api: Api, stream: Any, text: str) -> str:
    """Pieces until ``text`` has arrived, without asking for the end of the stream."""
    got = ""
    while got != text:
        piece = await api.next(stream)
        assert piece is not END, f"the stream ended after {got!r}"
        got += piece
    return got


#: An answer whose last line has no newline: its last piece comes with the end of the body,
#: so the call is over once the caller holds that piece.
LAST_LINE_AT_THE_END = hostile.raw(
    hostile.CHUNKED_HEAD,
    hostile.chunk(hostile.ndjson("Hel") + hostile.ndjson("lo").rstrip(b"\n")),
    hostile.chunk(b""),
    keep=True,
)


async def test_a_turn_closed_after_its_last_piece_is_kept(api: Api) -> None:
    with hostile.HostileServer(hostile.route(chat=LAST_LINE_AT_THE_END)) as server:
        client = api.client(server)  # type: ignore[arg-type]
        try:
            conv = client.conversation()
            stream = conv.stream(PROMPT)
            answer = await read_exactly(api, stream, "Hello")
            assert stream.completed
            await api.close(stream)  # every piece read: only the end was not asked for
            assert conv.history == [
                {"role": "user", "content": PROMPT},
                {"role": "assistant", "content": answer},
            ]
            assert pool_active_requests(client) == 0
        finally:
            await api.close(client)


async def test_a_turn_closed_before_its_last_piece_is_not_kept(api: Api, client: Any) -> None:
    conv = client.conversation()
    stream = conv.stream(PROMPT)
    first = await api.next(stream)
    assert first is not END
    assert first != REPLY  # the local server sends several pieces
    await api.close(stream)
    # The whole answer may have arrived in one read; the caller did not get it all.
    assert conv.history == []
    assert stream.text == first


async def test_chat_completion_stream_has_close(api: Api, client: Any) -> None:
    chunks = await api(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    first = await api.next(chunks)
    assert first is not END
    await api(chunks.close())  # ``await stream.close()`` on the async client, as in openai
    assert await api.next(chunks) is END
    assert pool_active_requests(client) == 0


async def test_client_chat_is_one_object_and_a_clone_has_its_own(
    api: Api, client: Any, server: LocalServer
) -> None:
    assert client.chat is client.chat
    assert client.chat.completions is client.chat.completions
    clone = client.with_options(max_retries=0)
    assert clone.chat is clone.chat
    assert clone.chat is not client.chat
    completion = await api(
        clone.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
    )
    assert completion.choices[0].message.content == REPLY


async def test_complete_and_create_read_messages_by_the_same_rules(
    api: Api, client: Any, server: LocalServer
) -> None:
    # A text part without "type", and an assistant turn whose content is None (OpenAI's
    # shape for a turn that only called tools): both APIs take both, and send one prompt.
    messages = [
        {"role": "user", "content": [{"text": "Hi"}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": PROMPT},
    ]
    answer = await api(client.complete(messages))
    prompt = server.chat_requests[-1].json()["prompt"]
    completion = await api(client.chat.completions.create(model="gpt-4o-mini", messages=messages))
    assert server.chat_requests[-1].json()["prompt"] == prompt
    assert completion.choices[0].message.content == answer
