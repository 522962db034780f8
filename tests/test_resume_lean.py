"""The lean ``Transcript`` (``keep_text=False``): exact resume with only a length and a hash.

It must cut a resumed answer exactly where the transcript that keeps the text cuts it,
and fail where that one fails (at the boundary rather than at the first difference), with
``partial=""`` and ``delivered`` set; and what it holds must not grow with the answer.
"""

from __future__ import annotations

import gc
import pickle
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aichatonline import InvalidRequestError
from aichatonline._core import Call, RetryPolicy, Timeout, TokenCache, Transcript
from aichatonline._core.request import ChatRequest
from aichatonline._exceptions import APIConnectionError, StreamInterrupted

Outcome = tuple[list[str], tuple[str, int] | None]


def attempt(transcript: Transcript, calls: list[list[str]]) -> Outcome:
    """One attempt's answer through ``deliver`` (one call a network read), then its end:
    the pieces out, and the error (its ``partial`` and ``delivered``) if one was raised."""
    out: list[str] = []
    try:
        transcript.begin_attempt()
        for pieces in calls:
            out += transcript.deliver(pieces)
        transcript.end_attempt()
    except StreamInterrupted as exc:
        return out, (exc.partial, exc.delivered)
    return out, None


def cut(text: str, points: list[int]) -> list[str]:
    cuts = sorted({p for p in points if 0 < p < len(text)})
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def dropped_after(answer: str, points: list[int], keep_text: bool) -> Transcript:
    """A transcript whose first attempt delivered ``answer`` in pieces, then dropped."""
    transcript = Transcript(resume=True, keep_text=keep_text)
    out, error = attempt(transcript, [cut(answer, points)])
    assert error is not None or out == cut(answer, points)
    transcript.failure(APIConnectionError("reset"))
    return transcript


def resumed(delivered: str, resent: str, points: list[int], groups: list[int]) -> Outcome:
    """The lean transcript's outcome for a re-sent answer, checked against the other's."""
    pieces = cut(resent, points)
    calls = [pieces[a:b] for a, b in zip([0, *groups], [*groups, len(pieces)], strict=False)]
    lean = attempt(dropped_after(delivered, points, keep_text=False), calls)
    kept = attempt(dropped_after(delivered, points, keep_text=True), calls)
    assert lean[0] == kept[0]  # the same pieces out, the same cut
    if kept[1] is None:
        assert lean[1] is None
    else:
        assert kept[1] == (delivered, len(delivered))
        assert lean[1] == ("", len(delivered))
    return lean


texts = st.text(st.sampled_from("ab\u00e9\U0001f600\ud83d"), max_size=12)


@st.composite
def resumes(draw: st.DrawFn) -> tuple[str, str, list[int], list[int]]:
    """An answer delivered up to a drop, and a re-sent answer: identical (and longer),
    diverging before, at or after the boundary, or shorter."""
    answer = draw(texts.filter(bool))
    drop = draw(st.integers(1, len(answer)))
    delivered = answer[:drop]
    how = draw(st.sampled_from(["same", "before", "at", "after", "shorter"]))
    resent = answer + draw(texts)
    if how in ("before", "at") or (how == "after" and len(resent) > drop):
        where = {"before": draw(st.integers(0, drop - 1)), "at": drop - 1}.get(how, drop)
        if how == "after":
            where = draw(st.integers(drop, len(resent) - 1))
        other = "c" if resent[where] != "c" else "d"
        resent = resent[:where] + other + resent[where + 1 :]
    elif how == "shorter":
        resent = resent[: draw(st.integers(0, drop - 1))]
    points = draw(st.lists(st.integers(0, len(resent) + len(delivered)), max_size=8))
    groups = sorted(draw(st.sets(st.integers(0, 10), max_size=3)))
    return delivered, resent, points, groups


@settings(max_examples=600, deadline=None)
@given(resumes())
@example(("ab", "abc", [1, 2], [1]))  # a piece ends at the boundary, in a later call
@example(("ab", "ac", [1], []))  # diverges right before the boundary
@example(("a\U0001f600", "a\U0001f600b", [], []))  # one piece straddles the boundary
def test_a_lean_resume_cuts_and_fails_as_the_kept_text_does(
    case: tuple[str, str, list[int], list[int]],
) -> None:
    delivered, resent, points, groups = case
    out, error = resumed(delivered, resent, points, groups)
    if resent.startswith(delivered):
        assert (error, "".join(out)) == (None, resent[len(delivered) :])
    else:
        assert out == []  # nothing after the boundary unless the digests agree
        assert error == ("", len(delivered))


def test_every_drop_and_every_cut_of_a_short_answer() -> None:
    answer = "ab\U0001f600cd"
    for drop in range(1, len(answer) + 1):
        for resent in (answer, answer + "!", answer[:drop] + "?", "x" + answer[1:], answer[:-1]):
            for first in range(len(resent) + 1):
                for second in range(first, len(resent) + 1):
                    resumed(answer[:drop], resent, [first, second], [1])


