"""``Call`` and ``TokenFetch``: the token of a chat call, its generations, and its fetch.

No sockets: each test plays the I/O layer by hand, as ``test_call.py`` does. Where the
call asks for a token (``FETCH_TOKEN``), the I/O layer puts the one it fetched in the
client's ``TokenCache`` and hands it to the call (``fetched`` below does both); several
calls share one cache, as the calls of one client do.
"""

from __future__ import annotations

import time

import pytest

from aichatonline._core import (
    CHAT_PATH,
    COMPLETE,
    FETCH_TOKEN,
    READ_ERROR,
    TOKEN_PATH,
    Call,
    Fetched,
    Raise,
    RetryPolicy,
    Send,
    Sleep,
    Timeout,
    TokenCache,
    TokenFetch,
)
from aichatonline._core.call import STALE_RESENDS
from aichatonline._core.timeouts import TimeLimits
from aichatonline._exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BlockedError,
    ProtocolError,
    ServerError,
)
from tests.test_call import (
    BASE,
    HEADERS,
    NO_WAIT,
    answer,
    begin,
    make_call,
    raised,
    refused,
    send,
    slept,
    stream,
)


def fetched(call: Call, token: str) -> None:
    """What the I/O layer does for ``FETCH_TOKEN``: the token fetched goes in the cache,
    then to the call."""
    assert call.next_action() is FETCH_TOKEN
    call.tokens.fetched(token)
    call.token_ready(token)


def rejected(call: Call, status: int = 401, *, in_flight: bool = False) -> None:
    """The call's request is sent (``in_flight``: it was already) and refused with
    ``status``."""
    if not in_flight:
        send(call)
    call.response_head(status, {})
    assert call.next_action() is READ_ERROR
    call.error_body(b'{"msg": "invalid UniqueId"}')


def sent_with(call: Call) -> str:
    action = call.next_action()
    assert type(action) is Send, action
    return action.request.headers["UniqueId"]


# -- the token ----------------------------------------------------------------------------------


def test_a_rejected_token_is_refreshed_once() -> None:
    cache = TokenCache()
    cache.fetched("old")
    call = make_call(cache=cache)
    refused(call, 401, body=b'{"msg": "bad token"}')
    assert call.next_action() is FETCH_TOKEN
    assert cache.token is None  # dropped: it was still the current one
    fetched(call, "new")
    action = begin(call)
    assert action.request.headers["UniqueId"] == "new"
    assert stream(call, answer("ok")) == ["ok"]
    assert call.next_action() is COMPLETE


def test_a_rejected_token_another_call_replaced_stays_replaced() -> None:
    cache = TokenCache()
    cache.fetched("old")
    call = make_call(cache=cache)
    send(call)
    cache.fetched("newer")  # another call refreshed the token meanwhile
    call.response_head(403, {})
    call.error_body(b"")
    assert cache.token == "newer"
    # Sent again at once with the newer token: no fetch, no wait, no retry, no refresh.
    assert begin(call).request.headers["UniqueId"] == "newer"
    assert stream(call, answer("ok")) == ["ok"]
    assert (call.retries, call.next_action()) == (0, COMPLETE)


@pytest.mark.parametrize("statuses", [(401, 401), (401, 403), (403, 401)])
def test_a_second_rejection_is_final(statuses: tuple[int, int]) -> None:
    call = make_call()
    refused(call, statuses[0])
    fetched(call, "new")
    refused(call, statuses[1], body=b"still no")
    error = raised(call)
    assert type(error) is AuthenticationError
    assert error.status_code == statuses[1]
    assert error.method == "POST"
    assert error.url == f"{BASE}{CHAT_PATH}"


def test_a_rejection_after_a_retry_is_still_refreshed_once_per_call() -> None:
    call = make_call()
    refused(call, 503)
    slept(call)
    refused(call, 401)
    assert call.next_action() is FETCH_TOKEN
    fetched(call, "new")
    refused(call, 401)
    assert isinstance(raised(call), AuthenticationError)


def test_a_cloudflare_block_is_not_a_token_to_refresh() -> None:
    call = make_call()
    refused(call, 403, {"cf-mitigated": "challenge"})
    assert isinstance(raised(call), BlockedError)


def test_a_failed_token_fetch_ends_the_call() -> None:
    call = make_call(token=None)
    assert call.next_action() is FETCH_TOKEN
    failure = ServerError("HTTP 503", status_code=503, retryable=True)
    call.token_failed(failure)
    assert raised(call) is failure  # it was retried on its own: no retry here


def test_a_token_echoed_in_an_error_body_is_masked() -> None:
    call = make_call(token="tok-SECRET-42")
    refused(call, 400, body=b'{"error": "invalid UniqueId tok-SECRET-42"}')
    error = raised(call)
    assert "tok-SECRET-42" not in str(error)
    assert "tok-SECRET-42" not in error.body  # type: ignore[attr-defined]


# -- generations: a token another call replaced costs nothing -----------------------------------


