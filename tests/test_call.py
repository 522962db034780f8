"""``Call`` and ``TokenFetch``: the rules of one chat call and one token fetch, driven by events.

No sockets and no sleeping: each test plays the I/O layer by hand (send, head, body bytes,
failures) and checks the action the machine answers with. Retries wait zero seconds
(``RetryPolicy`` with no back-off) unless a test is about the wait.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from aichatonline._core import (
    CHAT_PATH,
    COMPLETE,
    FETCH_TOKEN,
    READ_BODY,
    READ_ERROR,
    Call,
    ChatRequest,
    Raise,
    RetryPolicy,
    Send,
    Sleep,
    Timeout,
    TokenCache,
    build_headers,
)
from aichatonline._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ProtocolError,
    RateLimitError,
    ServerError,
    ServiceError,
    StreamInterrupted,
)

BASE = "http://127.0.0.1:8123"
HEADERS = build_headers(BASE)
NO_WAIT = RetryPolicy(max_retries=2, initial_backoff=0, max_backoff=0, jitter=0)


def line(text: str) -> bytes:
    return json.dumps({"code": 200, "data": {"message": text}}).encode() + b"\n"


def answer(*texts: str) -> bytes:
    return b"".join(line(text) for text in texts)


def make_call(
    *,
    token: str | None = "tok-1",
    cache: TokenCache | None = None,
    policy: RetryPolicy = NO_WAIT,
    timeout: Timeout | None = None,
    resume: bool = True,
    **options: object,
) -> Call:
    if cache is None:
        cache = TokenCache()
        if token is not None:
            cache.fetched(token)
    chat = ChatRequest(BASE, HEADERS, "User: hi\nAssistant:")
    return Call(
        chat,
        tokens=cache,
        policy=policy,
        timeout=timeout or Timeout(),
        resume=resume,
        **options,  # type: ignore[arg-type]
    )


def send(call: Call) -> Send:
    action = call.next_action()
    assert type(action) is Send, action
    call.sent()
    return action


def begin(call: Call, status: int = 200, headers: Mapping[str, str] | None = None) -> Send:
    """Send the request and get the response head."""
    action = send(call)
    call.response_head(status, dict(headers or {}))
    return action


def stream(call: Call, *chunks: bytes, end: bool = True) -> list[str]:
    """Feed a 200 body's chunks (the head already in); return every piece handed out."""
    assert call.next_action() is READ_BODY
    pieces: list[str] = []
    for chunk in chunks:
        pieces += call.receive(chunk)
    if end:
        pieces += call.end_of_body()
    return pieces


def refused(
    call: Call, status: int, headers: Mapping[str, str] | None = None, body: bytes = b""
) -> None:
    begin(call, status, headers)
    assert call.next_action() is READ_ERROR
    call.error_body(body)


def raised(call: Call) -> APIError:
    action = call.next_action()
    assert type(action) is Raise, action
    return action.error


def slept(call: Call) -> float:
    action = call.next_action()
    assert type(action) is Sleep, action
    call.slept()
    return action.seconds


# -- the first action ---------------------------------------------------------------------------


def test_without_a_token_the_call_fetches_one_first() -> None:
    call = make_call(token=None)
    assert call.next_action() is FETCH_TOKEN
    assert call.next_action() is FETCH_TOKEN  # asking again changes nothing
    call.token_ready("fresh")
    action = call.next_action()
    assert type(action) is Send
    assert action.request.headers["UniqueId"] == "fresh"


def test_with_a_cached_token_the_call_sends_at_once() -> None:
    call = make_call(token="cached")
    action = call.next_action()
    assert type(action) is Send
    request = action.request
    assert request.method == "POST"
    assert request.url == f"{BASE}{CHAT_PATH}"
    assert request.headers["UniqueId"] == "cached"
    assert request.body == call.chat.body
    assert request.secrets == ("cached",)
    assert call.secrets == ("cached",)


# -- a call that goes well ----------------------------------------------------------------------


