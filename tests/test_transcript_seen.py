"""What the caller has seen: ``Transcript.hand_out``, ``seen_text``, ``pending``, ``cut_batch``.

A stream hands a batch of pieces out from the iterator ``hand_out`` returns, with no call
for each piece; the transcript reads how far that iterator got. These are the rules behind
``stream.text`` and ``stream.completed`` (the clients' tests check those two end to end,
from another thread too).
"""

from __future__ import annotations

import weakref

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aichatonline._core import Transcript
from aichatonline._exceptions import APIConnectionError, InvalidRequestError


class Pieces(list[str]):
    """A list that can be referred to weakly (to see that nothing holds it)."""


def started(*, resume: bool = True, keep_text: bool = True) -> Transcript:
    transcript = Transcript(resume=resume, keep_text=keep_text)
    transcript.begin_attempt()
    return transcript


def test_seen_text_follows_the_iterator() -> None:
    transcript = started()
    handed = transcript.hand_out(transcript.deliver(["Hel", "lo", " you"]))
    assert (transcript.seen_text, transcript.pending) == ("", 3)
    assert next(handed) == "Hel"
    assert (transcript.seen_text, transcript.pending) == ("Hel", 2)
    assert next(handed) == "lo"
    assert next(handed) == " you"
    assert (transcript.seen_text, transcript.pending) == ("Hello you", 0)
    assert transcript.text == "Hello you"


def test_pieces_delivered_but_not_yet_handed_out_are_not_seen() -> None:
    transcript = started()
    for piece in transcript.hand_out(transcript.deliver(["a", "b"])):
        assert piece
    transcript.handed_out()
    transcript.deliver(["c", "d"])  # the next batch, recorded before its hand-out
    assert transcript.text == "abcd"
    assert (transcript.seen_text, transcript.pending) == ("ab", 0)


@given(st.lists(st.lists(st.text(min_size=1), min_size=1), min_size=1), st.data())
def test_seen_text_is_always_what_came_out(batches: list[list[str]], data: st.DataObject) -> None:
    transcript = started()
    out = ""
    for batch in batches:
        handed = transcript.hand_out(transcript.deliver(list(batch)))
        taken = data.draw(st.integers(0, len(batch)))
        for _ in range(taken):
            out += next(handed)
            assert transcript.seen_text == out
        out += "".join(handed)
        assert transcript.seen_text == out
        transcript.handed_out()
        assert (transcript.seen_text, transcript.pending) == (out, 0)


def test_nothing_holds_a_batch_once_it_is_handed_out() -> None:
    transcript = started()
    pieces = Pieces(["a", "b", "c"])
    held = weakref.ref(pieces)
    handed = transcript.hand_out(transcript.deliver(pieces))
    del pieces
    assert held() is not None  # the batch being handed out is held
    assert list(handed) == ["a", "b", "c"]
    transcript.handed_out()
    assert held() is None
    assert transcript.seen_text == "abc"


def test_cut_batch_ends_it_after_the_piece_on_its_way() -> None:
    transcript = started()
    handed = transcript.hand_out(transcript.deliver(["one ", "two ", "three ", "four"]))
    assert next(handed) == "one "
    transcript.cut_batch()  # "two " may be on its way to the caller now: it still goes out
    assert transcript.seen_text == "one "
    assert list(handed) == ["two "]
    assert (transcript.seen_text, transcript.pending) == ("one two ", 0)
    assert transcript.text == "one two three four"  # delivered, never seen


def test_cut_batch_with_nothing_left_changes_nothing() -> None:
    transcript = started()
    handed = transcript.hand_out(transcript.deliver(["a", "b"]))
    assert list(handed) == ["a", "b"]
    transcript.cut_batch()
    assert transcript.seen_text == "ab"


def test_a_lean_transcript_has_no_seen_text_but_counts_pending() -> None:
    transcript = started(keep_text=False)
    handed = transcript.hand_out(transcript.deliver(["a", "b"]))
    assert transcript.pending == 2
    with pytest.raises(InvalidRequestError, match="keep_text=False"):
        _ = transcript.seen_text
    assert list(handed) == ["a", "b"]
    assert transcript.pending == 0


def test_without_resume_a_new_attempt_has_nothing_seen() -> None:
    transcript = started(resume=False)
    assert list(transcript.hand_out(transcript.deliver(["first try"]))) == ["first try"]
    transcript.handed_out()
    transcript.failure(APIConnectionError("reset"))
    transcript.begin_attempt()
    transcript.deliver(["second"])
    assert transcript.seen_text == ""
