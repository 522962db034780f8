"""Timeouts, the whole-call deadline, and which failures are retried after how long."""

from __future__ import annotations

import math
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aichatonline._core import Deadline, RetryPolicy, Timeout, status_error
from aichatonline._exceptions import (
    AiChatOnlineError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BlockedError,
    InvalidRequestError,
    ProtocolError,
    RateLimitError,
    ServerError,
    ServiceError,
    StreamInterrupted,
)

# -- Timeout ----------------------------------------------------------------------------


def test_timeout_defaults() -> None:
    assert Timeout() == Timeout(total=600.0, connect=10.0, read=60.0, write=30.0, pool=30.0)


def test_number_bounds_the_call_and_caps_each_operation() -> None:
    assert Timeout.of(5) == Timeout(total=5, connect=5, read=5, write=5, pool=5)
    assert Timeout.of(20.0) == Timeout(total=20.0, connect=10.0, read=20.0, write=20.0, pool=20.0)
    assert Timeout.of(1000) == Timeout(total=1000, connect=10.0, read=60.0, write=30.0, pool=30.0)
    assert Timeout.of(0.25).connect == 0.25


def test_none_turns_every_limit_off() -> None:
    assert Timeout.of(None) == Timeout(total=None, connect=None, read=None, write=None, pool=None)


def test_httpx_timeout_sets_the_operations_and_keeps_the_total() -> None:
    timeout = Timeout.of(httpx.Timeout(3.0, connect=1.0, pool=None))
    assert timeout == Timeout(total=600.0, connect=1.0, read=3.0, write=3.0, pool=None)
    assert Timeout.of(httpx.Timeout(None)) == Timeout(
        total=600.0, connect=None, read=None, write=None, pool=None
    )


def test_timeout_passes_through() -> None:
    timeout = Timeout(total=9.0, read=2.0)
    assert Timeout.of(timeout) is timeout