def test_a_whole_answer() -> None:
    call = make_call()
    begin(call, 200, {"content-type": "application/x-ndjson"})
    assert call.headers == {"content-type": "application/x-ndjson"}
    assert call.next_action() is READ_BODY
    assert call.receive(answer("Hel", "lo")) == ["Hel", "lo"]
    assert call.next_action() is READ_BODY
    assert call.receive(line(", world")[:-1]) == []  # a line without its end yet
    assert call.end_of_body() == [", world"]
    assert call.next_action() is COMPLETE
    assert call.transcript.text == "Hello, world"
    assert call.retries == 0
    assert call.anomalies == 0


@pytest.mark.parametrize("size", [1, 7, 97, 100_000])
def test_any_chunking_gives_the_same_pieces(size: int) -> None:
    body = answer("a", "bc", "dé😀", "f")
    call = make_call()
    begin(call)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert stream(call, *chunks) == ["a", "bc", "dé😀", "f"]
    assert call.next_action() is COMPLETE


def test_receive_returns_the_pieces_of_every_line_completed() -> None:
    call = make_call()
    begin(call)
    body = answer("one", "two", "three")
    assert call.receive(body[:5]) == []
    assert call.receive(body[5:-3]) == ["one", "two"]
    assert call.receive(body[-3:]) == ["three"]
    assert call.end_of_body() == []


# -- a failure mid-stream: resume -----------------------------------------------------------------


def test_a_drop_mid_stream_is_resumed_where_the_caller_is() -> None:
    call = make_call()
    first = begin(call)
    assert stream(call, answer("Hel", "lo"), end=False) == ["Hel", "lo"]
    cause = APIConnectionError("connection reset")
    call.failed(cause)
    assert slept(call) == 0.0
    second = begin(call)
    assert second.request.body == first.request.body  # the same conversation and prompt
    assert second.request.headers["UniqueId"] == "tok-1"
    assert stream(call, answer("Hel", "lo", " world")) == [" world"]
    assert call.next_action() is COMPLETE
    assert call.transcript.text == "Hello world"
    assert call.retries == 1


def test_a_resumed_answer_cut_differently_is_still_resumed() -> None:
    call = make_call()
    begin(call)
    stream(call, answer("Hel", "lo wo"), end=False)
    call.failed(APIConnectionError("reset"))
    slept(call)
    begin(call)
    assert stream(call, answer("H", "ello", " w", "orld")) == ["rld"]
    assert call.transcript.text == "Hello world"


def test_a_divergent_resumed_answer_raises_stream_interrupted() -> None:
    call = make_call()
    begin(call)
    stream(call, answer("Hel", "lo"), end=False)
    drop = APIConnectionError("reset")
    call.failed(drop)
    slept(call)
    begin(call)
    assert call.receive(answer("Help", " me")) == []  # nothing raised: the call failed
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "Hello"
    assert error.__cause__ is drop
    assert call.transcript.text == "Hello"


def test_a_resumed_answer_that_ends_early_raises_stream_interrupted() -> None:
    call = make_call()
    begin(call)
    stream(call, answer("Hel", "lo"), end=False)
    call.failed(APIConnectionError("reset"))
    slept(call)
    begin(call)
    assert call.receive(answer("Hel")) == []
    assert call.next_action() is READ_BODY
    assert call.end_of_body() == []
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "Hello"
    assert "ended before" in str(error)


def test_without_resume_the_next_attempt_starts_over() -> None:
    call = make_call(resume=False)
    begin(call)
    stream(call, answer("first", " try"), end=False)
    call.failed(APIConnectionError("reset"))
    slept(call)
    begin(call)
    assert stream(call, answer("second", " answer")) == ["second", " answer"]
    assert call.transcript.text == "second answer"


def test_retries_used_up_after_text_raise_stream_interrupted() -> None:
    call = make_call(policy=RetryPolicy(max_retries=0))
    begin(call)
    stream(call, answer("partial"), end=False)
    drop = APITimeoutError("read timeout", limit="read", seconds=5)
    call.failed(drop)
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "partial"
    assert error.__cause__ is drop


