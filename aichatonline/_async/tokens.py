"""The client's token ("unique id"): cached, fetched in a single flight, retried on its own.

Every call of a client (and of the clients ``with_options`` made from it) takes the token
from one :class:`~aichatonline._core.TokenCache`. When there is none, the first caller takes
the lock and fetches it while the others wait (within their own time limits); whoever
waited for a fetch that failed gets that failure too instead of fetching again
(``TokenCache.shared_failure``), unless the fetcher failed for want of limits the waiter
has (more retries, other timeouts). The fetch itself is a
:class:`~aichatonline._core.TokenFetch` carried out by :func:`async_fetch_token`, with its
own retries.

Written once, async; ``_sync/tokens.py`` is generated from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .._core import (
    EventOrderError,
    Fetched,
    Raise,
    Request,
    RetryPolicy,
    Send,
    Sleep,
    TimeLimits,
    TokenCache,
    TokenFetch,
)
from .._exceptions import APIError
from .._stream_waits import AsyncSocket
from .._synchronization import AsyncLock, AsyncWakeup, async_sleep
from .transport import AsyncTransport

__all__ = ["AsyncFetcher", "AsyncTokens", "async_fetch_token"]


class AsyncTokens:
    """The token a client's calls share, and getting one when there is none."""

    def __init__(
        self, transport: AsyncTransport, base_url: str, headers: Mapping[str, str]
    ) -> None:
        self.cache = TokenCache()
        #: Cuts a fetch's back-off short when the client closes.
        self.wakeup = AsyncWakeup()
        self._lock = AsyncLock()
        self._transport = transport
        self._base_url = base_url
        self._headers = headers

    async def token_for(
        self, policy: RetryPolicy, limits: TimeLimits, socket: AsyncSocket | None = None
    ) -> str:
        """The cached token, or one fetched now (once for every caller waiting); ``socket``
        reports where the fetch waits."""
        cache = self.cache
        token = cache.token
        if token is not None:
            return token
        fetches_seen = cache.fetches
        if not await self._lock.acquire(limits.remaining()):
            raise limits.timeout_error("waiting for another call's token fetch", "total")
        try:
            token = cache.token
            if token is not None:
                return token
            shared = cache.shared_failure(fetches_seen, policy, limits.timeout)
            if shared is not None:
                raise shared
            fetch = TokenFetch(
                self._base_url,
                self._headers,
                policy=policy,
                limits=limits,
                secrets=self._transport.secrets,
            )
            try:
                token = await async_fetch_token(self._transport, fetch, self.wakeup, socket)
            except APIError as exc:
                cache.failed(exc, policy, limits.timeout)
                raise
            cache.fetched(token)
            return token
        finally:
            self._lock.release()


class AsyncFetcher(Protocol):
    """What sends a token request: the transport, or the provider's aiohttp session."""

    async def fetch(
        self, request: Request, limits: TimeLimits, socket: AsyncSocket | None = None
    ) -> tuple[int, Mapping[str, str], bytes]: ...


async def async_fetch_token(
    transport: AsyncFetcher,
    fetch: TokenFetch,
    wakeup: AsyncWakeup | None = None,
    socket: AsyncSocket | None = None,
) -> str:
    """Carry out ``fetch`` (a token request, retried as its policy says) over ``transport``;
    ``wakeup`` (woken when the client closes) cuts its back-off waits short, ``socket``
    reports where it waits."""
    limits = fetch.limits
    while True:
        action = fetch.next_action()
        if type(action) is Send:
            try:
                status, headers, body = await transport.fetch(action.request, limits, socket)
            except APIError as exc:
                fetch.failed(exc)
                continue
            fetch.response(status, headers, body)
        elif type(action) is Sleep:  # the fetch never sleeps past its total
            if wakeup is None:
                await async_sleep(action.seconds)
            else:
                await wakeup.sleep(action.seconds)
            fetch.slept()
        elif type(action) is Fetched:
            return action.token
        elif type(action) is Raise:
            raise action.error
        else:
            raise EventOrderError(f"the token fetch's loop has no step for {action!r}")
