"""OpenAI's answer shapes made of the service's text (``aichatonline._completions``).

The chunk sequence is the one rule behind both ``chat.completions.create(stream=True)``
and the gateway's SSE stream: the opening (role, no text) only with the first text or the
end, a chunk per text, the stop chunk only at the end of a complete answer, the usage
chunk after it when asked for; one ``id``, ``created`` and ``model`` for every chunk.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aichatonline._completions import ChunkSequence, new_completion_id, text_of, whole_completion
from aichatonline.types import ChatCompletionChunk

MODEL = "gpt-4o-mini"


def kinds(chunks: list[ChatCompletionChunk]) -> list[str]:
    """What each chunk is: opening, text, stop or usage."""
    named = []
    for chunk in chunks:
        if not chunk.choices:
            named.append("usage")
        elif chunk.choices[0].delta.role == "assistant":
            named.append("opening")
        elif chunk.choices[0].finish_reason == "stop":
            named.append("stop")
        else:
            named.append("text")
    return named


@given(texts=st.lists(st.text(max_size=8), max_size=6), include_usage=st.booleans())
def test_a_complete_answer_is_opening_texts_stop_then_usage(
    texts: list[str], include_usage: bool
) -> None:
    sequence = ChunkSequence(MODEL, include_usage=include_usage)
    assert not sequence.committed
    chunks: list[ChatCompletionChunk] = []
    for text in texts:
        chunks += sequence.text(text)
        assert sequence.committed
    chunks += sequence.end()
    assert sequence.committed
    expected = ["opening", *(["text"] * len(texts)), "stop"] + (["usage"] if include_usage else [])
    assert kinds(chunks) == expected
    assert [text_of(chunk) for chunk in chunks if text_of(chunk) is not None] == texts
    assert {(chunk.id, chunk.created, chunk.model) for chunk in chunks} == {
        (sequence.id, sequence.created, MODEL)
    }
    opening = chunks[0].to_dict()["choices"][0]
    assert opening["delta"] == {"role": "assistant", "content": ""}
    assert opening["finish_reason"] is None
    stop = chunks[len(texts) + 1].to_dict()["choices"][0]
    assert stop == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    if include_usage:
        assert chunks[-1].to_dict()["choices"] == []
        assert chunks[-1].to_dict()["usage"] is None


def test_nothing_is_committed_before_the_first_text() -> None:
    # A failure before any text hands out no chunk at all (the caller's error instead).
    sequence = ChunkSequence(MODEL)
    assert not sequence.committed
    first = sequence.text("Hel")
    assert kinds(first) == ["opening", "text"]
    assert kinds(sequence.text("lo")) == ["text"]  # the opening goes out once


def test_the_end_is_said_once_and_nothing_follows_it() -> None:
    sequence = ChunkSequence(MODEL, include_usage=True)
    assert kinds(sequence.end()) == ["opening", "stop", "usage"]
    with pytest.raises(RuntimeError):
        sequence.end()
    with pytest.raises(RuntimeError):
        sequence.text("late")


def test_text_of_tells_text_chunks_from_the_others() -> None:
    sequence = ChunkSequence(MODEL, include_usage=True)
    assert text_of(sequence.text_chunk("")) == ""
    assert [text_of(chunk) for chunk in sequence.end()] == [None, None, None]


def test_the_id_and_created_can_be_given() -> None:
    sequence = ChunkSequence(MODEL, id="chatcmpl-x", created=1700000000)
    (opening, text) = sequence.text("a")
    assert (text.id, text.created) == ("chatcmpl-x", 1700000000)
    assert opening.to_dict()["object"] == "chat.completion.chunk"


def test_a_whole_completion() -> None:
    completion = whole_completion(MODEL, "Hello", created=1700000000).to_dict()
    assert completion["object"] == "chat.completion"
    assert completion["created"] == 1700000000
    assert completion["id"].startswith("chatcmpl-")
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]


def test_completion_ids_are_fresh() -> None:
    ids = {new_completion_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(value.startswith("chatcmpl-") for value in ids)