# -- statuses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, APIStatusError), (404, APIStatusError), (422, APIStatusError), (402, RateLimitError)],
)
def test_a_status_not_worth_retrying_raises_its_typed_error(
    status: int, error_type: type[APIStatusError]
) -> None:
    call = make_call()
    refused(call, status, {"x-request-id": "r1"}, b"nope")
    error = raised(call)
    assert type(error) is error_type
    assert error.status_code == status
    assert error.headers == {"x-request-id": "r1"}
    assert error.method == "POST"
    assert call.retries == 0


def test_a_redirect_is_not_followed() -> None:
    call = make_call()
    refused(call, 307, {"location": "https://elsewhere.example/steal"})
    error = raised(call)
    assert type(error) is APIStatusError
    assert error.status_code == 307
    assert "elsewhere.example" in str(error)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
def test_a_transient_status_is_retried(status: int) -> None:
    call = make_call()
    refused(call, status)
    assert slept(call) == 0.0
    begin(call)
    assert stream(call, answer("fine")) == ["fine"]
    assert call.retries == 1


def test_retry_after_sets_the_wait() -> None:
    call = make_call(policy=RetryPolicy(initial_backoff=0.1, max_backoff=0.1, jitter=0))
    refused(call, 429, {"retry-after": "3"})
    assert slept(call) == 3.0
    refused(call, 503, {"retry-after": "2"})
    assert slept(call) == 2.0


def test_transient_statuses_until_the_budget_is_used_up() -> None:
    call = make_call()
    for _ in range(2):
        refused(call, 502)
        slept(call)
    refused(call, 502, body=b"bad gateway")
    error = raised(call)
    assert type(error) is ServerError
    assert call.retries == 2


def test_a_non_retryable_status_after_text_is_wrapped() -> None:
    call = make_call()
    begin(call)
    stream(call, answer("some text"), end=False)
    call.failed(APIConnectionError("reset"))
    slept(call)
    refused(call, 400, body=b"bad request")
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "some text"
    assert isinstance(error.__cause__, APIStatusError)
    assert error.__cause__.status_code == 400


def test_an_in_band_error_after_text_is_wrapped() -> None:
    call = make_call()
    begin(call)
    body = answer("Hel", "lo") + b'{"code": 500, "message": "model overloaded"}\n' + answer("x")
    assert call.receive(body) == ["Hel", "lo"]  # the pieces before the error first
    error = raised(call)  # and the call failed with them, without reading on
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "Hello"
    assert isinstance(error.__cause__, ServiceError)
    assert error.__cause__.code == 500


def test_an_in_band_error_before_text_is_raised_as_it_is() -> None:
    call = make_call()
    begin(call)
    assert call.receive(b'{"code": 429, "msg": "slow down"}\n') == []
    error = raised(call)  # an in-band error is a readable line: not "unreadable"
    assert type(error) is ServiceError
    assert (error.code, error.message) == (429, "slow down")


def test_stop_ends_the_call_without_a_retry() -> None:
    call = make_call()
    begin(call)
    stream(call, answer("so far"), end=False)
    closed = APIConnectionError("the client was closed")
    call.stop(closed)
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "so far"
    assert error.__cause__ is closed


# -- answers in which nothing can be read -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"<!DOCTYPE html><html><body>Maintenance</body></html>\n", b"\n\n", b"not json"],
    ids=["empty", "html", "blank lines", "garbage"],
)
def test_an_unreadable_answer_is_retried_once(body: bytes) -> None:
    call = make_call(policy=RetryPolicy(max_retries=5, initial_backoff=0, jitter=0))
    for attempt in (1, 2):
        begin(call)
        if body:
            assert call.receive(body) == []
        assert call.end_of_body() == []
        if attempt == 1:
            assert slept(call) == 0.0
    error = raised(call)
    assert type(error) is ProtocolError
    assert "200" in str(error)
    assert "no line of the body could be read" in str(error)
    assert error.retryable is False  # the second unreadable answer: not worth a third
    assert call.retries == 1


