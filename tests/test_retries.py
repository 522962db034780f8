"""``RetryPolicy``: which failures are retried, and ``Attempts``: how long tenacity says to wait.

No sleeping: ``Attempts.failed`` only answers with the wait. The whole-call bound is
measured by tenacity on ``time.monotonic``, so the tests of it use a real, short total.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import pytest

import aichatonline
from aichatonline._core import (
    Attempts,
    RetryPolicy,
    TimeLimits,
    Timeout,
    is_testing,
    set_testing,
    status_error,
)
from aichatonline._exceptions import (
    AiChatOnlineError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    BlockedError,
    InvalidRequestError,
    ProtocolError,
    ServiceError,
    StreamInterrupted,
)

POLICY = RetryPolicy()
CHALLENGE = b"<html><title>Just a moment...</title></html>"


def attempts(policy: RetryPolicy, timeout: Timeout | None = None) -> Attempts:
    return Attempts(policy, TimeLimits(timeout or Timeout()), "the test")


def drop() -> APIConnectionError:
    return APIConnectionError("connection reset")


@pytest.fixture(autouse=True)
def _waits_on() -> None:
    # Each test starts with real back-off (a test that switches it off restores it).
    assert not is_testing()


# -- RetryPolicy: construction ------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (
        policy.max_retries,
        policy.initial_backoff,
        policy.max_backoff,
        policy.jitter,
        policy.max_retry_after,
    ) == (2, 0.5, 8.0, 0.5, 60.0)


def test_numbers_become_floats() -> None:
    policy = RetryPolicy(initial_backoff=1, max_backoff=4, jitter=0, max_retry_after=30)
    for name in ("initial_backoff", "max_backoff", "jitter", "max_retry_after"):
        assert type(getattr(policy, name)) is float
    assert policy.initial_backoff == 1.0


@pytest.mark.parametrize("value", [-1, 1.5, True, False, "2", None, 2.0], ids=repr)
def test_bad_max_retries(value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RetryPolicy(max_retries=value)  # type: ignore[arg-type]
    assert info.value.field == "max_retries"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["initial_backoff", "max_backoff", "jitter", "max_retry_after"])
@pytest.mark.parametrize("value", [-0.1, -1, math.nan, "1", True, None, [1]], ids=repr)
def test_bad_numbers_name_the_field(name: str, value: object) -> None:
    with pytest.raises(InvalidRequestError) as info:
        RetryPolicy(**{name: value})  # type: ignore[arg-type]
    assert info.value.field == name
    assert name in str(info.value)


def test_zero_everywhere_is_valid() -> None:
    policy = RetryPolicy(max_retries=0, initial_backoff=0, max_backoff=0, jitter=0)
    assert policy.max_retries == 0
    assert policy.should_retry(drop())  # whether to retry at all is max_retries' business


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.max_retries = 5  # type: ignore[misc]
    assert RetryPolicy(max_retries=3) == RetryPolicy(max_retries=3)


# -- RetryPolicy.should_retry over the error table ----------------------------------------------


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (APIConnectionError("refused"), True),
        (APITimeoutError("read timeout", limit="read", seconds=5), True),
        (APITimeoutError("total timeout", limit="total", seconds=5), True),
        (StreamInterrupted("broke", partial="abc"), False),
        (ProtocolError("garbled"), False),
        (ProtocolError("garbled", retryable=False), False),
        (ProtocolError("unreadable answer", retryable=True), True),
        (APIConnectionError("dropped"), True),
        (APIConnectionError("the proxy said 407", retryable=False), False),
        (ServiceError("in-band", code=500), False),
        (InvalidRequestError("bad input"), False),
        (AiChatOnlineError("root"), False),
        (ValueError("not ours"), False),
        (KeyboardInterrupt(), False),
    ],
    ids=lambda value: repr(value) if isinstance(value, BaseException) else str(value),
)
def test_should_retry(error: BaseException, retry: bool) -> None:
    assert POLICY.should_retry(error) is retry


def test_a_stream_interrupted_is_never_retried_whatever_its_cause() -> None:
    error = StreamInterrupted("broke", partial="abc")
    error.__cause__ = drop()
    assert not POLICY.should_retry(error)


@pytest.mark.parametrize("status", [*range(300, 309), *range(400, 432), *range(500, 512), 599])
def test_should_retry_follows_the_status_table(status: int) -> None:
    # 408, 409, 429 and 5xx are retried; 402 only with a Retry-After; no 3xx, no other 4xx.
    plain = status_error(status, {}, b"")
    assert POLICY.should_retry(plain) is (status in (408, 409, 429) or status >= 500)
    assert plain.retryable is POLICY.should_retry(plain)
    waiting = status_error(status, {"retry-after": "1"}, b"")
    assert POLICY.should_retry(waiting) is (status in (402, 408, 409, 429) or status >= 500)


@pytest.mark.parametrize("status", [403, 503])
def test_a_cloudflare_block_is_not_retried(status: int) -> None:
    for headers, body in (({"cf-mitigated": "challenge"}, b""), ({}, CHALLENGE)):
        error = status_error(status, headers, body)
        assert isinstance(error, BlockedError)
        assert not POLICY.should_retry(error)


def test_402_needs_a_retry_after() -> None:
    assert not POLICY.should_retry(status_error(402, {}, b""))
    assert POLICY.should_retry(status_error(402, {"retry-after": "5"}, b""))
    assert not POLICY.should_retry(status_error(402, {"retry-after": "61"}, b""))


@pytest.mark.parametrize("status", [429, 503, 402])
def test_retry_after_up_to_max_retry_after(status: int) -> None:
    assert POLICY.should_retry(status_error(status, {"retry-after": "60"}, b""))
    assert not POLICY.should_retry(status_error(status, {"retry-after": "60.5"}, b""))
    assert not POLICY.should_retry(status_error(status, {"retry-after": "3600"}, b""))
    longer = status_error(status, {"retry-after": "120"}, b"")
    assert RetryPolicy(max_retry_after=120).should_retry(longer)
    assert not RetryPolicy(max_retry_after=0).should_retry(
        status_error(status, {"retry-after": "0.5"}, b"")
    )


def test_an_unreadable_retry_after_does_not_stop_a_retry() -> None:
    assert POLICY.should_retry(status_error(429, {"retry-after": "soon"}, b""))


# -- Attempts.failed: the waits -----------------------------------------------------------------


def test_waits_are_exponential_and_capped_without_jitter() -> None:
    run = attempts(RetryPolicy(max_retries=8, initial_backoff=0.5, max_backoff=8.0, jitter=0))
    waits = [run.failed(drop()) for _ in range(8)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert run.retries == 8
    assert run.failed(drop()) is None  # the ninth failure: max_retries used up
    assert run.retries == 8


def test_waits_with_jitter_stay_within_bounds() -> None:
    policy = RetryPolicy(max_retries=6, initial_backoff=0.25, max_backoff=2.0, jitter=0.75)
    firsts = set()
    for _ in range(40):
        run = attempts(policy)
        for attempt in range(1, 7):
            wait = run.failed(drop())
            assert wait is not None
            backoff = min(2.0, 0.25 * 2 ** (attempt - 1))
            assert backoff <= wait <= backoff + 0.75
            if attempt == 1:
                firsts.add(wait)
    assert len(firsts) > 20  # the jitter really is random


def test_retry_after_wins_over_the_backoff() -> None:
    run = attempts(RetryPolicy(max_retries=5, initial_backoff=0.5, max_backoff=1.0, jitter=3.0))
    assert run.failed(status_error(429, {"retry-after": "7"}, b"")) == 7.0
    assert run.failed(status_error(503, {"retry-after": "3"}, b"")) == 3.0
    assert run.failed(status_error(402, {"retry-after": "0"}, b"")) == 0.0
    plain = run.failed(status_error(429, {}, b""))  # no header: the back-off (attempt 4)
    assert plain is not None
    assert 1.0 <= plain <= 4.0


def test_a_retry_after_longer_than_allowed_stops_at_once() -> None:
    run = attempts(RetryPolicy(max_retries=5))
    assert run.failed(status_error(429, {"retry-after": "61"}, b"")) is None
    assert run.retries == 0


@pytest.mark.parametrize(
    "error",
    [
        status_error(400, {}, b""),
        status_error(401, {}, b""),
        status_error(302, {"location": "https://elsewhere.example/"}, b""),
        ServiceError("in-band", code=500),
        ProtocolError("garbled"),
        StreamInterrupted("broke", partial="x"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_failure_not_worth_retrying_stops_at_once(error: APIError) -> None:
    run = attempts(RetryPolicy(max_retries=5, initial_backoff=0))
    assert run.failed(error) is None
    assert run.retries == 0


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_stops_after_max_retries(max_retries: int) -> None:
    run = attempts(RetryPolicy(max_retries=max_retries, initial_backoff=0, jitter=0))
    for _ in range(max_retries):
        assert run.failed(drop()) == 0.0
    assert run.failed(drop()) is None
    assert run.retries == max_retries


def test_a_mix_of_failures_shares_one_budget() -> None:
    run = attempts(RetryPolicy(max_retries=2, initial_backoff=0, jitter=0))
    assert run.failed(drop()) == 0.0
    assert run.failed(status_error(503, {}, b"")) == 0.0
    assert run.failed(APITimeoutError("read timeout")) is None


def test_reset_gives_a_fresh_budget_and_restarts_the_backoff() -> None:
    run = attempts(RetryPolicy(max_retries=1, initial_backoff=0.5, max_backoff=8, jitter=0))
    assert run.failed(drop()) == 0.5
    run.reset()  # the attempt made progress
    assert run.failed(drop()) == 0.5  # a first retry again, not a second
    assert run.failed(drop()) is None  # and the fresh budget is one retry
    assert run.retries == 2  # counted over every budget
    run.reset()
    assert run.failed(drop()) == 0.5
    assert run.retries == 3


# -- Attempts: the whole-call bound (real clock) -----------------------------------------------


def test_never_waits_into_the_total() -> None:
    run = attempts(RetryPolicy(initial_backoff=1.0, jitter=0), Timeout(total=0.5))
    assert run.failed(drop()) is None  # a 1 s wait would cross the 0.5 s bound
    assert run.retries == 0


def test_a_wait_within_the_total_is_granted() -> None:
    run = attempts(RetryPolicy(initial_backoff=0.05, jitter=0), Timeout(total=30))
    assert run.failed(drop()) == 0.05


def test_a_retry_after_that_would_cross_the_total_stops() -> None:
    run = attempts(RetryPolicy(max_retries=5, initial_backoff=0), Timeout(total=2))
    assert run.failed(status_error(503, {"retry-after": "0.1"}, b"")) == 0.1
    assert run.failed(status_error(429, {"retry-after": "5"}, b"")) is None


def test_the_total_counts_from_the_start_of_the_call() -> None:
    limits = TimeLimits(Timeout(total=0.3))
    time.sleep(0.2)  # the call spent 0.2 s before its first failure (its token fetch, say)
    run = Attempts(RetryPolicy(initial_backoff=0.15, jitter=0), limits, "the test")
    assert run.failed(drop()) is None  # 0.2 + 0.15 crosses 0.3


def test_reset_keeps_the_total() -> None:
    limits = TimeLimits(Timeout(total=0.2))
    run = Attempts(RetryPolicy(max_retries=5, initial_backoff=0.01, jitter=0), limits, "x")
    assert run.failed(drop()) == 0.01
    time.sleep(0.25)
    run.reset()
    assert run.failed(drop()) is None


def test_the_total_is_measured_on_the_limits_clock() -> None:
    # A TimeLimits (and so a Call) takes a clock; the retry decisions must use it too. On this
    # clock no time has passed since the call started, so a 0.5 s wait fits a 60 s total.
    fake_now = -1e6  # a clock's origin is arbitrary, as time.monotonic's is
    limits = TimeLimits(Timeout(total=60), clock=lambda: fake_now)
    run = Attempts(RetryPolicy(initial_backoff=0.5, jitter=0), limits, "the test")
    assert run.failed(drop()) == 0.5


# -- set_testing ------------------------------------------------------------------------------


def test_set_testing_makes_every_wait_zero() -> None:
    policy = RetryPolicy(max_retries=3, initial_backoff=5, jitter=5)
    with set_testing(True):
        assert is_testing()
        run = attempts(policy)
        assert run.failed(drop()) == 0.0
        assert run.failed(status_error(429, {"retry-after": "30"}, b"")) == 0.0
        assert run.failed(drop()) == 0.0
        assert run.failed(drop()) is None  # retries still stop at max_retries
        assert run.retries == 3
    assert not is_testing()
    wait = attempts(policy).failed(drop())
    assert wait is not None
    assert wait >= 5.0


def test_set_testing_as_a_plain_call() -> None:
    try:
        set_testing(True)
        assert is_testing()
        assert attempts(RetryPolicy(initial_backoff=3)).failed(drop()) == 0.0
        set_testing(False)
        assert not is_testing()
        wait = attempts(RetryPolicy(initial_backoff=3)).failed(drop())
        assert wait is not None
        assert wait >= 3.0
    finally:
        set_testing(False)


def test_set_testing_restores_the_previous_setting() -> None:
    with set_testing(True):
        with set_testing(False):
            assert not is_testing()
        assert is_testing()
        with set_testing(True):
            assert is_testing()
        assert is_testing()
    assert not is_testing()


def test_set_testing_restores_on_an_exception() -> None:
    with pytest.raises(RuntimeError), set_testing(True):
        raise RuntimeError("boom")
    assert not is_testing()


def test_set_testing_is_the_public_switch() -> None:
    assert aichatonline.set_testing is set_testing
    assert aichatonline.is_testing is is_testing


# -- logging --------------------------------------------------------------------------------


def test_each_retry_is_logged_without_url_credentials(caplog: pytest.LogCaptureFixture) -> None:
    run = attempts(RetryPolicy(initial_backoff=0, jitter=0))
    error = APIConnectionError("could not reach http://user:hunter2@proxy.example:3128")
    with caplog.at_level(logging.INFO, logger="aichatonline"):
        assert run.failed(error) == 0.0
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "the test" in message
    assert "APIConnectionError" in message
    assert "attempt 2 of 3" in message
    assert "hunter2" not in message


def test_retries_survive_a_second_import_of_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that restores ``sys.modules`` (pytester does) makes the next ``import
    tenacity`` a new module while calls share a ``Retrying`` made from the old one: the
    retries must go on (they stopped after the first when the SDK tested for the new
    module's ``DoSleep``)."""
    import sys

    policy = RetryPolicy(max_retries=3, jitter=0)
    attempts(policy).failed(drop())  # the shared Retrying for these settings, made now
    for name in [name for name in sys.modules if name.partition(".")[0] == "tenacity"]:
        monkeypatch.delitem(sys.modules, name)
    run = attempts(policy)
    assert [run.failed(drop()) for _ in range(4)] == [0.5, 1.0, 2.0, None]
    assert sys.modules["tenacity"] is not None  # imported again, as a new module
