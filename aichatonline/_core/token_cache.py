"""What a client keeps between calls: its unique id (token). No I/O.

:class:`TokenCache` holds the token every call of a client (and of the clients made from it
with ``with_options``) shares, and the bookkeeping of fetching it in a single flight: the
I/O layer takes a lock, and the first caller fetches while the others wait; whoever waited
for a fetch that failed gets that same failure instead of starting a fetch of its own
(``shared_failure``), unless the failure came from the fetcher's own limits. A rejected
token is dropped only if it is still the current one, as a concurrent call may have
replaced it already.

Generations. Each new token (fetched, or set by the caller) gets the next number of a
counter: a call notes the generation of the token it sends, so that when the service
rejects it the call can tell a token that is still the newest (the call's own refresh is
due) from one that another call has replaced or dropped meanwhile (sent again with the
newest, no refresh spent; see ``call.py``). The token and its generation change together,
as one value, so that another thread never reads one without the other.

The service's cookies are the httpx client's business (its cookie jar).
"""

from __future__ import annotations

import copy

from .._exceptions import APIError, InvalidRequestError
from .headers import is_header_token
from .retries import RetryPolicy
from .timeouts import Timeout

__all__ = ["TokenCache"]


class TokenCache:
    """The unique id a client's calls share, and the single-flight bookkeeping of its fetch."""

    __slots__ = ("_current", "_error", "_limits_of_error", "fetches")

    def __init__(self) -> None:
        # The token (None: none yet, or dropped) and its generation, one tuple.
        self._current: tuple[str | None, int] = (None, 0)
        #: How many fetches finished (a waiter compares it with what it saw before waiting).
        self.fetches = 0
        self._error: APIError | None = None
        # The retry budget and time limits of the fetch that failed: a waiter with more
        # of either would not have failed the same way (see shared_failure).
        self._limits_of_error: tuple[RetryPolicy, Timeout] | None = None

    @property
    def token(self) -> str | None:
        """The current token, or ``None``."""
        return self._current[0]

    @token.setter
    def token(self, value: str | None) -> None:
        if value is not None and not (isinstance(value, str) and is_header_token(value)):
            raise InvalidRequestError(
                "token must be None or a non-empty string of visible ASCII characters",
                field="token",
            )
        token, generation = self._current
        if value is None:
            self._current = (None, generation)
        elif value != token:
            self._current = (value, generation + 1)

    @property
    def current(self) -> tuple[str | None, int]:
        """The current token (or ``None``) and its generation, read together."""
        return self._current

    @property
    def generation(self) -> int:
        """How many tokens there have been: each new one, fetched or set, counts."""
        return self._current[1]

    def is_current(self, token: str, generation: int) -> bool:
        """Whether ``token`` of ``generation`` is still the one to send."""
        return self._current == (token, generation)

    def forget(self, token: str, generation: int | None = None) -> None:
        """The service rejected ``token`` (of ``generation``, when given): drop it, unless
        another call replaced it already."""
        current, current_generation = self._current
        if current == token and generation in (None, current_generation):
            self._current = (None, current_generation)

    def fetched(self, token: str) -> None:
        """A fetch succeeded: ``token`` is the newest, even when the service gave the same
        string again."""
        self.fetches += 1
        self._current, self._error = (token, self._current[1] + 1), None

    def failed(self, error: APIError, policy: RetryPolicy, timeout: Timeout) -> None:
        """A fetch made with ``policy`` and ``timeout`` failed with ``error``."""
        self.fetches += 1
        self._error = error
        self._limits_of_error = (policy, timeout)

    def shared_failure(
        self, fetches_seen: int, policy: RetryPolicy, timeout: Timeout
    ) -> APIError | None:
        """The failure of a fetch that finished while the caller waited, as its own copy.

        Shared only when the caller would have failed the same way: the failure does not
        depend on the caller (a refusal that no retry mends), or the caller has the same
        time limits and no more retries than the fetcher. Any other caller (the fetcher
        gave up on its own short ``timeout`` or ``max_retries=0``) fetches for itself.
        """
        failed = self._error
        if self.fetches == fetches_seen or failed is None:
            return None
        assert self._limits_of_error is not None
        their_policy, their_timeout = self._limits_of_error
        if their_policy.should_retry(failed) and (
            policy.max_retries > their_policy.max_retries or timeout != their_timeout
        ):
            return None
        error = copy.copy(failed)  # each caller raises its own object, cause kept
        error.__cause__ = failed.__cause__
        return error