def test_a_rejected_token_another_call_dropped_is_fetched_again_for_free() -> None:
    cache = TokenCache()
    cache.fetched("old")
    first, second = make_call(cache=cache), make_call(cache=cache)
    send(first), send(second)
    rejected(first, in_flight=True)  # the first to hear of it: its refresh
    assert cache.token is None
    rejected(second, in_flight=True)  # the same revocation: not its refresh
    assert second.next_action() is FETCH_TOKEN
    fetched(second, "new")
    first.token_ready("new")  # it waited for the same fetch
    for call in (first, second):
        begin(call)
        assert stream(call, answer("ok")) == ["ok"]
        assert call.retries == 0
    # The second still has its refresh; the first spent it.
    assert (first._refreshed, second._refreshed) == (True, False)


def test_two_revocations_in_a_burst_fail_no_call() -> None:
    """The issue's case: every call in flight hears of each revocation; only the newest
    token's first rejection is a refresh, so no call runs out."""
    cache = TokenCache()
    cache.fetched("t1")
    calls = [make_call(cache=cache) for _ in range(4)]
    for burst, (old, new) in enumerate([("t1", "t2"), ("t2", "t3")]):
        for call in calls:
            assert sent_with(call) == old
            send(call)
        # A different call hears first each time; the others see a dropped token.
        for call in calls[burst:] + calls[:burst]:
            rejected(call, in_flight=True)
            assert call.next_action() is FETCH_TOKEN
        fetched(calls[burst], new)
        for call in calls:
            if call is not calls[burst]:
                call.token_ready(cache.token)  # type: ignore[arg-type]
    for call in calls:
        assert sent_with(call) == "t3"
        begin(call)
        assert stream(call, answer("done")) == ["done"]
        assert (call.retries, call.next_action()) == (0, COMPLETE)


def test_a_free_resend_keeps_the_refresh_for_the_newest_token() -> None:
    cache = TokenCache()
    cache.fetched("old")
    call = make_call(cache=cache)
    send(call)
    cache.fetched("newer")
    call.response_head(401, {})
    call.error_body(b"")
    assert sent_with(call) == "newer"  # free
    rejected(call)  # the newest, rejected: the refresh
    assert cache.token is None
    fetched(call, "newest")
    rejected(call)  # the token fetched for this call, rejected too: final
    error = raised(call)
    assert type(error) is AuthenticationError
    assert call.retries == 0


def test_the_same_string_issued_again_is_a_new_generation() -> None:
    cache = TokenCache()
    cache.fetched("same")
    call = make_call(cache=cache)
    send(call)
    cache.fetched("same")  # revoked and issued again as it was, by another call's refresh
    call.response_head(401, {})
    call.error_body(b"")
    assert sent_with(call) == "same"
    assert cache.token == "same"  # not dropped: this call's rejection was of the old one
    assert not call._refreshed


def test_a_token_replaced_between_its_fetch_and_its_use_is_outdated() -> None:
    cache = TokenCache()
    call = make_call(cache=cache, token=None)
    assert call.next_action() is FETCH_TOKEN
    cache.fetched("t1")
    cache.fetched("t2")  # another thread's refresh came in between
    call.token_ready("t1")
    rejected(call)
    assert sent_with(call) == "t2"
    assert cache.token == "t2"


def test_a_stale_rejection_is_neither_a_retry_nor_a_wait() -> None:
    cache = TokenCache()
    cache.fetched("t1")
    call = make_call(cache=cache, policy=RetryPolicy(max_retries=0))
    send(call)
    cache.fetched("t2")
    call.response_head(403, {})
    call.error_body(b"")
    assert type(call.next_action()) is Send  # no Sleep first, even with no retries at all
    begin(call)
    assert stream(call, answer("ok")) == ["ok"]
    assert call.retries == 0


def test_free_resends_are_bounded() -> None:
    """A call whose token is replaced under it again and again gives up: after its
    allowance the rejection counts as of the newest (the refresh, then final)."""
    cache = TokenCache()
    cache.fetched("t0")
    call = make_call(cache=cache)
    for generation in range(1, STALE_RESENDS + 1):
        send(call)
        cache.fetched(f"t{generation}")  # replaced before the answer came
        call.response_head(401, {})
        call.error_body(b"")
        assert sent_with(call) == f"t{generation}"
    send(call)
    cache.fetched("tx")
    call.response_head(401, {})
    call.error_body(b"")
    assert call.next_action() is FETCH_TOKEN  # the allowance is spent: the refresh
    assert cache.token == "tx"  # not this call's to drop
    fetched(call, "ty")
    send(call)
    cache.fetched("tz")
    call.response_head(401, {})
    call.error_body(b"")
    assert type(raised(call)) is AuthenticationError


def test_progress_renews_the_allowance_of_free_resends() -> None:
    cache = TokenCache()
    cache.fetched("t0")
    call = make_call(cache=cache)
    generation = 0
    texts = ["a", "b", "c"]
    for done in range(1, len(texts) + 1):
        for _ in range(STALE_RESENDS):
            send(call)
            generation += 1
            cache.fetched(f"t{generation}")
            call.response_head(401, {})
            call.error_body(b"")
        begin(call)
        # The answer so far, then one new piece: progress, then a drop.
        assert stream(call, answer(*texts[:done]), end=False) == [texts[done - 1]]
        call.failed(APIConnectionError("reset"))
        assert slept(call) == 0.0
    begin(call)
    assert stream(call, answer(*texts, "end")) == ["end"]
    assert not call._refreshed


