"""What a client keeps between calls: its unique id (token) and the service's cookies. No I/O.

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

:class:`CookieJar` keeps the cookies the service sets, as the original's browser-like
session did, and sends them back. The client talks to one origin only, so there is no
domain or path matching to do; a cookie set with ``Max-Age=0`` or ``Max-Age`` below zero is
removed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from .._exceptions import APIError, InvalidRequestError
from .retries import RetryPolicy
from .timeouts import Timeout
from .wire import is_header_token

__all__ = ["CookieJar", "TokenCache"]


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


class CookieJar:
    """The cookies the service set, sent back with every request to it."""

    __slots__ = ("_cookies",)

    def __init__(self) -> None:
        self._cookies: dict[str, str] = {}

    def update(self, set_cookie_values: Iterable[str]) -> None:
        """Take the ``Set-Cookie`` header values of a response."""
        for value in set_cookie_values:
            pair, _, attributes = value.partition(";")
            name, sep, cookie = pair.partition("=")
            name = name.strip()
            if not sep or not name or not is_header_token(name):
                continue
            cookie = cookie.strip()
            if _expires_now(attributes):
                self._cookies.pop(name, None)
            elif all(" " < c <= "~" and c != ";" for c in cookie):
                self._cookies[name] = cookie
            # else: a value that cannot be sent back as it came is ignored

    def header(self) -> str | None:
        """The ``Cookie`` header value to send, or ``None`` with no cookies."""
        # A copy first: another thread's update() may add a cookie while this one reads.
        cookies = self._cookies.copy()  # one C call: atomic under the GIL
        if not cookies:
            return None
        return "; ".join(f"{name}={value}" for name, value in cookies.items())

    def __len__(self) -> int:
        return len(self._cookies)


def _expires_now(attributes: str) -> bool:
    for attribute in attributes.split(";"):
        key, _, value = attribute.partition("=")
        if key.strip().lower() == "max-age":
            try:
                return int(value.strip()) <= 0
            except ValueError:
                return False
    return False
