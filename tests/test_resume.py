"""``Transcript``: the text delivered by one call, and resuming a dropped stream exactly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aichatonline._core import Transcript
from aichatonline._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ProtocolError,
    RateLimitError,
    ServerError,
    ServiceError,
    StreamInterrupted,
)


def deliver(transcript: Transcript, *calls: list[str]) -> list[str]:
    """Run ``deliver`` once per call (one call per network chunk); return what came out."""
    out: list[str] = []
    for pieces in calls:
        out += transcript.deliver(pieces)
    return out


def dropped(
    text_pieces: list[str], *, cause: APIError | None = None
) -> tuple[Transcript, APIError]:
    """A transcript whose first attempt delivered ``text_pieces`` and then dropped."""
    transcript = Transcript(resume=True)
    transcript.begin_attempt()
    assert deliver(transcript, text_pieces) == text_pieces
    failure = cause or APIConnectionError("connection reset")
    transcript.failure(failure)
    transcript.begin_attempt()
    return transcript, failure


# -- recording -----------------------------------------------------------------------------


def test_records_the_delivered_text() -> None:
    transcript = Transcript()
    assert transcript.text == ""
    transcript.begin_attempt()
    assert deliver(transcript, ["Hel", "lo"], [], [", ", "world"]) == ["Hel", "lo", ", ", "world"]
    assert transcript.text == "Hello, world"
    transcript.end_attempt()
    assert transcript.text == "Hello, world"


def test_deliver_returns_a_list_recorded_as_delivered() -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    pieces = transcript.deliver(["a", "b", "c"])
    assert type(pieces) is list
    assert pieces == ["a", "b", "c"]
    # Recorded before the caller sees any of them: the caller must hand out every one.
    assert transcript.text == "abc"
    assert transcript.length == 3
    assert transcript.deliver([]) == []
    assert transcript.length == 3


def test_reading_text_while_handing_out_pieces_loses_nothing() -> None:
    # ``stream.text`` read between two pieces of one network chunk (a bug once:
    # the pieces after the read were not recorded, and the resume went wrong).
    transcript = Transcript()
    transcript.begin_attempt()
    seen = []
    for piece in transcript.deliver(["a", "b", "c"]):
        seen.append(transcript.text)
        assert piece in transcript.text
    assert seen == ["abc", "abc", "abc"]
    transcript.failure(APIConnectionError("reset"))
    transcript.begin_attempt()
    assert deliver(transcript, ["ab", "cd"]) == ["d"]
    assert transcript.text == "abcd"


def test_length_counts_characters_not_bytes_or_pieces() -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    transcript.deliver(["é", "😀", "", "ab"])
    assert transcript.length == 4 == len(transcript.text)


def test_length_counts_only_new_text_on_a_resumed_attempt() -> None:
    transcript, _ = dropped(["Hel", "lo"])
    assert transcript.length == 5
    assert transcript.replaying
    assert deliver(transcript, ["He"]) == []
    assert transcript.length == 5
    assert deliver(transcript, ["llo wor", "ld"]) == [" wor", "ld"]
    assert not transcript.replaying
    assert transcript.length == len("Hello world") == len(transcript.text)


def test_without_resume_a_new_attempt_resets_the_length() -> None:
    transcript = Transcript(resume=False)
    transcript.begin_attempt()
    deliver(transcript, ["first try"])
    assert transcript.length == 9
    transcript.begin_attempt()
    assert transcript.length == 0
    assert not transcript.replaying
    deliver(transcript, ["ok"])
    assert transcript.length == 2


def test_replaying_is_false_with_nothing_to_replay() -> None:
    transcript = Transcript()
    assert not transcript.replaying
    transcript.begin_attempt()
    assert not transcript.replaying
    transcript.failure(APIConnectionError("refused"))
    transcript.begin_attempt()
    assert not transcript.replaying


def test_a_replay_that_matches_exactly_returns_an_empty_list() -> None:
    transcript, _ = dropped(["Hel", "lo"])
    out = transcript.deliver(["Hello"])
    assert out == []
    assert type(out) is list
    assert not transcript.replaying  # caught up exactly: what follows is new
    assert transcript.deliver(["!"]) == ["!"]


# -- resuming -------------------------------------------------------------------------------


def test_replay_with_the_same_boundaries_yields_only_new_text() -> None:
    transcript, _ = dropped(["Hel", "lo"])
    assert deliver(transcript, ["Hel", "lo", " world"]) == [" world"]
    transcript.end_attempt()
    assert transcript.text == "Hello world"


@pytest.mark.parametrize(
    ("calls", "new"),
    [
        pytest.param([["H", "e", "l", "l", "o", "!"]], ["!"], id="finer pieces"),
        pytest.param([["Hello!"]], ["!"], id="one piece straddles the end"),
        pytest.param([["He"], ["llo wo"], ["rld"]], [" wo", "rld"], id="straddle in a later call"),
        pytest.param(
            [["Hell"], ["o"], [], ["!", "?"]], ["!", "?"], id="ends exactly at the prefix"
        ),
        pytest.param([["Hel", "lo!!", "?"]], ["!!", "?"], id="piece ending past the prefix"),
        pytest.param([["", "Hello", "", "!"]], ["", "!"], id="empty pieces"),
    ],
)
def test_replay_with_different_boundaries(calls: list[list[str]], new: list[str]) -> None:
    transcript, _ = dropped(["Hel", "lo"])
    assert deliver(transcript, *calls) == new
    transcript.end_attempt()
    assert transcript.text == "Hello" + "".join(new)


def test_replay_that_only_repeats_the_prefix_ends_normally() -> None:
    transcript, _ = dropped(["Hel", "lo"])
    assert deliver(transcript, ["Hello"]) == []
    transcript.end_attempt()
    assert transcript.text == "Hello"


@pytest.mark.parametrize(
    "calls",
    [
        pytest.param([["Help"]], id="differs inside"),
        pytest.param([["Hel", "p me"]], id="differs in a later piece"),
        pytest.param([["Hello"[:2]], ["X"]], id="differs in a later call"),
        pytest.param([["Hellx world"]], id="straddling piece differs"),
        pytest.param([["Bye"]], id="different from the start"),
    ],
)
def test_divergent_replay_raises_stream_interrupted(calls: list[list[str]]) -> None:
    cause = APITimeoutError("read timed out")
    transcript, _ = dropped(["Hel", "lo"], cause=cause)
    with pytest.raises(StreamInterrupted) as info:
        deliver(transcript, *calls)
    assert info.value.partial == "Hello"
    assert info.value.__cause__ is cause
    assert transcript.text == "Hello"


@pytest.mark.parametrize("calls", [[], [[]], [["Hel"]], [["H"], ["ell"]]])
def test_replay_that_ends_early_raises_stream_interrupted(calls: list[list[str]]) -> None:
    transcript, cause = dropped(["Hel", "lo"])
    assert deliver(transcript, *calls) == []
    with pytest.raises(StreamInterrupted) as info:
        transcript.end_attempt()
    assert info.value.partial == "Hello"
    assert info.value.__cause__ is cause


def test_second_drop_during_the_replay() -> None:
    transcript, _ = dropped(["Hel", "lo"])
    assert deliver(transcript, ["He"]) == []
    second = APIConnectionError("reset again")
    error = transcript.failure(second)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "Hello"
    assert error.__cause__ is second
    transcript.begin_attempt()  # the replay starts again from the beginning
    assert deliver(transcript, ["Hel"], ["lo, ", "you"]) == [", ", "you"]
    assert transcript.text == "Hello, you"


def test_drop_after_resuming_then_resume_again() -> None:
    transcript, _ = dropped(["Hel", "lo"])
    assert deliver(transcript, ["Hello", " wor"]) == [" wor"]
    transcript.failure(APIConnectionError("reset"))
    transcript.begin_attempt()
    assert deliver(transcript, ["Hello wo", "rld"]) == ["ld"]  # "r" was delivered already
    assert transcript.text == "Hello world"


def test_nothing_delivered_means_nothing_to_replay() -> None:
    transcript = Transcript(resume=True)
    transcript.begin_attempt()
    transcript.failure(APIConnectionError("refused"))
    transcript.begin_attempt()
    assert deliver(transcript, ["Brand", " new"]) == ["Brand", " new"]
    transcript.end_attempt()


@st.composite
def resplits(draw: st.DrawFn) -> tuple[list[str], list[list[str]], str]:
    """Delivered pieces, and the replayed answer (prefix + new) re-split into calls of pieces."""
    delivered = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6))
    new = draw(st.text(max_size=15))
    answer = "".join(delivered) + new
    cuts = sorted(draw(st.sets(st.integers(0, len(answer)), max_size=10)))
    pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True)]
    groups = sorted(draw(st.sets(st.integers(0, len(pieces)), max_size=4)))
    calls = [pieces[a:b] for a, b in zip([0, *groups], [*groups, len(pieces)], strict=True)]
    return delivered, calls, new


@settings(max_examples=300, deadline=None)
@given(resplits())
def test_any_resplit_of_the_replay_yields_exactly_the_new_text(
    case: tuple[list[str], list[list[str]], str],
) -> None:
    delivered, calls, new = case
    transcript, _ = dropped(delivered)
    out = deliver(transcript, *calls)
    transcript.end_attempt()
    assert "".join(out) == new
    assert transcript.text == "".join(delivered) + new
    # Pieces are never re-cut inside the new text: the first one out is the tail
    # of a replayed piece, every later one is a replayed piece as it was.
    replayed = [piece for call in calls for piece in call]
    if out:
        first = len(replayed) - len(out)
        assert replayed[first].endswith(out[0])
        assert out[1:] == replayed[first + 1 :]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet="ab", min_size=1, max_size=4), min_size=1, max_size=4),
    st.lists(st.text(alphabet="abc", max_size=4), max_size=5),
)
def test_any_replay_resumes_or_raises_with_the_delivered_text(
    delivered: list[str], replay: list[str]
) -> None:
    cause = APIConnectionError("reset")
    transcript, _ = dropped(delivered, cause=cause)
    prefix = "".join(delivered)
    answer = "".join(replay)
    out: list[str] = []
    error: StreamInterrupted | None = None
    try:
        for piece in transcript.deliver(replay):
            out.append(piece)
        transcript.end_attempt()
    except StreamInterrupted as exc:
        error = exc
    if error is not None:
        assert not answer.startswith(prefix)
        assert error.partial == prefix
        assert error.__cause__ is cause
        assert out == []  # nothing new escapes before the divergence is known
        assert transcript.text == prefix
    else:
        assert answer.startswith(prefix)
        assert "".join(out) == answer[len(prefix) :]
        assert transcript.text == answer


# -- failure() ------------------------------------------------------------------------------


@pytest.mark.parametrize("resume", [True, False])
@pytest.mark.parametrize(
    "error",
    [APIConnectionError("reset"), APITimeoutError("timed out")],
    ids=lambda e: type(e).__name__,
)
def test_connection_failure_after_text_becomes_stream_interrupted(
    resume: bool, error: APIConnectionError
) -> None:
    transcript = Transcript(resume=resume)
    transcript.begin_attempt()
    deliver(transcript, ["partial ", "text"])
    result = transcript.failure(error)
    assert isinstance(result, StreamInterrupted)
    assert result.partial == "partial text"
    assert result.__cause__ is error
    assert "12" in str(result)  # says how much text had been delivered


@pytest.mark.parametrize(
    "error",
    [APIConnectionError("reset"), APITimeoutError("timed out")],
    ids=lambda e: type(e).__name__,
)
def test_connection_failure_before_any_text_is_returned_unchanged(
    error: APIConnectionError,
) -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    deliver(transcript, [], [])
    assert transcript.failure(error) is error


@pytest.mark.parametrize(
    "error",
    [
        ServiceError("in-band", code=500),
        APIStatusError("bad", status_code=400),
        AuthenticationError("no", status_code=401),
        ServerError("down", status_code=503),
        RateLimitError("slow", status_code=429, retry_after=1.0),
        ProtocolError("garbled"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_failure_after_text_carries_the_text(error: APIError) -> None:
    # Not only dropped connections: whatever ends the call after text went out
    # comes back as StreamInterrupted with exactly that text, the failure chained.
    transcript = Transcript()
    transcript.begin_attempt()
    deliver(transcript, ["some ", "text"])
    wrapped = transcript.failure(error)
    assert isinstance(wrapped, StreamInterrupted)
    assert wrapped.partial == "some text"
    assert wrapped.__cause__ is error
    assert transcript.text == "some text"


@pytest.mark.parametrize(
    "error",
    [ServiceError("in-band", code=500), ServerError("down", status_code=503)],
    ids=lambda e: type(e).__name__,
)
def test_failures_before_any_text_are_returned_unchanged(error: APIError) -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    assert transcript.failure(error) is error


def test_a_stream_interrupted_is_not_wrapped_again() -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    deliver(transcript, ["some text"])
    error = StreamInterrupted("already", partial="some text")
    assert transcript.failure(error) is error


# -- resume=False ---------------------------------------------------------------------------


def test_without_resume_a_new_attempt_starts_from_scratch() -> None:
    transcript = Transcript(resume=False)
    transcript.begin_attempt()
    assert deliver(transcript, ["Hel", "lo"]) == ["Hel", "lo"]
    transcript.failure(APIConnectionError("reset"))
    transcript.begin_attempt()
    assert transcript.text == ""
    assert deliver(transcript, ["Hel", "lo", "!"]) == ["Hel", "lo", "!"]  # nothing skipped
    transcript.end_attempt()
    assert transcript.text == "Hello!"


def test_without_resume_a_different_answer_is_fine() -> None:
    transcript = Transcript(resume=False)
    transcript.begin_attempt()
    deliver(transcript, ["first"])
    transcript.begin_attempt()
    assert deliver(transcript, ["other"]) == ["other"]
    transcript.end_attempt()
    assert transcript.text == "other"


# -- many pieces (the internal folding) -----------------------------------------------------


def test_text_is_right_across_folding() -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    expected: list[str] = []
    n = 0
    for call, size in enumerate([1, 3, 5000, 7, 4096, 1, 4097, 2, 9000, 13] * 2):
        pieces = [f"{n + i}," for i in range(size)]
        n += size
        assert deliver(transcript, pieces) == pieces
        expected += pieces
        if call % 3 == 0:
            assert transcript.text == "".join(expected)
            assert transcript.length == len(transcript.text)
    assert n > 10_000
    assert transcript.text == "".join(expected)


def test_resume_after_many_pieces() -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    delivered = [f"<{i}>" for i in range(12_000)]
    for start in range(0, len(delivered), 1000):
        deliver(transcript, delivered[start : start + 1000])
    prefix = "".join(delivered)
    cause = APIConnectionError("reset")
    assert transcript.failure(cause).partial == prefix  # type: ignore[attr-defined]
    transcript.begin_attempt()
    # The same answer in 7-character pieces, plus new text.
    answer = prefix + "<new>"
    replay = [answer[i : i + 7] for i in range(0, len(answer), 7)]
    out = deliver(transcript, *[replay[i : i + 500] for i in range(0, len(replay), 500)])
    transcript.end_attempt()
    assert "".join(out) == "<new>"
    assert transcript.text == answer


def test_divergence_after_many_pieces_reports_all_the_text() -> None:
    transcript = Transcript()
    transcript.begin_attempt()
    for i in range(0, 10_000, 100):
        deliver(transcript, [str(j % 10) for j in range(i, i + 100)])
    prefix = transcript.text
    assert len(prefix) == 10_000
    transcript.failure(APIConnectionError("reset"))
    transcript.begin_attempt()
    with pytest.raises(StreamInterrupted) as info:
        deliver(transcript, [prefix[:5000]], [prefix[5000:9000] + "X"])
    assert info.value.partial == prefix