def test_after_a_back_off_the_newest_token_is_sent() -> None:
    cache = TokenCache()
    cache.fetched("t1")
    call = make_call(cache=cache)
    refused(call, 503)
    cache.fetched("t2")  # refreshed by another call during the back-off
    slept(call)
    assert sent_with(call) == "t2"
    cache.forget("t2")  # and dropped by another
    refused(call, 503)
    slept(call)
    assert call.next_action() is FETCH_TOKEN
    assert not call._refreshed


def test_an_error_status_is_read_before_the_token_is_judged() -> None:
    call = make_call()
    begin(call, 401)
    assert call.next_action() is READ_ERROR
    assert call.tokens.token == "tok-1"  # nothing decided before the body came


# -- TokenFetch ---------------------------------------------------------------------------------


def make_fetch(policy: RetryPolicy = NO_WAIT, timeout: Timeout | None = None) -> TokenFetch:
    return TokenFetch(BASE, HEADERS, policy=policy, limits=TimeLimits(timeout or Timeout()))


def fetch_send(fetch: TokenFetch) -> Send:
    action = fetch.next_action()
    assert type(action) is Send, action
    return action


def test_token_fetch_success() -> None:
    fetch = make_fetch()
    request = fetch_send(fetch).request
    assert request.method == "GET"
    assert request.url.startswith(f"{BASE}{TOKEN_PATH}?canvas=-")
    assert dict(request.headers) == HEADERS
    fetch.response(200, {}, b'{"code": 200, "data": "tok-xyz"}')
    done = fetch.next_action()
    assert type(done) is Fetched
    assert done.token == "tok-xyz"
    assert "tok-xyz" not in repr(done)


@pytest.mark.parametrize("body", [b"", b"<html>", b'{"data": ""}', b'{"data": "a b"}'])
def test_token_fetch_bad_body(body: bytes) -> None:
    # A 200 that is not a token (a maintenance page, say) is tried again, like an
    # unreadable chat answer, until the retries run out.
    fetch = make_fetch()
    sleeps = 0
    while True:
        fetch_send(fetch)
        fetch.response(200, {}, body)
        action = fetch.next_action()
        if type(action) is not Sleep:
            break
        sleeps += 1
        fetch.slept()
    assert sleeps >= 1
    assert type(action) is Raise
    assert isinstance(action.error, ProtocolError)
    assert "token response" in str(action.error)


@pytest.mark.parametrize(
    ("status", "error_type"), [(404, APIStatusError), (401, AuthenticationError)]
)
def test_token_fetch_refused(status: int, error_type: type[APIStatusError]) -> None:
    fetch = make_fetch()
    request = fetch_send(fetch).request
    fetch.response(status, {"x-id": "1"}, b"no")
    action = fetch.next_action()
    assert type(action) is Raise
    assert type(action.error) is error_type
    assert action.error.method == "GET"
    assert action.error.url == request.url.partition("?")[0]  # the canvas left out


def test_token_fetch_retries_with_a_new_canvas() -> None:
    fetch = make_fetch()
    first = fetch_send(fetch).request
    fetch.response(503, {}, b"")
    action = fetch.next_action()
    assert type(action) is Sleep
    assert action.seconds == 0.0
    fetch.slept()
    second = fetch_send(fetch).request
    assert second.url != first.url
    fetch.failed(APIConnectionError("reset"))
    assert type(fetch.next_action()) is Sleep
    fetch.slept()
    fetch_send(fetch)
    fetch.response(200, {}, b'{"data": "tok"}')
    done = fetch.next_action()
    assert type(done) is Fetched
    assert done.token == "tok"


def test_token_fetch_honours_retry_after() -> None:
    fetch = make_fetch(RetryPolicy(initial_backoff=0.1, jitter=0))
    fetch_send(fetch)
    fetch.response(429, {"retry-after": "4"}, b"")
    action = fetch.next_action()
    assert type(action) is Sleep
    assert action.seconds == 4.0


def test_token_fetch_gives_up_after_its_retries() -> None:
    fetch = make_fetch(RetryPolicy(max_retries=2, initial_backoff=0, jitter=0))
    for _ in range(2):
        fetch_send(fetch)
        fetch.response(500, {}, b"")
        assert type(fetch.next_action()) is Sleep
        fetch.slept()
    fetch_send(fetch)
    fetch.response(502, {}, b"last")
    action = fetch.next_action()
    assert type(action) is Raise
    assert type(action.error) is ServerError
    assert action.error.status_code == 502


def test_token_fetch_never_waits_into_the_total() -> None:
    started = time.monotonic()
    fetch = make_fetch(RetryPolicy(initial_backoff=10, jitter=0), Timeout(total=2))
    fetch_send(fetch)
    fetch.failed(APIConnectionError("refused"))
    action = fetch.next_action()
    assert type(action) is Raise
    assert time.monotonic() - started < 1.0
