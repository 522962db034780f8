"""``aichatonline.types``: attribute access, ``to_dict()`` giving exactly OpenAI's JSON shapes,
and those shapes parsed by the real ``openai`` package's own models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aichatonline.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionUsage,
    ErrorObject,
    Model,
    ModelPage,
)

openai_types = pytest.importorskip("openai.types")
from openai.types import Model as OpenAIModel  # noqa: E402
from openai.types.chat import ChatCompletion as OpenAIChatCompletion  # noqa: E402
from openai.types.chat import ChatCompletionChunk as OpenAIChatCompletionChunk  # noqa: E402

TEXT = 'Hi "there" —\n ünïcödé ✓ 🚀'


def completion() -> ChatCompletion:
    return ChatCompletion(
        id="chatcmpl-1",
        created=1700000000,
        model="gpt-4o-mini",
        choices=[Choice(message=ChatCompletionMessage(content=TEXT))],
    )


def chunk(delta: ChoiceDelta | None, finish: bool = False) -> ChatCompletionChunk:
    choices = (
        []
        if delta is None
        else [ChunkChoice(delta=delta, finish_reason="stop" if finish else None)]
    )
    return ChatCompletionChunk(
        id="chatcmpl-1", created=1700000000, model="gpt-4o-mini", choices=choices
    )


def roundtrip(obj: Any) -> Any:
    """What a client would parse: the JSON text of ``obj.to_dict()``."""
    return json.loads(json.dumps(obj.to_dict()))


def test_chat_completion_shape_is_openais() -> None:
    done = completion()
    assert done.object == "chat.completion"
    assert done.choices[0].message.content == TEXT
    assert done.choices[0].message.role == "assistant"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is None
    assert done.to_dict() == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": TEXT,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": None,
        "service_tier": None,
        "system_fingerprint": None,
    }
    # Key order as OpenAI sends it.
    assert list(done.to_dict()) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "service_tier",
        "system_fingerprint",
    ]


def test_chat_completion_parses_with_openais_model() -> None:
    parsed = OpenAIChatCompletion.model_validate(roundtrip(completion()))
    assert parsed.id == "chatcmpl-1"
    assert parsed.choices[0].message.content == TEXT
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is None
    # Nothing of ours is lost or added: openai's model dumps back to the same JSON.
    assert parsed.model_dump(exclude_unset=True) == roundtrip(completion())


def test_usage_when_there_is_some() -> None:
    done = completion()
    done.usage = CompletionUsage(prompt_tokens=3, completion_tokens=5, total_tokens=8)
    assert done.to_dict()["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "total_tokens": 8,
    }
    assert OpenAIChatCompletion.model_validate(roundtrip(done)).usage.total_tokens == 8  # type: ignore[union-attr]


def test_chunk_shapes_first_content_last_and_usage() -> None:
    first = chunk(ChoiceDelta(role="assistant", content=""))
    content = chunk(ChoiceDelta(content=TEXT))
    last = chunk(ChoiceDelta(), finish=True)
    usage = chunk(None)
    head = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "service_tier": None,
        "system_fingerprint": None,
    }

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    assert first.to_dict() == {**head, "choices": choice({"role": "assistant", "content": ""})}
    assert content.to_dict() == {**head, "choices": choice({"content": TEXT})}
    assert last.to_dict() == {**head, "choices": choice({}, "stop")}
    # The include_usage chunk: no choices, "usage": null (the service counts no tokens).
    assert usage.to_dict() == {**head, "choices": [], "usage": None}
    assert "usage" not in content.to_dict()
    assert content.object == "chat.completion.chunk"
    assert content.choices[0].delta.content == TEXT


@pytest.mark.parametrize("finish", [False, True])
def test_chunks_parse_with_openais_model(finish: bool) -> None:
    for delta in (ChoiceDelta(role="assistant", content=""), ChoiceDelta(content=TEXT), None):
        ours = chunk(delta, finish=finish and delta is not None)
        parsed = OpenAIChatCompletionChunk.model_validate(roundtrip(ours))
        assert parsed.model_dump(exclude_unset=True) == roundtrip(ours)
        if delta is None:
            assert parsed.choices == []
            assert parsed.usage is None
        else:
            assert parsed.choices[0].delta.content == delta.content
            assert parsed.choices[0].finish_reason == ("stop" if finish else None)


def test_models_and_the_model_page() -> None:
    model = Model(id="gpt-4o-mini", created=1721172741, owned_by="aichatonline")
    page = ModelPage(data=[model])
    assert model.to_dict() == {
        "id": "gpt-4o-mini",
        "object": "model",
        "created": 1721172741,
        "owned_by": "aichatonline",
    }
    assert page.to_dict() == {"object": "list", "data": [model.to_dict()]}
    assert list(page) == [model]
    assert len(page) == 1
    parsed = OpenAIModel.model_validate(roundtrip(model))
    assert parsed.id == "gpt-4o-mini"
    assert parsed.owned_by == "aichatonline"


def test_error_object() -> None:
    error = ErrorObject(message="bad n", type="invalid_request_error", param="n")
    assert error.to_dict() == {
        "error": {"message": "bad n", "type": "invalid_request_error", "param": "n", "code": None}
    }
    assert ErrorObject(message="m", type="t", code="c").to_dict()["error"]["code"] == "c"


def test_objects_are_light_dataclasses() -> None:
    # Slots (no __dict__), keyword construction, plain equality: no pydantic underneath.
    done = completion()
    assert not hasattr(done, "__dict__")
    assert done == completion()
    with pytest.raises(TypeError):
        ChatCompletion("x", 1, "m", [])  # type: ignore[misc]
    with pytest.raises(AttributeError):
        done.not_a_field = 1  # type: ignore[attr-defined]
