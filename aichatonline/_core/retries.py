"""Retry decisions, made by tenacity's own strategies. No I/O: nothing here sleeps.

:class:`RetryPolicy` is the caller's setting, built once. For each call (and each token
fetch) it gives an :class:`Attempts`: a ``tenacity.Retrying`` composed of tenacity's
strategies (``retry_if_exception``, ``stop_after_attempt | stop_before_delay``,
``wait_exponential + wait_random``, the server's ``Retry-After`` taking precedence) and the
``RetryCallState`` it keeps. When an attempt fails, :meth:`Attempts.failed` hands the
failure to ``Retrying.iter`` — tenacity's decision step — and answers with the seconds to
wait before the next attempt, or ``None`` to give up. The waiting itself is the I/O
layer's (``time.sleep`` or ``anyio.sleep``), which is why tenacity is not given a sleep.

tenacity is imported at the first failure: most calls never fail, and importing it costs
milliseconds that ``import aichatonline`` should not pay.

:func:`set_testing` turns every wait into zero for users' test suites (stamina's idea).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    InvalidRequestError,
    ProtocolError,
    StreamInterrupted,
)
from .redact import redact
from .timeouts import TimeLimits

if TYPE_CHECKING:
    import tenacity

__all__ = ["Attempts", "RetryPolicy", "is_testing", "set_testing"]

logger = logging.getLogger("aichatonline")

_testing = False


def set_testing(testing: bool = True) -> contextlib.AbstractContextManager[None]:
    """Turn retry back-off waits off (``True``) or on again (``False``), for test suites.

    Retries still happen, as many as the policy allows; only the waits between them (the
    exponential back-off and the server's ``Retry-After``) become zero. Also a context
    manager that restores the previous
    setting on exit. It is read when a retry is decided::

        with aichatonline.set_testing(True):
            ...
    """
    global _testing
    previous, _testing = _testing, bool(testing)
    return _restore(previous)


@contextlib.contextmanager
def _restore(previous: bool) -> Iterator[None]:
    global _testing
    try:
        yield
    finally:
        _testing = previous


def is_testing() -> bool:
    """Whether :func:`set_testing` turned back-off waits off."""
    return _testing


def _number(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or math.isinf(value)
    ):
        raise InvalidRequestError(f"{name} must be a finite number, not {value!r}", field=name)
    if value < 0:
        raise InvalidRequestError(f"{name} must be >= 0, not {value!r}", field=name)
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures get another attempt, and how long to wait before it.

    Retried (``max_retries`` times after the first attempt): connection errors, timeouts,
    and the statuses the protocol calls transient or rate limited (408, 409, 429, 5xx;
    402 only with a ``Retry-After``), honouring ``Retry-After`` (on 429, 402 and 503 alike)
    up to ``max_retry_after`` seconds; a longer wait fails at once. Never retried: other
    4xx, a Cloudflare block, a proxy that refused our credentials (407), bad input, and
    :class:`~aichatonline.StreamInterrupted` (a resumed answer that diverged: sending it
    again cannot mend that). A call never waits
    past its ``Timeout.total``: when the next wait would reach it, the call fails now.

    The wait is tenacity's ``wait_exponential`` plus ``wait_random`` (as in stamina):
    ``min(max_backoff, initial_backoff * 2 ** (attempt - 1)) + uniform(0, jitter)``.
    """

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidRequestError(
                f"max_retries must be an int, not {self.max_retries!r}", field="max_retries"
            )
        if self.max_retries < 0:
            raise InvalidRequestError("max_retries must be >= 0", field="max_retries")
        for name in ("initial_backoff", "max_backoff", "jitter", "max_retry_after"):
            object.__setattr__(self, name, _number(name, getattr(self, name)))

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt."""
        if isinstance(exc, StreamInterrupted):
            return False
        if isinstance(exc, APIConnectionError):
            return exc.retryable
        if isinstance(exc, ProtocolError):
            return exc.retryable
        if isinstance(exc, APIStatusError):
            if not exc.retryable:
                return False
            return exc.retry_after is None or exc.retry_after <= self.max_retry_after
        return False


class _WaitRetryAfter:
    """tenacity wait strategy: the server's ``Retry-After`` when it gave one, else ``fallback``."""

    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback

    def __call__(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)):
            return float(retry_after)
        return float(self._fallback(state))


def _retrying(policy: RetryPolicy, limits: TimeLimits, what: str) -> tenacity.Retrying:
    return _shared_retrying(policy, limits.timeout.total, what, _testing)


@functools.lru_cache(maxsize=64)
def _shared_retrying(
    policy: RetryPolicy, total: float | None, what: str, testing: bool
) -> tenacity.Retrying:
    """One ``Retrying`` for every call with these settings: it holds strategies only (each
    call's state is its own ``RetryCallState``, and ``iter`` keeps its working state per
    thread, for one synchronous step), and a ``Retrying`` is a reference cycle that only
    CPython's full collections would free, one a call."""
    import tenacity

    stop: Any = tenacity.stop_after_attempt(policy.max_retries + 1)
    if total is not None:
        # Never sleep into the whole-call bound: fail now instead.
        stop = stop | tenacity.stop_before_delay(total)
    if testing:
        wait: Any = tenacity.wait_none()
    else:
        wait = _WaitRetryAfter(
            tenacity.wait_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff)
            + tenacity.wait_random(0, policy.jitter)
        )

    def log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.info(
            "retrying %s in %.2fs after %s: %s (attempt %d of %d)",
            what,
            state.upcoming_sleep,
            type(exc).__name__,
            redact(str(exc)),
            state.attempt_number + 1,
            policy.max_retries + 1,
        )

    return tenacity.Retrying(
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception(policy.should_retry),
        before_sleep=log,
        reraise=True,
    )


class Attempts:
    """The attempts of one call or token fetch: ``failed(exc)`` says wait this long, or stop.

    ``retries`` counts the retries granted so far (over every budget, see :meth:`reset`).
    """

    __slots__ = ("_limits", "_policy", "_retrying", "_state", "_what", "retries")

    def __init__(self, policy: RetryPolicy, limits: TimeLimits, what: str) -> None:
        self._policy = policy
        self._limits = limits
        self._what = what
        self._retrying: tenacity.Retrying | None = None
        self._state: tenacity.RetryCallState | None = None
        self.retries = 0

    def failed(self, exc: APIError) -> float | None:
        """Record a failed attempt: the seconds to wait before the next, or ``None`` to stop."""
        import tenacity

        if self._retrying is None:
            self._retrying = _retrying(self._policy, self._limits, self._what)
        state = self._state
        if state is None:
            self._retrying.begin()
            state = self._state = tenacity.RetryCallState(
                self._retrying, fn=None, args=(), kwargs={}
            )
            # The whole-call bound counts from the call's start, not from this failure
            # (tenacity measures on time.monotonic; the limits may have their own clock).
            state.start_time = time.monotonic() - self._limits.elapsed()
        state.set_exception((type(exc), exc, exc.__traceback__))
        try:
            action = self._retrying.iter(state)
        except APIError:  # tenacity re-raises the attempt's own error when it gives up
            return None
        # DoSleep is a float (the seconds). Tested as a float, not as tenacity.DoSleep: the
        # shared Retrying may come from an earlier import of tenacity than this one (a test
        # runner that restores sys.modules, as pytester does, makes a second module).
        if not isinstance(action, float):
            return None
        state.prepare_for_next_attempt()
        self.retries += 1
        return float(action)

    def reset(self) -> None:
        """The attempt made progress: a fresh budget of retries (the time bound still holds)."""
        self._state = None
