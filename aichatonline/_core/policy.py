"""Timeouts and retry decisions: which failures are worth another attempt, and when. No I/O.

:class:`RetryPolicy` holds the decisions (tenacity only carries them out, see
``_retry.py``); :class:`Timeout` and :class:`Deadline` hold the per-operation
limits and the one bound on a whole call, retries and back-off included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol, TypeAlias, Union

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    BlockedError,
    InvalidRequestError,
    RateLimitError,
    StreamInterrupted,
)

__all__ = ["Deadline", "RetryPolicy", "Timeout", "TimeoutTypes"]


class _HttpxLikeTimeout(Protocol):
    connect: float | None
    read: float | None
    write: float | None
    pool: float | None


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """How long things may take, in seconds (``None`` = no limit).

    ``total`` bounds a whole call: token fetch, every attempt, the back-off
    between them and the streaming of the answer. The others bound single
    operations, as in httpx: ``connect``, ``write``, ``pool`` (waiting for a
    free connection) and ``read`` (the longest silence between two reads).
    """

    total: float | None = 600.0
    connect: float | None = 10.0
    read: float | None = 60.0
    write: float | None = 30.0
    pool: float | None = 30.0

    def __post_init__(self) -> None:
        for name in ("total", "connect", "read", "write", "pool"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not value > 0
                or math.isinf(value)
            ):
                raise InvalidRequestError(
                    f"timeout {name} must be a positive number of seconds or None, not {value!r}",
                    field=f"timeout.{name}",
                )

    @classmethod
    def of(cls, value: TimeoutTypes) -> Timeout:
        """Coerce what ``timeout=`` accepts.

        A number bounds the whole call (and caps each operation); ``None``
        turns every limit off; an ``httpx.Timeout`` sets the per-operation
        limits and keeps the default total; a :class:`Timeout` is used as is.
        """
        if isinstance(value, Timeout):
            return value
        if value is None:
            return cls(total=None, connect=None, read=None, write=None, pool=None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            default = cls()
            return cls(
                total=value,
                **{name: min(getattr(default, name), value) for name in _OPERATIONS},
            )
        if all(hasattr(value, name) for name in _OPERATIONS):
            return cls(**{name: getattr(value, name) for name in _OPERATIONS})
        raise InvalidRequestError(
            f"timeout must be a number, None, Timeout or httpx.Timeout, not {type(value).__name__}",
            field="timeout",
        )


_OPERATIONS = ("connect", "read", "write", "pool")

# Union[...] rather than |: a runtime alias must evaluate on Python 3.10.
TimeoutTypes: TypeAlias = Union[float, Timeout, _HttpxLikeTimeout, None]  # noqa: UP007


class Deadline:
    """The end of a call's time budget, on the monotonic clock."""

    __slots__ = ("at", "total")

    def __init__(self, total: float | None) -> None:
        self.total = total
        self.at = None if total is None else time.monotonic() + total

    def remaining(self) -> float | None:
        """Seconds left (may be negative), or ``None`` for no bound."""
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        """Whether the budget is spent."""
        return self.at is not None and time.monotonic() >= self.at

    def cap(self, seconds: float | None) -> float | None:
        """``seconds``, cut down to what is left of the budget (never below zero)."""
        if self.at is None:
            return seconds
        left = max(0.0, self.at - time.monotonic())
        return left if seconds is None else min(seconds, left)


@dataclass(frozen=True)
class RetryPolicy:
    """Which failures get another attempt, and how long to wait before it.

    Retried: connection errors, timeouts, 408, 409, 5xx, and rate limits
    (429 always; 402 only with a ``Retry-After``), honouring ``Retry-After``
    up to ``max_retry_after`` seconds (a longer wait fails at once). Never
    retried: other 4xx, a Cloudflare block, bad input, and
    :class:`StreamInterrupted` (a resumed answer that diverged: sending it
    again cannot mend that).

    The wait is exponential with jitter, as in stamina:
    ``min(max_backoff, initial_backoff * 2 ** (attempt - 1)) + uniform(0, jitter)``.
    """

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidRequestError("max_retries must be an int", field="max_retries")
        if self.max_retries < 0:
            raise InvalidRequestError("max_retries must be >= 0", field="max_retries")
        for name in ("initial_backoff", "max_backoff", "jitter", "max_retry_after"):
            if not getattr(self, name) >= 0:
                raise InvalidRequestError(f"{name} must be >= 0", field=name)

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt."""
        if isinstance(exc, StreamInterrupted):
            return False
        if isinstance(exc, APIConnectionError):
            return True
        if isinstance(exc, RateLimitError):
            if exc.retry_after is None:
                return exc.status_code == 429
            return exc.retry_after <= self.max_retry_after
        if isinstance(exc, APIStatusError) and not isinstance(exc, BlockedError):
            return exc.status_code in (408, 409) or exc.status_code >= 500
        return False

    def delay(self, attempt: int, exc: BaseException | None, random: float) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        ``random`` is a number in [0, 1) for the jitter.
        """
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return exc.retry_after
        exponent = min(attempt - 1, 62)  # keep 2 ** n a float that fits
        backoff = min(self.max_backoff, self.initial_backoff * 2.0**exponent)
        return backoff + random * self.jitter
