"""``client.conversation(system=None)``: a history and one ``conversationId`` kept between
turns, on the blocking ``Client`` and the ``AsyncClient`` (asyncio and trio).

Each turn sends the system message, the whole history and the new message (checked in the
prompt the local server received) under the conversation's one id; the exchange joins the
history only when its answer completed. An interrupted answer (``StreamInterrupted``, an
error, a stream closed early) is not added; the caller may add its ``.partial``.

Every test runs as ``[sync]`` (the blocking ``Client``, called from the test's event loop,
which is harmless: the server has its own thread), ``[asyncio]`` and ``[trio]``.
"""

from __future__ import annotations

from typing import Any

import pytest

from aichatonline import (
    APIStatusError,
    AsyncConversation,
    AsyncConversationStream,
    Conversation,
    ConversationStream,
    InvalidRequestError,
    StreamInterrupted,
    format_prompt,
)
from aichatonline.testing import Fault, LocalServer, reply_for
from tests.faces import END, Api, backend_of
from tests.helpers import assert_ours, await_server, pool_active_requests

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def sent(server: LocalServer) -> tuple[str, str]:
    """The prompt and the conversation id of the last chat request."""
    body = server.chat_requests[-1].json()
    return body["prompt"], body["conversationId"]


async def turn(api: Api, conv: Any, text: str, how: str, **options: Any) -> str:
    """One turn, by ``complete()`` or by reading ``stream()`` to its end."""
    if how == "complete":
        answer = await api(conv.complete(text, **options))
        assert type(answer) is str
        return str(answer)
    stream = conv.stream(text, **options)
    pieces = await api.drain(stream)
    assert "".join(pieces) == stream.text
    return "".join(pieces)


HOW = ["complete", "stream"]


# --------------------------------------------------------------------------- turns


@pytest.mark.parametrize("how", HOW)
async def test_each_turn_sends_the_whole_history_under_one_id(
    api: Api, client: Any, server: LocalServer, how: str
) -> None:
    conv = client.conversation()
    assert isinstance(conv, Conversation if api.sync else AsyncConversation)
    assert conv.history == []
    assert conv.system is None

    first = await turn(api, conv, "Hi", how)
    assert first == reply_for("Hi")
    assert sent(server) == ("Hi", conv.conversation_id)  # one message: its text as it is
    assert conv.history == [user("Hi"), assistant(first)]

    second = await turn(api, conv, "Tell me more", how)
    history = [user("Hi"), assistant(first), user("Tell me more")]
    assert sent(server) == (format_prompt(history), conv.conversation_id)
    assert second == server.reply_for(format_prompt(history)) == reply_for("Tell me more")
    assert conv.history == [*history, assistant(second)]

    third = await turn(api, conv, "Thanks", how)
    history = [*conv.history[:4], user("Thanks")]
    assert sent(server)[0] == format_prompt(history)
    assert conv.history == [*history, assistant(third)]
    assert {request.json()["conversationId"] for request in server.chat_requests} == {
        conv.conversation_id
    }
    assert len(server.chat_requests) == 3
    assert server.tokens_issued == 1


async def test_streamed_and_whole_turns_mix(api: Api, client: Any, server: LocalServer) -> None:
    conv = client.conversation()
    stream = conv.stream("One")
    assert isinstance(stream, ConversationStream if api.sync else AsyncConversationStream)
    assert server.chat_requests == []  # the request goes out when iteration starts
    one = "".join(await api.drain(stream))
    two = await api(conv.complete("Two"))
    three = "".join(await api.drain(conv.stream("Three")))
    assert conv.history == [
        user("One"),
        assistant(one),
        user("Two"),
        assistant(two),
        user("Three"),
        assistant(three),
    ]
    assert [one, two, three] == [reply_for("One"), reply_for("Two"), reply_for("Three")]
    assert len({request.json()["conversationId"] for request in server.chat_requests}) == 1


async def test_a_streamed_turn_gives_the_pieces_exactly(
    api: Api, client: Any, server: LocalServer
) -> None:
    conv = client.conversation()
    await api(conv.complete("Hi"))
    stream = conv.stream("And then?")
    pieces = await api.drain(stream)
    assert pieces == server.pieces_for(sent(server)[0])
    assert await api.next(stream) is END
    assert len(conv.history) == 4  # kept once, however often the ended stream is asked
    await api.close(stream)
    assert len(conv.history) == 4
    assert pool_active_requests(client) == 0


async def test_the_system_message_goes_first_and_is_not_history(
    api: Api, client: Any, server: LocalServer
) -> None:
    conv = client.conversation(system="Answer briefly.")
    assert conv.system == "Answer briefly."
    first = await api(conv.complete("Hi"))
    assert sent(server)[0] == "System: Answer briefly.\nUser: Hi\nAssistant:"
    assert first == reply_for("Hi")
    assert conv.history == [user("Hi"), assistant(first)]
    await api.drain(conv.stream("More"))
    prompt = sent(server)[0]
    assert prompt.startswith("System: Answer briefly.\nUser: Hi\nAssistant: ")
    assert prompt.count("System:") == 1
    assert prompt.endswith("\nUser: More\nAssistant:")
    assert all(message["role"] != "system" for message in conv.history)
    conv.reset()  # the system message stays
    await api(conv.complete("Again"))
    assert sent(server)[0] == "System: Answer briefly.\nUser: Again\nAssistant:"


