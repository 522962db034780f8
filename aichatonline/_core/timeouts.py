"""Time limits: httpx's per-operation limits, plus a whole-call and a first-piece bound. No I/O.

:class:`Timeout` is what the caller gives. A number means what it means in httpx and
openai-python: the same limit for each single operation (``connect``, ``read`` = the longest
silence between two reads, ``write``, ``pool`` = waiting for a free connection); a long
answer is never cut because it is long. Two bounds come on top, off unless asked for:
``total`` bounds a whole call (token fetch, every attempt, the back-off between them, the
streaming of the answer) and ``first_piece`` the wait from sending the chat request to the
first text piece (a service that accepts and then never answers).

:class:`TimeLimits` is one call's view of them at any moment. Before every wait the I/O layer
asks it how long that wait may take (:meth:`TimeLimits.cap`): the operation's own limit, cut
down to what is left of the bounds. When a wait runs out, :meth:`TimeLimits.timeout_error`
says which limit it was, with its value, so the message names the limit that fired.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeAlias, Union

from .._exceptions import APITimeoutError, InvalidRequestError

__all__ = [
    "DEFAULT_TIMEOUT",
    "OPERATIONS",
    "HttpxLikeTimeout",
    "TimeLimits",
    "Timeout",
    "TimeoutTypes",
]

#: The per-operation limits, in httpx's order.
OPERATIONS: Final = ("connect", "read", "write", "pool")
_DEFAULTS: Final = {"connect": 10.0, "read": 60.0, "write": 30.0, "pool": 30.0}
_FIELDS: Final = (*OPERATIONS, "total", "first_piece")


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


class HttpxLikeTimeout(Protocol):
    """Anything with httpx's four per-operation limits, such as ``httpx.Timeout``."""

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None


def _seconds(name: str, value: object) -> float | None:
    """``value`` as seconds; ``name`` is ``"timeout"`` or ``"timeout.connect"``, ... (the
    argument the caller wrote, so the message points at it)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not value > 0
        or math.isinf(value)
    ):
        raise InvalidRequestError(
            f"{name} must be a positive number of seconds or None, not {value!r}", field=name
        )
    return float(value)


class Timeout:
    """How long things may take, in seconds (``None`` = no limit).

    ``Timeout(5)`` sets the four per-operation limits to 5 s, as ``httpx.Timeout(5)``
    does; ``Timeout(5, connect=2)`` then changes one. A limit not given keeps its default
    (connect 10 s, read 60 s, write 30 s, pool 30 s). ``read`` is the longest silence
    between two reads, so a long answer that keeps coming is never cut. ``pool`` only
    matters when the httpx client caps its connections (the SDK's own client does not,
    so no call ever waits for one).

    ``total`` bounds a whole call: the token fetch, every attempt, the back-off between
    them and the streaming of the answer (default: no bound). ``first_piece`` bounds the
    wait from sending the chat request to the first text piece; when it runs out, the
    attempt fails with a retryable :class:`~aichatonline.APITimeoutError` (default: none).
    """

    __slots__ = _FIELDS

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None
    total: float | None
    first_piece: float | None

    def __init__(
        self,
        timeout: float | None = _UNSET,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
        total: float | None = None,
        first_piece: float | None = None,
    ) -> None:
        given = {"connect": connect, "read": read, "write": write, "pool": pool}
        # The one number is checked as itself, where it fills a limit: ``Timeout(-1)`` (and
        # ``Client(timeout=-1)``) is about ``timeout``, not the first limit it would set.
        shared = timeout
        if timeout is not _UNSET and _UNSET in given.values():
            shared = _seconds("timeout", timeout)
        for name, value in given.items():
            if value is _UNSET:
                seconds = _DEFAULTS[name] if shared is _UNSET else shared
            else:
                seconds = _seconds(f"timeout.{name}", value)
            object.__setattr__(self, name, seconds)
        object.__setattr__(self, "total", _seconds("timeout.total", total))
        object.__setattr__(self, "first_piece", _seconds("timeout.first_piece", first_piece))

    @classmethod
    def of(cls, value: TimeoutTypes) -> Timeout:
        """Coerce what ``timeout=`` takes: a number, ``None``, a ``Timeout``, an ``httpx.Timeout``.

        A number sets the four per-operation limits (as in httpx); ``None`` turns every
        limit off; an ``httpx.Timeout`` gives its four limits.
        """
        if isinstance(value, Timeout):
            return value
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return cls(value)
        if all(hasattr(value, name) for name in OPERATIONS):
            return cls(**{name: getattr(value, name) for name in OPERATIONS})
        raise InvalidRequestError(
            "timeout must be a number of seconds, None, an aichatonline.Timeout or an "
            f"httpx.Timeout, not {type(value).__name__}",
            field="timeout",
        )

    def as_dict(self) -> dict[str, float | None]:
        """The limits by name."""
        return {name: getattr(self, name) for name in _FIELDS}

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Timeout is immutable: make a new one (or use copy_with)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Timeout is immutable: make a new one (or use copy_with)")

    def copy_with(self, **changes: float | None) -> Timeout:
        """A copy with some limits changed: ``timeout.copy_with(total=60)``."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise InvalidRequestError(f"Timeout has no {', '.join(sorted(unknown))}")
        return Timeout(**(self.as_dict() | changes))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timeout):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.as_dict().items())
        return f"Timeout({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.as_dict(),))


