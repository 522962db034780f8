"""What a client keeps between calls: ``TokenCache``."""

from __future__ import annotations

import pytest

from aichatonline._core import RetryPolicy, Timeout, TokenCache, status_error
from aichatonline._exceptions import (
    APIConnectionError,
    APITimeoutError,
    InvalidRequestError,
    ProtocolError,
    ServerError,
)

# -- TokenCache -------------------------------------------------------------------------------

#: The limits of the fetcher and (unless a test says otherwise) of the waiters.
POLICY = RetryPolicy()
TIMEOUT = Timeout(5)


def test_a_new_cache_is_empty() -> None:
    cache = TokenCache()
    assert cache.token is None
    assert cache.fetches == 0
    assert cache.shared_failure(0, POLICY, TIMEOUT) is None


def test_fetched() -> None:
    cache = TokenCache()
    cache.fetched("tok-1")
    assert cache.token == "tok-1"
    assert cache.fetches == 1
    cache.fetched("tok-2")
    assert cache.token == "tok-2"
    assert cache.fetches == 2


def test_setting_the_token_checks_it() -> None:
    cache = TokenCache()
    cache.token = "abc-123"
    assert cache.token == "abc-123"
    cache.token = None
    assert cache.token is None
    assert cache.fetches == 0  # setting is not fetching


@pytest.mark.parametrize("value", ["", "a b", "tok\r\nX-Injected: 1", "tök", "\t", 5, b"tok"])
def test_setting_a_bad_token_is_refused(value: object) -> None:
    cache = TokenCache()
    cache.token = "good"
    with pytest.raises(InvalidRequestError) as info:
        cache.token = value  # type: ignore[assignment]
    assert info.value.field == "token"
    assert cache.token == "good"  # unchanged


def test_forget_drops_the_current_token() -> None:
    cache = TokenCache()
    cache.fetched("tok-1")
    cache.forget("tok-1")
    assert cache.token is None


def test_forget_keeps_a_token_another_call_put_in_its_place() -> None:
    cache = TokenCache()
    cache.fetched("old")
    cache.fetched("new")  # another call refreshed it already
    cache.forget("old")
    assert cache.token == "new"
    cache.forget("new")
    assert cache.token is None
    cache.forget("new")  # nothing left: harmless
    assert cache.token is None


def test_every_new_token_is_a_new_generation() -> None:
    cache = TokenCache()
    assert cache.current == (None, 0)
    cache.fetched("a")
    assert (cache.current, cache.generation) == (("a", 1), 1)
    cache.fetched("a")  # the same string, issued again: a new token all the same
    assert cache.current == ("a", 2)
    cache.token = "b"  # set by the caller: new
    assert cache.current == ("b", 3)
    cache.token = "b"  # the same again: nothing new
    assert cache.current == ("b", 3)
    cache.token = None  # dropped: no new token
    assert cache.current == (None, 3)
    cache.token = "b"  # back, but as a new one
    assert cache.current == ("b", 4)


def test_is_current_needs_the_token_and_its_generation() -> None:
    cache = TokenCache()
    cache.fetched("a")
    assert cache.is_current("a", 1)
    assert not cache.is_current("a", 0)
    assert not cache.is_current("b", 1)
    cache.fetched("a")
    assert not cache.is_current("a", 1)
    cache.forget("a")
    assert not cache.is_current("a", 2)


def test_forget_of_an_older_generation_keeps_the_token() -> None:
    cache = TokenCache()
    cache.fetched("a")
    cache.fetched("a")  # revoked, then issued again as the same string
    cache.forget("a", 1)  # a rejection of the first one
    assert cache.current == ("a", 2)
    cache.forget("a", 2)
    assert cache.current == (None, 2)  # dropping is not a new generation


def test_a_failed_fetch_is_not_a_new_generation() -> None:
    cache = TokenCache()
    cache.fetched("a")
    cache.failed(APIConnectionError("refused"), POLICY, TIMEOUT)
    assert cache.current == ("a", 1)


def test_a_failure_is_shared_with_whoever_waited_for_that_fetch() -> None:
    cache = TokenCache()
    seen = cache.fetches  # a waiter notes the count, then waits for the lock
    cause = ConnectionResetError("reset by peer")
    error = APIConnectionError("could not fetch the token")
    error.__cause__ = cause
    cache.failed(error, POLICY, TIMEOUT)
    assert cache.fetches == seen + 1
    assert cache.token is None
    shared = cache.shared_failure(seen, POLICY, TIMEOUT)
    assert shared is not None
    assert shared is not error  # each waiter raises its own object
    assert type(shared) is APIConnectionError
    assert str(shared) == str(error)
    assert shared.__cause__ is cause  # the cause is kept
    other = cache.shared_failure(seen, POLICY, TIMEOUT)
    assert other is not None
    assert other is not shared