async def test_conversations_are_independent(api: Api, client: Any, server: LocalServer) -> None:
    one, two = client.conversation(), client.conversation()
    assert one.conversation_id != two.conversation_id
    await api(one.complete("Hi"))
    await api(two.complete("Hello"))
    assert sent(server) == ("Hello", two.conversation_id)
    assert len(one.history) == len(two.history) == 2
    assert one.history[0] == user("Hi")


async def test_history_is_a_copy(api: Api, client: Any, server: LocalServer) -> None:
    conv = client.conversation()
    await api(conv.complete("Hi"))
    history = conv.history
    history.append(user("injected"))
    history[0]["content"] = "changed"
    assert conv.history == [user("Hi"), assistant(reply_for("Hi"))]


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param((Fault(drop_after=3),), id="drop-mid-stream"),
        pytest.param((Fault(status=429, retry_after="0"),), id="429"),
        pytest.param((Fault(expire_token=True),), id="401-token-expired"),
    ],
)
async def test_a_turn_survives_the_faults_and_is_kept(
    api: Api, client: Any, server: LocalServer, how: str, faults: tuple[Fault, ...]
) -> None:
    conv = client.conversation()
    first = await api(conv.complete("Hi"))
    server.inject(*faults)
    second = await turn(api, conv, "More", how)
    history = [user("Hi"), assistant(first), user("More")]
    assert second == reply_for(format_prompt(history))  # exact: nothing lost or repeated
    assert conv.history == [*history, assistant(second)]
    retried = server.chat_requests[1:]
    assert len(retried) == 2
    assert {r.json()["conversationId"] for r in retried} == {conv.conversation_id}
    assert {r.json()["prompt"] for r in retried} == {format_prompt(history)}
    assert not server.pending_faults


async def test_an_interrupted_answer_is_not_kept(
    api: Api, client: Any, server: LocalServer
) -> None:
    conv = client.conversation()
    first = await api(conv.complete("Hi"))
    kept = conv.history
    server.inject(Fault(drop_after=3), Fault(variant=True))  # the resumed answer differs
    stream = conv.stream("More")
    pieces: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        await api.drain(stream, into=pieces)
    prompt = format_prompt([user("Hi"), assistant(first), user("More")])
    assert info.value.partial == "".join(pieces) == "".join(server.pieces_for(prompt)[:3])
    assert stream.text == info.value.partial
    assert conv.history == kept
    await api.close(stream)
    assert conv.history == kept
    # The next turn goes without it.
    await api(conv.complete("Again"))
    assert sent(server)[0] == format_prompt([*kept, user("Again")])


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param((Fault(status=404),), id="before-the-first-piece"),
        pytest.param((Fault(drop_after=3), Fault(variant=True)), id="interrupted-mid-stream"),
    ],
)
async def test_asking_a_failed_stream_again_does_not_keep_its_answer(
    api: Api, client: Any, server: LocalServer, faults: tuple[Fault, ...]
) -> None:
    """A stream that raised is over; iterating it again (a second ``for`` over it, a
    ``list()`` after catching the error) must not slip the failed exchange into the history
    as if its answer (empty, or the partial text) had completed."""
    conv = client.conversation()
    server.inject(*faults)
    stream = conv.stream("Hi")
    with pytest.raises((APIStatusError, StreamInterrupted)):
        await api.drain(stream)
    assert conv.history == []
    assert await api.next(stream) is END
    assert conv.history == [], conv.history


async def test_a_failed_turn_is_not_kept(api: Api, client: Any, server: LocalServer) -> None:
    conv = client.conversation()
    server.inject(Fault(status=404))
    with pytest.raises(APIStatusError) as info:
        await api(conv.complete("Hi"))
    assert_ours(info.value)
    assert conv.history == []
    server.inject(Fault(status=404))
    with pytest.raises(APIStatusError):
        await api.drain(conv.stream("Hi"))
    assert conv.history == []
    server.inject(Fault(error_after=2, error_code=4001, error_message="quota exceeded"))
    with pytest.raises(StreamInterrupted):
        await api(conv.complete("Hi"))
    assert conv.history == []
    assert await api(conv.complete("Hi")) == reply_for("Hi")
    assert len(conv.history) == 2


async def test_a_stream_closed_early_is_not_kept(api: Api, client: Any, paced: LocalServer) -> None:
    server = paced
    conv = client.conversation()
    stream = conv.stream("Hi")
    pieces = [await api.next(stream), await api.next(stream)]
    assert pieces == server.pieces_for("Hi")[:2]
    await api.close(stream)
    assert await api.next(stream) is END
    assert conv.history == []
    assert await await_server(server, lambda s: s.disconnects == 1)
    assert pool_active_requests(client) == 0
    # In a with block, too.
    server.delay = 0.0
    if api.sync:
        with conv.stream("Hi") as again:
            next(again)
    else:
        async with conv.stream("Hi") as again:
            await again.__anext__()
    assert conv.history == []


