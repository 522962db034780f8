"""A conversation's history (``aichatonline._history``), without a client or a server.

Conversations (both clients) and the command line's chat session keep a ``History``; its
rules are checked here one by one. ``tests/test_conversation.py`` checks them again
through the clients, against the local server.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aichatonline import InvalidRequestError
from aichatonline._history import History


def test_a_turn_sends_the_system_line_the_exchanges_then_its_text() -> None:
    history = History("Be brief.")
    history.answered(history.ask("Hi"), "Hello!")
    assert history.messages_for("And?") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And?"},
    ]
    assert history.exchanges == history.messages_for("x")[1:3]
    assert len(history) == 2


def test_no_system_line_when_there_is_none() -> None:
    for system in (None, ""):
        assert History(system).messages_for("Hi") == [{"role": "user", "content": "Hi"}]
    with pytest.raises(InvalidRequestError) as info:
        History(3)  # type: ignore[arg-type]
    assert info.value.field == "system"


def test_a_turn_not_answered_is_not_kept() -> None:
    history = History()
    history.ask("Lost")
    assert history.exchanges == []


def test_an_answer_after_a_reset_is_not_kept() -> None:
    history = History()
    first_id = history.conversation_id
    turn = history.ask("Old")
    history.reset()
    history.answered(turn, "late")
    assert history.exchanges == []
    assert history.conversation_id != first_id


def test_the_partial_answer_added_back_follows_its_question() -> None:
    history = History()
    history.ask("Tell me")
    history.add("assistant", "Part of it")
    assert history.exchanges == [
        {"role": "user", "content": "Tell me"},
        {"role": "assistant", "content": "Part of it"},
    ]
    history.add("assistant", "more")  # no question left waiting: added as it is
    assert history.exchanges[-1] == {"role": "assistant", "content": "more"}


def test_add_checks_what_it_adds() -> None:
    history = History()
    for role, content in (("robot", "x"), ("user", 3)):
        with pytest.raises(InvalidRequestError):
            history.add(role, content)  # type: ignore[arg-type]
    assert history.exchanges == []


def test_undo_takes_back_the_last_exchange() -> None:
    history = History()
    history.answered(history.ask("One"), "1")
    history.answered(history.ask("Two"), "2")
    assert history.undo() == [
        {"role": "user", "content": "Two"},
        {"role": "assistant", "content": "2"},
    ]
    assert [m["content"] for m in history.exchanges] == ["One", "1"]
    history.ask("Three")
    history.undo()  # forgets the waiting question too
    history.add("assistant", "orphan")
    assert [m["content"] for m in history.exchanges] == ["orphan"]
    assert History().undo() == []


def test_exchanges_are_a_copy() -> None:
    history = History()
    history.answered(history.ask("Hi"), "Hello")
    copy = history.exchanges
    copy[0]["content"] = "changed"
    copy.clear()
    assert history.exchanges[0]["content"] == "Hi"


@given(st.lists(st.sampled_from(["ask", "answer", "add", "undo", "reset"]), max_size=30))
def test_the_history_always_alternates_when_turns_are_kept(actions: list[str]) -> None:
    # Kept turns and partial answers added back leave user, assistant, user, ... in order.
    history = History()
    turn = None
    for action in actions:
        if action == "ask":
            turn = history.ask("q")
        elif action == "answer" and turn is not None:
            history.answered(turn, "a")
            turn = None
        elif action == "add" and turn is not None:
            history.add("assistant", "partial")
            turn = None
        elif action == "undo":
            history.undo()
            turn = None
        elif action == "reset":
            history.reset()
            turn = None
    roles = [message["role"] for message in history.exchanges]
    assert roles == ["user", "assistant"] * (len(roles) // 2)
