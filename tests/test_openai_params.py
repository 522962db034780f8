"""``aichatonline._openai.check_chat_params``: the OpenAI parameters we honour, ignore, refuse.

Shared by ``client.chat.completions.create`` and the gateway, so both accept and refuse the
same requests; every refusal is an ``InvalidRequestError`` naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from aichatonline import InvalidRequestError
from aichatonline._core import DEFAULT_MODEL, MODEL_ALIASES, MODELS
from aichatonline._openai import (
    IGNORED,
    ChatParams,
    ModelNotFoundError,
    check_chat_params,
    check_model,
)

USER = [{"role": "user", "content": "Hi"}]


def check(**params: Any) -> ChatParams:
    return check_chat_params({"model": DEFAULT_MODEL, "messages": USER, **params})


def refused(field: str, **params: Any) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        check(**params)
    assert info.value.field == field, info.value
    assert str(info.value)
    return info.value


def test_a_plain_request() -> None:
    params = check()
    assert params == ChatParams(DEFAULT_MODEL, USER, False, False, ())
    streamed = check(stream=True, stream_options={"include_usage": True})
    assert streamed.stream is True
    assert streamed.include_usage is True
    assert check(stream=True).include_usage is False
    assert check(stream=None).stream is False


def test_models_and_aliases() -> None:
    for model in MODELS:
        assert check_model(model) == model
    for alias, model in MODEL_ALIASES.items():
        assert check_model(alias) == model
        assert check(model=alias).model == model


def test_an_unknown_model_names_the_models_we_have() -> None:
    error = refused("model", model="gpt-5-ultra")
    assert isinstance(error, ModelNotFoundError)
    for model in MODELS:
        assert model in str(error)
    for bad in ("", 3, None):
        with pytest.raises(InvalidRequestError) as info:
            check_chat_params({"model": bad, "messages": USER})
        assert info.value.field == "model"
        assert not isinstance(info.value, ModelNotFoundError)


def test_messages_are_normalized_for_the_sdk() -> None:
    params = check(
        messages=[
            {"role": "system", "content": "Be brief."},
            {
                "role": "developer",
                "content": [
                    {"type": "text", "text": "Really "},
                    {"type": "text", "text": "brief."},
                ],
            },
            {"role": "user", "content": "Hi", "name": "ann"},
            {"role": "assistant", "content": None},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "Again"},
        ]
    )
    assert params.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Really brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "Again"},
    ]


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ("Hi", "messages"),
        ([], "messages"),
        ({"role": "user", "content": "Hi"}, "messages"),
        (["Hi"], "messages[0]"),
        ([{"role": "tool", "content": "42", "tool_call_id": "c1"}], "messages[0].role"),
        ([{"role": "function", "content": "42", "name": "f"}], "messages[0].role"),
        ([{"role": "robot", "content": "Hi"}], "messages[0].role"),
        ([{"content": "Hi"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "messages[0].content[0]",
        ),
        (
            [
                {"role": "user", "content": "Hi"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "and"},
                        {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
                    ],
                },
            ],
            "messages[1].content[1]",
        ),
        ([{"role": "user", "content": [{"type": "file", "file": {}}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": ["Hi"]}], "messages[0].content[0]"),
        (
            [{"role": "user", "content": [{"type": "refusal", "refusal": "x"}]}],
            "messages[0].content[0]",
        ),
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function"}],
                }
            ],
            "messages[0].tool_calls",
        ),
    ],
)
def test_messages_we_cannot_send(messages: Any, field: str) -> None:
    refused(field, messages=messages)


def test_model_and_messages_are_required() -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_chat_params({"messages": USER})
    assert info.value.field == "model"
    with pytest.raises(InvalidRequestError) as info:
        check_chat_params({"model": DEFAULT_MODEL})
    assert info.value.field == "messages"
    with pytest.raises(InvalidRequestError):
        check_chat_params([("model", DEFAULT_MODEL)])  # type: ignore[arg-type]


def test_harmless_knobs_are_accepted_and_reported_as_ignored() -> None:
    knobs = {
        "temperature": 0.2,
        "top_p": 1,
        "max_tokens": 100,
        "max_completion_tokens": 100,
        "user": "u-1",
        "seed": 7,
        "stop": ["\n\n"],
        "presence_penalty": -1.5,
        "frequency_penalty": 2,
        "logit_bias": {"50256": -100},
        "metadata": {"k": "v"},
        "store": False,
        "service_tier": "auto",
        "parallel_tool_calls": True,
        "reasoning_effort": "low",
        "prompt_cache_key": "k",
        "safety_identifier": "s",
    }
    params = check(
        **knobs, n=1, logprobs=False, response_format={"type": "text"}, modalities=["text"]
    )
    assert params.ignored == tuple(knobs)
    assert set(knobs) <= IGNORED
    # null means "not given", as in the OpenAI API.
    assert check(temperature=None, n=None, tools=None, tool_choice=None).ignored == ()
    assert check(stop="END").ignored == ("stop",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 2.5),
        ("temperature", "hot"),
        ("temperature", True),
        ("temperature", float("nan")),
        ("temperature", 10**400),  # past float's range: still a plain refusal
        ("top_p", -(10**400)),
        ("top_p", -0.1),
        ("max_tokens", 0),
        ("max_tokens", 1.5),
        ("seed", "x"),
        ("stop", [1]),
        ("user", 5),
        ("logit_bias", [1]),
        ("store", "yes"),
        ("stream", "yes"),
        ("n", 0),
        ("n", "two"),
    ],
)
def test_knobs_with_bad_values_are_refused(name: str, value: Any) -> None:
    refused(name, **{name: value})


def test_ints_past_the_range_of_floats_are_still_ints() -> None:
    huge = 10**400
    assert check(max_tokens=huge, seed=-huge, max_completion_tokens=huge).ignored == (
        "max_tokens",
        "seed",
        "max_completion_tokens",
    )


@pytest.mark.parametrize(
    ("field", "params"),
    [
        ("n", {"n": 2}),
        ("tools", {"tools": [{"type": "function", "function": {"name": "f"}}]}),
        (
            "tools",
            {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": None},
        ),
        ("tool_choice", {"tool_choice": "auto"}),
        ("tool_choice", {"tool_choice": {"type": "function", "function": {"name": "f"}}}),
        ("functions", {"functions": [{"name": "f"}]}),
        ("function_call", {"function_call": "auto"}),
        ("response_format", {"response_format": {"type": "json_object"}}),
        ("response_format", {"response_format": {"type": "json_schema", "json_schema": {}}}),
        ("response_format", {"response_format": "json"}),
        ("logprobs", {"logprobs": True}),
        ("top_logprobs", {"top_logprobs": 3}),
        ("audio", {"audio": {"voice": "alloy", "format": "wav"}}),
        ("modalities", {"modalities": ["text", "audio"]}),
        ("web_search_options", {"web_search_options": {}}),
        ("stream_options", {"stream_options": {"include_usage": True}}),
        ("stream_options", {"stream": True, "stream_options": "yes"}),
        ("stream_options.bogus", {"stream": True, "stream_options": {"bogus": True}}),
        ("frobnicate", {"frobnicate": 1}),
    ],
)
def test_parameters_that_would_change_the_answer_are_refused(field: str, params: Any) -> None:
    refused(field, **params)


def test_tools_with_tool_choice_none_are_harmless() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert check(tools=tools, tool_choice="none").model == DEFAULT_MODEL
    assert check(functions=[{"name": "f"}], function_call="none").model == DEFAULT_MODEL
    assert check(tools=[]).model == DEFAULT_MODEL


def test_drop_unknown_accepts_unknown_parameters_and_names_them() -> None:
    params = {"model": DEFAULT_MODEL, "messages": USER, "top_k": 3, "repetition_penalty": None}
    with pytest.raises(InvalidRequestError) as info:
        check_chat_params(params)
    assert info.value.field == "top_k"
    checked = check_chat_params({**params, "temperature": 0.5}, drop_unknown=True)
    assert checked.dropped == ("top_k", "repetition_penalty")
    assert checked.ignored == ("temperature",)
    assert check().dropped == ()
    # What would change the answer, or is malformed, stays refused.
    with pytest.raises(InvalidRequestError) as info:
        check_chat_params({**params, "n": 2}, drop_unknown=True)
    assert info.value.field == "n"
    with pytest.raises(InvalidRequestError) as info:
        check_chat_params({**params, "temperature": "hot"}, drop_unknown=True)
    assert info.value.field == "temperature"