def test_an_answer_of_empty_messages_is_readable() -> None:
    call = make_call()
    begin(call)
    assert stream(call, answer("", "")) == []
    assert call.next_action() is COMPLETE
    assert call.transcript.text == ""


def test_anomalies_are_counted_over_every_attempt() -> None:
    call = make_call()
    begin(call)
    assert stream(call, b"junk\n" + answer("Hel") + b"[1]\n", end=False) == ["Hel"]
    assert call.anomalies == 2
    call.failed(APIConnectionError("reset"))
    assert call.anomalies == 2
    slept(call)
    begin(call)
    assert stream(call, answer("Hel") + b"more junk\n" + answer("lo")) == ["lo"]
    assert call.anomalies == 3
    assert call.next_action() is COMPLETE


# -- the retry budget ---------------------------------------------------------------------------


def test_progress_earns_a_fresh_budget() -> None:
    call = make_call(policy=RetryPolicy(max_retries=1, initial_backoff=0, jitter=0))
    begin(call)
    stream(call, answer("a"), end=False)
    call.failed(APIConnectionError("reset 1"))
    slept(call)
    begin(call)
    assert stream(call, answer("a", "b"), end=False) == ["b"]  # new text: progress
    call.failed(APIConnectionError("reset 2"))
    slept(call)  # granted although max_retries=1 was used once already
    begin(call)
    assert stream(call, answer("a", "b"), end=False) == []  # nothing new
    call.failed(APIConnectionError("reset 3"))
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "ab"
    assert call.retries == 2


def test_without_progress_the_budget_runs_out() -> None:
    call = make_call(policy=RetryPolicy(max_retries=1, initial_backoff=0, jitter=0))
    call.failed(APIConnectionError("refused"))
    slept(call)
    last = APIConnectionError("refused again")
    call.failed(last)
    assert raised(call) is last
    assert call.retries == 1


def test_without_resume_the_same_text_again_is_not_progress() -> None:
    # complete() starts every attempt over: an attempt that only gets as far as the last
    # one did has made no progress, or a server that always drops after its first line
    # would be retried for ever (there is no whole-call bound by default).
    call = make_call(resume=False, policy=RetryPolicy(max_retries=2, initial_backoff=0, jitter=0))
    actions = []
    for _ in range(3):
        begin(call)
        stream(call, answer("the same start"), end=False)
        call.failed(APIConnectionError("reset"))
        action = call.next_action()
        actions.append(type(action).__name__)
        if type(action) is Sleep:
            call.slept()
    assert actions == ["Sleep", "Sleep", "Raise"]
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert error.partial == "the same start"
    assert call.retries == 2


def test_without_resume_getting_further_is_progress() -> None:
    call = make_call(resume=False, policy=RetryPolicy(max_retries=1, initial_backoff=0, jitter=0))
    texts = ["a"]
    for _ in range(4):
        begin(call)
        stream(call, answer(*texts), end=False)
        call.failed(APIConnectionError("reset"))
        slept(call)  # each attempt got further than any before: a fresh budget
        texts.append("b")
    begin(call)
    assert "".join(stream(call, answer(*texts, "end"))) == "abbbbend"
    assert call.next_action() is COMPLETE


def test_a_failure_before_any_head_is_retried_with_the_same_request() -> None:
    call = make_call()
    first = send(call)
    call.failed(APITimeoutError("connect timeout", limit="connect", seconds=10))
    slept(call)
    second = send(call)
    assert second.request.body == first.request.body
    assert second.request.headers == first.request.headers


def test_no_back_off_into_the_total() -> None:
    call = make_call(policy=RetryPolicy(initial_backoff=5, jitter=0), timeout=Timeout(total=1))
    drop = APIConnectionError("reset")
    call.failed(drop)
    assert raised(call) is drop


# -- content encodings --------------------------------------------------------------------------

