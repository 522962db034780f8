"""The connections of one client: idle ones kept for reuse, new ones opened as needed.

The SDK talks to one origin, so the pool is a stack of idle connections and nothing more:
taking one and giving one back are O(1) list operations (which is also why it needs no
lock in the blocking twin: ``list.pop`` and ``list.append`` are atomic, and a connection
given back while another thread closes the pool is closed by whichever comes second). No cap on open
connections: a cap would queue one stream behind another. At most ``max_idle`` are kept
(the keep-alive limit), each for ``keepalive_expiry`` seconds; an idle one the server has
closed is noticed (it turned readable) and dropped instead of used.

A connection is only ever in the pool while idle and whole. One that is busy belongs to
its response; if that response is abandoned, cancelled or broken, it is aborted, never
returned, so no number of cancellations can leave connections behind (httpcore's pool
could: a request cancelled while its connection was being set up left that connection in
the pool, never used and never closed).

An async pool belongs to one event loop: on a new loop of the same kind (a second
``asyncio.run``) it drops its idle connections and starts afresh; on another kind (asyncio,
then trio) it refuses with an ``InvalidRequestError`` (one client per backend).
"""

from __future__ import annotations

import time

from .._core import Limits
from .._exceptions import InvalidRequestError
from .._synchronization import async_at_loop_end, async_current_loop
from .http import AsyncConnection, Route, open_connection

__all__ = ["KEEPALIVE_EXPIRY", "MAX_IDLE", "AsyncConnectionPool"]

#: How many idle connections are kept (the keep-alive limit).
MAX_IDLE = 20
#: How long an idle connection is kept, in seconds.
KEEPALIVE_EXPIRY = 30.0
# Idle for less than this, a connection is taken without asking the socket if it is stale.
_FRESH = 1.0


class AsyncConnectionPool:
    """Idle connections to one route, and opening new ones."""

    def __init__(
        self, route: Route, *, max_idle: int = MAX_IDLE, keepalive_expiry: float = KEEPALIVE_EXPIRY
    ) -> None:
        self.route = route
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: list[AsyncConnection] = []
        self._kind: str | None = None
        self._loop: object = None
        self._loop_guard: object = None  # keeps the loop-end hook of self._loop alive
        self.closed = False
        # Connections handed out and not released or discarded yet: closing the pool
        # wakes whoever waits on one of them.
        self._active: set[AsyncConnection] = set()

    @property
    def active(self) -> int:
        """Connections handed out and not given back yet (for leak checks)."""
        return len(self._active)

    @property
    def idle(self) -> int:
        """How many idle connections the pool holds."""
        return len(self._idle)

    async def check_loop(self) -> str:
        """The kind of loop the call runs on; a new loop starts with no connections."""
        kind, loop = async_current_loop()
        if loop is not self._loop:
            if self._kind is not None and kind != self._kind:
                raise InvalidRequestError(
                    f"this AsyncClient was used on {self._kind} and now runs on {kind}: "
                    "make one client per event loop backend"
                )
            # Connections belong to the loop that made them. Those left from a loop that
            # ended were closed as it ended (loop_ended); a loop closed without finalizing
            # its generators left some, which are ended now as far as a dead loop allows.
            idle, self._idle = self._idle, []
            for connection in idle:
                connection.close()
            self._kind, self._loop = kind, loop
            self._loop_guard = await async_at_loop_end(self.loop_ended)
        return kind

    def loop_ended(self, loop: object) -> None:
        """The event loop ``loop`` is shutting down: close the idle connections while it can."""
        if loop is not self._loop:
            return  # the guard of an earlier loop, finalized late
        self._loop = None
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def acquire(self, limits: Limits, *, fresh: bool = False) -> AsyncConnection:
        """An idle connection that is still good, or a new one (always, with ``fresh``)."""
        kind = await self.check_loop()
        self._refuse_if_closed()
        now = time.monotonic()
        idle = self._idle
        while idle and not fresh:
            try:
                connection = idle.pop()
            except IndexError:  # another thread took the last one
                break
            idle_for = now - connection.idle_since
            # A connection idle for a moment was not closed by a keep-alive timeout; the
            # check costs a system call, and a stale one is replaced anyway (transport.py).
            if idle_for > self._expiry or (idle_for > _FRESH and connection.is_stale()):
                connection.close()
                continue
            connection.reused = True
            self._active.add(connection)
            return connection
        connection = await open_connection(self.route, kind, limits)
        self._active.add(connection)
        try:
            self._refuse_if_closed()  # closed while this one was being opened
        except InvalidRequestError:
            self.discard(connection)
            raise
        return connection

    def _refuse_if_closed(self) -> None:
        if self.closed:
            raise InvalidRequestError("the client is closed")

    def release(self, connection: AsyncConnection) -> None:
        """Its answer was read to the end: keep the connection for the next request."""
        self._active.discard(connection)
        if not connection.reusable or len(self._idle) >= self._max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        # Checked after the append: a close() in another thread either took it with the
        # idle ones or is seen here.
        if self.closed:
            connection.close()

    def discard(self, connection: AsyncConnection) -> None:
        """Its answer broke off (or was abandoned): close the connection, never reuse it."""
        self._active.discard(connection)
        connection.close()

    def close(self) -> None:
        """Close the idle connections, wake whoever waits on a busy one; take no more."""
        self.closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for connection in list(self._active):
            connection.abort()  # its owner sees the abort and discards it
