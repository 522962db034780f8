"""``format_prompt``, message validation and ``get_random_string`` (PROTOCOL.md sections 3, 4)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aichatonline._core import format_prompt, get_random_string, normalize_messages
from aichatonline._exceptions import AiChatOnlineError, InvalidRequestError

ROLES = ["system", "user", "assistant", "developer"]


def msg(role: str, content: object) -> dict[str, object]:
    return {"role": role, "content": content}


# -- format_prompt -------------------------------------------------------------


def test_protocol_example() -> None:
    messages = [msg("system", "S"), msg("user", "Hi")]
    assert format_prompt(messages) == "System: S\nUser: Hi\nAssistant:"


@pytest.mark.parametrize("role", ROLES)
def test_single_message_is_returned_as_it_is(role: str) -> None:
    content = "  Hello,\nworld: 😀  \n"
    assert format_prompt([msg(role, content)]) == content


def test_single_message_with_special_tokens_is_formatted() -> None:
    assert format_prompt([msg("user", "Hi")], add_special_tokens=True) == "User: Hi\nAssistant:"


def test_every_role_is_capitalised() -> None:
    messages = [msg(role, role[0]) for role in ROLES]
    assert format_prompt(messages) == ("System: s\nUser: u\nAssistant: a\nDeveloper: d\nAssistant:")


def test_content_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]
    assert format_prompt([msg("user", parts)]) == "Hello"
    assert format_prompt([msg("system", "S"), msg("user", parts)]) == (
        "System: S\nUser: Hello\nAssistant:"
    )


def test_plain_string_is_one_user_message() -> None:
    assert format_prompt("just a question") == "just a question"
    assert format_prompt("q", add_special_tokens=True) == "User: q\nAssistant:"
    assert normalize_messages("q") == [("user", "q")]


def test_a_tuple_of_messages_is_accepted() -> None:
    assert format_prompt((msg("user", "a"), msg("assistant", "b"))) == (
        "User: a\nAssistant: b\nAssistant:"
    )


message_strategy = st.builds(msg, st.sampled_from(ROLES), st.text(max_size=20))


@settings(max_examples=100, deadline=None)
@given(st.lists(message_strategy, min_size=1, max_size=6), st.booleans())
def test_format_prompt_matches_the_protocol_rule(
    messages: list[dict[str, object]], special: bool
) -> None:
    if not any(str(m["content"]).strip() for m in messages):  # nothing to answer: refused
        with pytest.raises(InvalidRequestError, match=r"^the prompt is empty") as info:
            format_prompt(messages, add_special_tokens=special)
        assert info.value.field == "messages"
        return
    got = format_prompt(messages, add_special_tokens=special)
    if len(messages) == 1 and not special:
        assert got == messages[0]["content"]
    else:
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]  # type: ignore[attr-defined]
        assert got == "\n".join(lines) + "\nAssistant:"


# -- validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "index", "field"),
    [
        pytest.param([], None, "messages", id="empty list"),
        pytest.param((), None, "messages", id="empty tuple"),
        pytest.param(42, None, "messages", id="int"),
        pytest.param(None, None, "messages", id="None"),
        pytest.param(b"bytes", None, "messages", id="bytes"),
        pytest.param(msg("user", "x"), None, "messages", id="one mapping, not a list"),
        pytest.param(iter([msg("user", "x")]), None, "messages", id="iterator"),
        pytest.param([msg("user", "a"), "hi"], 1, None, id="non-mapping message"),
        pytest.param([msg("user", "a"), ["user", "b"]], 1, None, id="list message"),
        pytest.param([msg("robot", "x")], 0, "role", id="unknown role"),
        pytest.param([msg("User", "x")], 0, "role", id="capitalised role"),
        pytest.param([{"content": "x"}], 0, "role", id="missing role"),
        pytest.param([msg(None, "x")], 0, "role", id="None role"),  # type: ignore[arg-type]
        pytest.param([msg(["user"], "x")], 0, "role", id="unhashable role"),  # type: ignore[arg-type]
        pytest.param([msg("user", "a"), {"role": "user"}], 1, "content", id="missing content"),
        pytest.param([msg("user", 5)], 0, "content", id="int content"),
        pytest.param([msg("user", None)], 0, "content", id="None content"),
        pytest.param([msg("user", b"x")], 0, "content", id="bytes content"),
        pytest.param([msg("user", {"type": "text", "text": "x"})], 0, "content", id="dict content"),
        pytest.param(
            [msg("user", [{"type": "text", "text": "a"}, {"type": "image_url", "url": "u"}])],
            0,
            "content[1]",
            id="non-text part",
        ),
        pytest.param([msg("user", ["plain"])], 0, "content[0]", id="non-mapping part"),
        pytest.param([msg("user", [{"type": "text"}])], 0, "content[0].text", id="part no text"),
        pytest.param(
            [msg("user", "ok"), msg("user", [{"type": "text", "text": 5}])],
            1,
            "content[0].text",
            id="part int text",
        ),
    ],
)
def test_invalid_messages(messages: object, index: int | None, field: str | None) -> None:
    with pytest.raises(InvalidRequestError) as info:
        format_prompt(messages)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, AiChatOnlineError)
    assert error.index == index
    assert error.field == field
    if index is not None:
        assert f"messages[{index}]" in str(error)


def test_empty_list_error_is_clear() -> None:
    with pytest.raises(InvalidRequestError, match="must not be empty"):
        format_prompt([])


# -- get_random_string ---------------------------------------------------------------


def test_random_string_default_length_and_alphabet() -> None:
    values = {get_random_string() for _ in range(50)}
    assert all(re.fullmatch(r"[a-z0-9]{10}", value) for value in values)
    assert len(values) == 50  # 36 ** 10 possibilities: a repeat means it is not random


@pytest.mark.parametrize("length", [0, 1, 7, 64])
def test_random_string_length(length: int) -> None:
    value = get_random_string(length)
    assert len(value) == length
    assert set(value) <= set(string.ascii_lowercase + string.digits)


def test_random_string_uses_the_whole_alphabet() -> None:
    assert set(get_random_string(5000)) == set(string.ascii_lowercase + string.digits)


@pytest.mark.parametrize("length", [-1, 1.5, "3", None, True])
def test_random_string_bad_length(length: object) -> None:
    with pytest.raises(InvalidRequestError):
        get_random_string(length)  # type: ignore[arg-type]