@pytest.mark.parametrize(
    "value",
    [0, -1, -0.5, math.nan, math.inf, True, False, "10", b"1", Ellipsis, [1], {"total": 1}],
    ids=repr,
)
def test_bad_timeout_values(value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Timeout.of(value)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert info.value.field is not None
    assert info.value.field.startswith("timeout")


@pytest.mark.parametrize("name", ["total", "connect", "read", "write", "pool"])
@pytest.mark.parametrize("value", [0, -3, math.nan, math.inf, "5", True])
def test_bad_timeout_fields(name: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        Timeout(**{name: value})  # type: ignore[arg-type]
    assert info.value.field == f"timeout.{name}"


def test_bad_httpx_timeout_field() -> None:
    with pytest.raises(InvalidRequestError):
        Timeout.of(httpx.Timeout(-1.0))


# -- Deadline -----------------------------------------------------------------------------


def test_deadline_without_a_total() -> None:
    deadline = Deadline(None)
    assert deadline.remaining() is None
    assert not deadline.expired()
    assert deadline.cap(None) is None
    assert deadline.cap(7.5) == 7.5


def test_deadline_running() -> None:
    deadline = Deadline(30.0)
    remaining = deadline.remaining()
    assert remaining is not None
    assert 29.0 < remaining <= 30.0
    assert not deadline.expired()
    assert deadline.cap(3.0) == 3.0
    capped = deadline.cap(100.0)
    assert capped is not None
    assert 29.0 < capped <= 30.0
    none_capped = deadline.cap(None)
    assert none_capped is not None
    assert 29.0 < none_capped <= 30.0
    later = deadline.remaining()
    assert later is not None
    assert later <= remaining  # the monotonic clock only goes forward


def test_deadline_spent() -> None:
    deadline = Deadline(30.0)
    deadline.at = time.monotonic() - 5.0  # as if 35 seconds had passed
    remaining = deadline.remaining()
    assert remaining is not None
    assert remaining <= -5.0
    assert deadline.expired()
    assert deadline.cap(10.0) == 0.0
    assert deadline.cap(None) == 0.0


def test_deadline_really_runs_out() -> None:
    deadline = Deadline(0.02)
    time.sleep(0.03)
    assert deadline.expired()
    assert deadline.cap(1.0) == 0.0


# -- RetryPolicy.should_retry ---------------------------------------------------------------

POLICY = RetryPolicy()


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (APIConnectionError("refused"), True),
        (APITimeoutError("read timed out"), True),
        (StreamInterrupted("broke", partial="abc"), False),
        (RateLimitError("429", status_code=429), True),
        (RateLimitError("429", status_code=429, retry_after=0.0), True),
        (RateLimitError("429", status_code=429, retry_after=60.0), True),
        (RateLimitError("429", status_code=429, retry_after=60.5), False),
        (RateLimitError("429", status_code=429, retry_after=3600.0), False),
        (RateLimitError("402", status_code=402), False),
        (RateLimitError("402", status_code=402, retry_after=5.0), True),
        (RateLimitError("402", status_code=402, retry_after=61.0), False),
        (APIStatusError("408", status_code=408), True),
        (APIStatusError("409", status_code=409), True),
        (ServerError("500", status_code=500), True),
        (ServerError("502", status_code=502), True),
        (ServerError("503", status_code=503), True),
        (ServerError("599", status_code=599), True),
        (BlockedError("403", status_code=403), False),
        (BlockedError("503", status_code=503), False),
        (AuthenticationError("401", status_code=401), False),
        (AuthenticationError("403", status_code=403), False),
        (APIStatusError("400", status_code=400), False),
        (APIStatusError("404", status_code=404), False),
        (APIStatusError("422", status_code=422), False),
        (ServiceError("in-band", code=500), False),
        (ProtocolError("garbled"), False),
        (InvalidRequestError("bad input"), False),
        (AiChatOnlineError("root"), False),
        (ValueError("not ours"), False),
        (RuntimeError("not ours"), False),
        (KeyboardInterrupt(), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_should_retry(error: BaseException, retry: bool) -> None:
    assert POLICY.should_retry(error) is retry


def test_max_retry_after_is_configurable() -> None:
    error = RateLimitError("429", status_code=429, retry_after=120.0)
    assert not RetryPolicy().should_retry(error)
    assert RetryPolicy(max_retry_after=120.0).should_retry(error)
    assert not RetryPolicy(max_retry_after=0.0).should_retry(
        RateLimitError("429", status_code=429, retry_after=0.5)
    )


@pytest.mark.parametrize("status", range(400, 600))
def test_should_retry_follows_the_status_table(status: int) -> None:
    # PROTOCOL.md: 408, 409, 5xx and 429 are retried; 402 only with a Retry-After; not the rest.
    plain = status_error(status, {}, b"")
    assert POLICY.should_retry(plain) is (status in (408, 409, 429) or status >= 500)
    with_wait = status_error(status, {"retry-after": "1"}, b"")
    assert POLICY.should_retry(with_wait) is (status in (402, 408, 409, 429) or status >= 500)
    challenge = status_error(status, {"cf-mitigated": "challenge"}, b"")
    if isinstance(challenge, BlockedError):
        assert not POLICY.should_retry(challenge)


# -- RetryPolicy.delay ----------------------------------------------------------------------


def test_delay_is_exponential_and_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=8.0, jitter=0.5)
    assert [policy.delay(attempt, None, 0.0) for attempt in range(1, 8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        8.0,
        8.0,
    ]
    assert policy.delay(10_000, None, 0.0) == 8.0  # no overflow however many attempts


def test_delay_jitter() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0, jitter=0.5)
    assert policy.delay(1, None, 0.5) == 1.25
    assert policy.delay(2, ServerError("x", status_code=500), 0.999) == pytest.approx(2.4995)
    assert RetryPolicy(jitter=0.0).delay(1, None, 0.9) == 0.5


def test_delay_uses_retry_after_as_is() -> None:
    policy = RetryPolicy(max_backoff=1.0, jitter=3.0)
    assert policy.delay(1, RateLimitError("x", status_code=429, retry_after=7.0), 0.9) == 7.0
    assert policy.delay(5, RateLimitError("x", status_code=402, retry_after=0.0), 0.9) == 0.0
    no_header = RateLimitError("x", status_code=429)
    assert policy.delay(1, no_header, 0.0) == 0.5  # backoff (initial 0.5) when no Retry-After


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 60),
    st.floats(0.0, 1.0, exclude_max=True),
    st.floats(0.0, 10.0),
    st.floats(0.0, 100.0),
    st.floats(0.0, 5.0),
)
def test_delay_bounds(
    attempt: int, random: float, initial: float, maximum: float, jitter: float
) -> None:
    policy = RetryPolicy(initial_backoff=initial, max_backoff=maximum, jitter=jitter)
    backoff = min(maximum, initial * 2.0 ** (attempt - 1))
    delay = policy.delay(attempt, None, random)
    assert backoff <= delay <= backoff + jitter
    assert delay == pytest.approx(backoff + random * jitter)
    assert policy.delay(attempt + 1, None, random) >= delay


# -- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"max_retries": "2"}, "max_retries"),
        ({"initial_backoff": -0.1}, "initial_backoff"),
        ({"initial_backoff": math.nan}, "initial_backoff"),
        ({"max_backoff": -1}, "max_backoff"),
        ({"jitter": -1}, "jitter"),
        ({"jitter": math.nan}, "jitter"),
        ({"max_retry_after": -5}, "max_retry_after"),
    ],
)
def test_invalid_policy(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RetryPolicy(**options)  # type: ignore[arg-type]
    assert info.value.field == field


def test_valid_policy_edges() -> None:
    policy = RetryPolicy(max_retries=0, initial_backoff=0, max_backoff=0, jitter=0)
    assert policy.delay(3, None, 0.5) == 0.0
    assert policy.should_retry(APIConnectionError("x"))  # retrying is max_retries' business


def test_timeout_fields_are_keyword_only() -> None:
    # Timeout(5) would read as "5 s for everything" (httpx's meaning) but set
    # only the total: the fields are keywords, and a number goes to Timeout.of.
    with pytest.raises(TypeError):
        Timeout(5)  # type: ignore[misc]