def test_the_digest_is_compared_at_the_boundary_not_before() -> None:
    transcript = dropped_after("abcd", [], keep_text=False)
    transcript.begin_attempt()
    assert transcript.deliver(["x", "y"]) == []  # different already, but not known yet
    with pytest.raises(StreamInterrupted) as info:
        transcript.deliver(["z", "w!"])
    assert (info.value.partial, info.value.delivered) == ("", 4)
    assert isinstance(info.value.__cause__, APIConnectionError)


def test_a_second_drop_during_the_replay_starts_the_hash_again() -> None:
    transcript = dropped_after("abcd", [], keep_text=False)
    transcript.begin_attempt()
    assert transcript.deliver(["ab"]) == []
    error = transcript.failure(APIConnectionError("reset again"))
    assert isinstance(error, StreamInterrupted)
    assert (error.partial, error.delivered) == ("", 4)
    assert attempt(transcript, [["abc", "de"]]) == (["e"], None)
    assert transcript.length == 5


# -- what a lean transcript says, and what it refuses ----------------------------------------


def test_text_is_refused_with_a_clear_error() -> None:
    transcript = Transcript(keep_text=False)
    transcript.begin_attempt()
    transcript.deliver(["some ", "text"])
    with pytest.raises(InvalidRequestError, match=r"keep_text=False.*9 characters") as info:
        _ = transcript.text
    assert info.value.field == "keep_text"


def test_a_failure_after_text_carries_its_length_not_its_text() -> None:
    transcript = Transcript(keep_text=False)
    transcript.begin_attempt()
    transcript.deliver(["é😀", "ab"])
    cause = APIConnectionError("reset")
    error = transcript.failure(cause)
    assert isinstance(error, StreamInterrupted)
    assert (error.partial, error.delivered, error.__cause__) == ("", 4, cause)
    assert "4 characters" in str(error)


def test_without_resume_a_lean_attempt_starts_from_scratch() -> None:
    transcript = Transcript(resume=False, keep_text=False)
    assert attempt(transcript, [["first"]]) == (["first"], None)
    transcript.failure(APIConnectionError("reset"))
    assert attempt(transcript, [["other", "!"]]) == (["other", "!"], None)
    assert transcript.length == 6


def test_delivered_is_set_in_both_modes_and_kept_by_pickle() -> None:
    kept = Transcript()
    kept.begin_attempt()
    kept.deliver(["abc"])
    error = kept.failure(APIConnectionError("reset"))
    assert isinstance(error, StreamInterrupted)
    assert (error.partial, error.delivered) == ("abc", 3)
    assert StreamInterrupted("x", partial="hello").delivered == 5  # the default
    copy = pickle.loads(pickle.dumps(StreamInterrupted("x", partial="", delivered=7)))
    assert (copy.partial, copy.delivered) == ("", 7)


def test_a_call_passes_keep_text_to_its_transcript() -> None:
    chat = ChatRequest(base_url="http://127.0.0.1:1", prompt="hi", conversation_id="c", headers={})
    tokens, policy, timeout = TokenCache(), RetryPolicy(), Timeout()
    kept = Call(chat, tokens=tokens, policy=policy, timeout=timeout, resume=True)
    lean = Call(chat, tokens=tokens, policy=policy, timeout=timeout, resume=True, keep_text=False)
    assert (kept.transcript.keep_text, lean.transcript.keep_text) == (True, False)


# -- memory ------------------------------------------------------------------------------


def held_after(transcript: Transcript, pieces: Iterator[str]) -> int:
    """Bytes still allocated once ``pieces`` went through ``transcript`` (and a resume)."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        transcript.begin_attempt()
        for piece in pieces:
            transcript.deliver([piece])
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()


def answer(chars: int) -> Iterator[str]:
    piece = "0123456789abcdefghijklmnopqrstu\U0001f600"  # 32 characters
    for _ in range(chars // len(piece)):
        yield piece


@pytest.mark.parametrize("chars", [32 * 1024, 32 * 16 * 1024], ids=["32K", "512K"])
def test_a_lean_transcript_holds_the_same_whatever_the_answer_length(chars: int) -> None:
    lean = Transcript(keep_text=False)
    assert held_after(lean, answer(chars)) < 2048
    assert lean.length == chars
    lean.failure(APIConnectionError("reset"))
    # The resumed answer: the same text again, and more.
    assert held_after(lean, answer(2 * chars)) < 2048
    assert lean.length == 2 * chars


def test_the_transcript_that_keeps_the_text_grows_with_it() -> None:
    # The control: the same measure sees the text when it is kept.
    assert held_after(Transcript(), answer(32 * 16 * 1024)) > 512 * 1024