def test_a_shared_copy_keeps_every_attribute() -> None:
    cache = TokenCache()
    error = status_error(503, {"retry-after": "3", "x-id": "7"}, b"down")
    assert isinstance(error, ServerError)
    cache.failed(error, POLICY, TIMEOUT)
    shared = cache.shared_failure(0, POLICY, TIMEOUT)
    assert isinstance(shared, ServerError)
    assert shared.status_code == 503
    assert shared.retry_after == 3.0
    assert shared.headers == {"retry-after": "3", "x-id": "7"}
    assert shared.body == "down"


def test_a_timeout_copy_keeps_its_limit() -> None:
    cache = TokenCache()
    cache.failed(APITimeoutError("total timeout", limit="total", seconds=5.0), POLICY, TIMEOUT)
    shared = cache.shared_failure(0, POLICY, TIMEOUT)
    assert isinstance(shared, APITimeoutError)
    assert (shared.limit, shared.seconds) == ("total", 5.0)


def test_raising_a_copy_leaves_the_original_untouched() -> None:
    cache = TokenCache()
    error = ProtocolError("the token response is not JSON")
    cache.failed(error, POLICY, TIMEOUT)
    shared = cache.shared_failure(0, POLICY, TIMEOUT)
    assert shared is not None
    with pytest.raises(ProtocolError):
        raise shared
    assert error.__traceback__ is None


def test_a_refusal_no_retry_mends_is_shared_whatever_the_waiters_limits() -> None:
    cache = TokenCache()
    cache.failed(status_error(403, {}, b"forbidden"), RetryPolicy(max_retries=0), Timeout(0.1))
    assert cache.shared_failure(0, RetryPolicy(max_retries=5), Timeout(None)) is not None


@pytest.mark.parametrize(
    ("policy", "timeout"),
    [
        (RetryPolicy(max_retries=3), TIMEOUT),  # more retries than the fetcher had
        (POLICY, Timeout(60)),  # other time limits
        (POLICY, Timeout(5, total=30)),  # a whole-call bound the fetcher did not have
    ],
    ids=["more-retries", "other-timeout", "other-total"],
)
@pytest.mark.parametrize(
    "error",
    [
        APITimeoutError("total timeout", limit="total", seconds=0.3),
        APIConnectionError("connection refused"),
        status_error(503, {}, b"down"),
    ],
    ids=["timeout", "connection", "503"],
)
def test_a_failure_of_the_fetchers_own_limits_is_not_shared(
    policy: RetryPolicy, timeout: Timeout, error: Exception
) -> None:
    # One call's Timeout(total=0.3) or max_retries=0 must not fail the calls that waited.
    cache = TokenCache()
    cache.failed(error, POLICY, TIMEOUT)  # type: ignore[arg-type]
    assert cache.shared_failure(0, policy, timeout) is None
    # A waiter with the same limits, or fewer retries, would have failed the same way.
    assert cache.shared_failure(0, RetryPolicy(max_retries=1), TIMEOUT) is not None


def test_no_shared_failure_for_a_fetch_the_waiter_did_not_wait_for() -> None:
    cache = TokenCache()
    cache.failed(APIConnectionError("old failure"), POLICY, TIMEOUT)
    assert (
        cache.shared_failure(cache.fetches, POLICY, TIMEOUT) is None
    )  # nothing finished while it waited


def test_a_success_after_a_failure_clears_it() -> None:
    cache = TokenCache()
    cache.failed(APIConnectionError("failed"), POLICY, TIMEOUT)
    cache.fetched("tok")
    assert cache.fetches == 2
    assert cache.shared_failure(0, POLICY, TIMEOUT) is None
    assert cache.token == "tok"


def test_the_latest_failure_is_the_one_shared() -> None:
    cache = TokenCache()
    cache.failed(APIConnectionError("first"), POLICY, TIMEOUT)
    cache.failed(APIConnectionError("second"), POLICY, TIMEOUT)
    shared = cache.shared_failure(0, POLICY, TIMEOUT)
    assert shared is not None
    assert str(shared) == "second"
    assert cache.fetches == 2