async def test_the_caller_adds_the_partial_answer(
    api: Api, client: Any, server: LocalServer
) -> None:
    conv = client.conversation()
    first = await api(conv.complete("Hi"))
    server.inject(Fault(drop_after=3), Fault(variant=True))
    with pytest.raises(StreamInterrupted) as info:
        await api.drain(conv.stream("More"))
    partial = info.value.partial
    assert partial
    conv.add("assistant", partial)
    assert conv.history[-1] == assistant(partial)
    await api(conv.complete("Go on"))
    prompt = sent(server)[0]
    assert f"Assistant: {partial}\nUser: Go on\nAssistant:" in prompt
    assert prompt.startswith(f"User: Hi\nAssistant: {first}\n")


async def test_the_partial_answer_added_back_follows_its_question(
    api: Api, client: Any, server: LocalServer
) -> None:
    """The documented recipe (``add("assistant", exc.partial)``) must leave a history that
    reads as a conversation: the partial answer after the question it answers, and one
    ``undo()`` taking back that one exchange, not the one before it too."""
    conv = client.conversation()
    first = await api(conv.complete("Hi"))
    server.inject(Fault(drop_after=3), Fault(variant=True))
    with pytest.raises(StreamInterrupted) as info:
        await api.drain(conv.stream("More"))
    conv.add("assistant", info.value.partial)
    assert conv.history == [
        user("Hi"),
        assistant(first),
        user("More"),
        assistant(info.value.partial),
    ]
    conv.undo()
    assert conv.history == [user("Hi"), assistant(first)]


# --------------------------------------------------------------------------- undo, reset, add


async def test_undo_takes_back_the_last_exchange(
    api: Api, client: Any, server: LocalServer
) -> None:
    conv = client.conversation()
    assert conv.undo() == []
    first = await api(conv.complete("Hi"))
    second = await api(conv.complete("More"))
    conversation_id = conv.conversation_id
    assert conv.undo() == [user("More"), assistant(second)]
    assert conv.history == [user("Hi"), assistant(first)]
    assert conv.conversation_id == conversation_id
    await api(conv.complete("Instead"))
    assert sent(server) == (
        format_prompt([user("Hi"), assistant(first), user("Instead")]),
        conversation_id,
    )
    assert conv.undo()[0] == user("Instead")
    assert conv.undo() == [user("Hi"), assistant(first)]
    assert conv.history == []
    assert conv.undo() == []


async def test_reset_forgets_everything_and_takes_a_new_id(
    api: Api, client: Any, server: LocalServer
) -> None:
    conv = client.conversation()
    await api(conv.complete("Hi"))
    old_id = conv.conversation_id
    conv.reset()
    assert conv.history == []
    assert conv.conversation_id != old_id
    await api.drain(conv.stream("Hello again"))
    assert sent(server) == ("Hello again", conv.conversation_id)
    assert conv.history == [user("Hello again"), assistant(reply_for("Hello again"))]


async def test_add_checks_what_it_adds(api: Api, client: Any, server: LocalServer) -> None:
    conv = client.conversation()
    conv.add("user", "Earlier question")
    conv.add("assistant", "Earlier answer")
    for role, content in [("robot", "x"), ("assistant", 5), ("user", None), ("tool", "x")]:
        with pytest.raises(InvalidRequestError):
            conv.add(role, content)
    assert conv.history == [user("Earlier question"), assistant("Earlier answer")]
    await api(conv.complete("Now"))
    assert sent(server)[0] == format_prompt(
        [user("Earlier question"), assistant("Earlier answer"), user("Now")]
    )


async def test_bad_input_fails_before_any_request(
    api: Api, client: Any, server: LocalServer
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        client.conversation(system=5)
    assert info.value.field == "system"
    conv = client.conversation()
    with pytest.raises(InvalidRequestError):
        await api(conv.complete(5))
    with pytest.raises(InvalidRequestError):
        conv.stream(None)
    with pytest.raises(InvalidRequestError):
        await api(conv.complete("Hi", max_retries=-1))
    with pytest.raises(InvalidRequestError):
        conv.stream("Hi", extra_headers={"UniqueId": "x"})
    assert server.requests == []
    assert conv.history == []


async def test_per_call_options_reach_a_turn(api: Api, client: Any, server: LocalServer) -> None:
    conv = client.conversation()
    server.inject(Fault(status=503))
    with pytest.raises(APIStatusError):
        await api(conv.complete("Hi", max_retries=0, extra_headers={"X-Turn": "1"}))
    assert server.chat_requests[-1].headers["x-turn"] == "1"
    assert conv.history == []
    await api.drain(conv.stream("Hi", extra_headers={"X-Turn": "2"}, timeout=5))
    assert server.chat_requests[-1].headers["x-turn"] == "2"
    assert len(conv.history) == 2