def _rebuild(fields: dict[str, float | None]) -> Timeout:
    return Timeout(**fields)


#: The client's default: 10 s to connect, 60 s of silence between reads, no whole-call bound.
DEFAULT_TIMEOUT: Final = Timeout()

# Union[...] rather than |: a runtime alias must evaluate on Python 3.10.
TimeoutTypes: TypeAlias = Union[float, Timeout, HttpxLikeTimeout, None]  # noqa: UP007

_WHAT = {
    "connect": "could not connect within {s}",
    "read": "no data for {s}",
    "write": "could not send within {s}",
    "pool": "no free connection within {s}",
    "total": "the call ran past its whole-call bound of {s}",
    "first_piece": "no text within {s} of sending the chat request",
}


class TimeLimits:
    """One call's time limits at this moment: how long the next wait may take, and why.

    The whole-call bound starts when the ``TimeLimits`` is made; the first-piece bound when
    the I/O layer reports the chat request sent (:meth:`arm_first_piece`), until the
    first piece (:meth:`disarm_first_piece`). :meth:`cap` remembers which limit bound the
    last wait it sized, so :meth:`timeout_error` can name it.
    """

    __slots__ = ("_binding", "_clock", "_end", "_first_at", "_total_at", "started", "timeout")

    def __init__(self, timeout: Timeout, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        #: When the call started, on the clock (tenacity measures its delay from here too).
        self.started = clock()
        self._total_at = None if timeout.total is None else self.started + timeout.total
        self._first_at: float | None = None
        self._end = self._total_at  # the nearer of the two bounds, or None
        self._binding = "read"

    def elapsed(self) -> float:
        """Seconds since the call started."""
        return self._clock() - self.started

    def remaining(self) -> float | None:
        """Seconds left of the whole-call bound (never below zero), or ``None`` for none."""
        if self._total_at is None:
            return None
        return max(0.0, self._total_at - self._clock())

    def expired(self) -> bool:
        """Whether the whole-call bound has passed."""
        return self._total_at is not None and self._clock() >= self._total_at

    def arm_first_piece(self) -> None:
        """The chat request went out: the first-piece bound starts now (if there is one)."""
        if self.timeout.first_piece is not None:
            self._first_at = self._clock() + self.timeout.first_piece
            self._end = (
                self._first_at if self._total_at is None else min(self._first_at, self._total_at)
            )

    def disarm_first_piece(self) -> None:
        """Text arrived: the first-piece bound no longer applies."""
        if self._first_at is not None:
            self._first_at = None
            self._end = self._total_at

    def cap(self, operation: str, *, first_piece: bool = True) -> float | None:
        """How long the next ``operation`` (connect/read/write/pool) may wait, in seconds.

        ``first_piece=False`` leaves the first-piece bound out: for a limit that will hold
        past the first piece (httpcore looks the read limit up once for a whole body).
        """
        limit: float | None = getattr(self.timeout, operation)
        end = self._end if first_piece else self._total_at
        if end is None:
            self._binding = operation
            return limit
        left = end - self._clock()
        if left < 0.0:
            left = 0.0
        if limit is not None and limit <= left:
            self._binding = operation
            return limit
        self._binding = "first_piece" if end == self._first_at else "total"
        return left

    def bound(self) -> float | None:
        """Seconds to the nearer of the whole-call and first-piece bounds (``None``: none).

        For a wait that cannot be sized operation by operation (inside a caller's own
        httpx client): a guard ends it there.
        """
        end = self._end
        if end is None:
            return None
        self._binding = "first_piece" if end == self._first_at else "total"
        return max(0.0, end - self._clock())

    def bound_name(self) -> str:
        """Which bound :meth:`bound` sizes the wait by: ``"first_piece"`` or ``"total"``."""
        return "first_piece" if self._end is not None and self._end == self._first_at else "total"

    def timeout_error(self, during: str = "", limit: str | None = None) -> APITimeoutError:
        """The error for a wait that ran out: the limit the last :meth:`cap` sized it by.

        ``limit`` names it instead when the wait was not sized by :meth:`cap` (waiting for
        the token lock, or a back-off, can only end by the whole-call bound: ``"total"``).
        A per-operation limit that ran out together with a bound is reported as the bound.
        """
        limit = limit or self._binding
        end = self._end
        if limit in OPERATIONS and end is not None and self._clock() >= end:
            limit = "first_piece" if end == self._first_at else "total"
        seconds = getattr(self.timeout, limit)
        value = "None" if seconds is None else f"{seconds:g}"
        what = _WHAT[limit].format(s=f"{value}s")
        prefix = f"{during}: " if during else ""
        return APITimeoutError(
            f"{prefix}{limit.replace('_', ' ')} timeout: {what} (Timeout.{limit}={value})",
            limit=limit,
            seconds=seconds,
        )