BODY = answer("Hel", "lo, ", "wörld 😀")


@pytest.mark.parametrize(
    "encoding", ["gzip", "x-gzip", "GZIP", "deflate", "identity", "deflate, gzip", "gzip, gzip"]
)
def test_codings_httpx_undoes_are_read(encoding: str) -> None:
    # httpx hands the call the decoded body: the call only refuses codings it cannot read.
    call = make_call()
    begin(call, 200, {"content-encoding": encoding})
    assert "".join(stream(call, BODY)) == "Hello, wörld 😀"
    assert call.next_action() is COMPLETE


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br"])
def test_an_encoding_not_asked_for_is_unreadable_retried_once(encoding: str) -> None:
    call = make_call(policy=RetryPolicy(max_retries=5, initial_backoff=0, jitter=0))
    for attempt in (1, 2):
        send(call)
        call.response_head(200, {"content-encoding": encoding})
        if attempt == 1:
            assert slept(call) == 0.0
    error = raised(call)
    assert type(error) is ProtocolError
    assert repr(encoding) in str(error)
    assert error.retryable is False
    assert call.retries == 1


def test_unreadable_answers_of_any_kind_share_the_one_retry() -> None:
    call = make_call(policy=RetryPolicy(max_retries=5, initial_backoff=0, jitter=0))
    begin(call)
    assert call.end_of_body() == []
    assert slept(call) == 0.0  # the empty answer: the one retry
    send(call)
    call.response_head(200, {"content-encoding": "br"})
    encoded = raised(call)
    assert type(encoded) is ProtocolError
    assert "'br'" in str(encoded)
    assert not encoded.retryable


# -- time -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_piece_window_opens_at_sent_and_closes_at_the_first_piece() -> None:
    clock = Clock()
    call = make_call(timeout=Timeout(60, first_piece=5), clock=clock)
    assert call.limits.cap("read") == 60.0
    send(call)
    clock.now = 2.0
    assert call.limits.cap("read") == 3.0
    call.response_head(200, {})
    assert call.receive(b'{"data": {"mess') == []
    assert call.limits.cap("read") == 3.0  # bytes, but no piece yet
    assert call.receive(b'age": "hi"}}\n') == ["hi"]
    assert call.limits.cap("read") == 60.0


def test_each_attempt_has_its_own_first_piece_window() -> None:
    clock = Clock()
    call = make_call(timeout=Timeout(60, first_piece=5), clock=clock)
    send(call)
    clock.now = 5.0
    error = call.limits.timeout_error()  # the I/O layer's wait ran out
    assert error.limit == "first_piece"
    call.failed(error)
    slept(call)
    clock.now = 7.0
    send(call)
    assert call.limits.cap("read") == 5.0


def test_the_headers_are_the_last_attempt_s() -> None:
    call = make_call()
    assert call.headers is None
    refused(call, 503, {"x-attempt": "1"})
    assert call.headers == {"x-attempt": "1"}
    slept(call)
    begin(call, 200, {"x-attempt": "2"})
    assert call.headers == {"x-attempt": "2"}


def test_json_loads_is_used() -> None:
    seen: list[bytes] = []

    def loads(data: bytes) -> object:
        seen.append(bytes(data))
        return json.loads(data)

    call = make_call(json_loads=loads)
    begin(call)
    assert stream(call, answer("x")) == ["x"]
    assert seen


def test_strict_makes_a_bad_line_an_error() -> None:
    call = make_call(strict=True)
    begin(call)
    assert call.receive(answer("ok") + b"junk\n") == ["ok"]
    error = raised(call)
    assert isinstance(error, StreamInterrupted)
    assert type(error.__cause__) is ProtocolError
    assert "unreadable stream line" in str(error.__cause__)


def test_max_line_bytes_bounds_a_line() -> None:
    call = make_call(max_line_bytes=64)
    begin(call)
    assert call.receive(b"x" * 100) == []  # refused before the line ends
    error = raised(call)
    assert type(error) is ProtocolError
    assert "64" in str(error)
