"""The waits of one stream, and the socket under its request: each wait ends at the call's
deadline or when the stream is closed, from any task or thread.

A pair, like those of ``_synchronization.py`` (``_async/`` uses the ``Async`` half, the
generated ``_sync/`` the other): on an event loop one anyio cancel scope per run of the
stream's loop, its deadline set before each wait; on a thread a blocking read cannot be
cancelled, so a watchdog thread shuts the socket under the request down at the deadline
(the read then ends with an error, and :meth:`Waits.check` says why). The socket is known
from httpcore's ``trace`` extension, the SDK's sharded transport, or the response.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._synchronization import async_current_loop, call_soon_on

if TYPE_CHECKING:  # anyio is imported where the async client first needs it
    import anyio

__all__ = [
    "EXTENSION",
    "AsyncSocket",
    "AsyncWaits",
    "Expired",
    "Interrupted",
    "Socket",
    "Waits",
]


class Interrupted(Exception):
    """A stream's wait was ended on purpose (its stream or client is closing)."""


class Expired(Exception):
    """A stream's wait ran into the call's whole-call or first-piece bound."""


# -- the waits of one stream --------------------------------------------------------------


class AsyncWaits:
    """The waits of one stream's loop: each bounded by the call's nearer bound, all of them
    ended by :meth:`interrupt` from any task or thread.

    ``with waits.running():`` opens one cancel scope for a run of the loop (it never spans
    a ``yield``); :meth:`bound` sets its deadline before each wait. When the deadline passes
    the block raises :class:`Expired`; after :meth:`interrupt`, :class:`Interrupted`.
    """

    __slots__ = ("_loop", "_scope", "_thread", "interrupted")

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self._loop: tuple[str, object] = ("", None)
        self._thread = 0
        #: Set for good by :meth:`interrupt`: every later wait ends at once.
        self.interrupted = False

    @contextlib.contextmanager
    def running(self) -> Iterator[AsyncWaits]:
        """One run of the stream's loop, inside one cancel scope."""
        import anyio

        scope = anyio.CancelScope()
        with scope:
            self._loop = async_current_loop()
            self._thread = threading.get_ident()
            self._scope = scope
            if self.interrupted:
                scope.cancel()
            try:
                yield self
            finally:
                self._scope = None
        if scope.cancelled_caught:
            if self.interrupted:
                raise Interrupted()
            raise Expired()

    def bound(self, seconds: float | None, socket: AsyncSocket | None = None) -> None:
        """The next wait ends after ``seconds`` (``None``: no bound)."""
        import anyio

        if self.interrupted:
            raise Interrupted()
        scope = self._scope
        assert scope is not None
        scope.deadline = math.inf if seconds is None else anyio.current_time() + seconds

    def check(self) -> None:
        """After a failed wait: :class:`Interrupted` if it was ended on purpose."""
        if self.interrupted:
            raise Interrupted()

    def interrupt(self) -> None:
        """End the current wait and every later one (from any task or thread)."""
        self.interrupted = True
        scope = self._scope
        if scope is None:
            return
        if threading.get_ident() == self._thread:
            scope.cancel()
        else:
            call_soon_on(self._loop, scope.cancel)


class _Watchdog:
    """One daemon thread that calls callbacks at their deadlines (for the blocking client)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call_at(self, deadline: float, callback: Callable[[], None]) -> int:
        with self._wake:
            handle = next(self._counter)
            heapq.heappush(self._heap, (deadline, handle, callback))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="aichatonline-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()
            return handle

    def cancel(self, handle: int) -> None:
        with self._wake:
            self._cancelled.add(handle)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][1] in self._cancelled:
                    self._cancelled.discard(heapq.heappop(self._heap)[1])
                if not self._heap:
                    self._wake.wait(60.0)
                    if not self._heap:
                        self._thread = None
                        return
                    continue
                deadline, _, callback = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._wake.wait(min(delay, threading.TIMEOUT_MAX))
                    continue
                heapq.heappop(self._heap)
            with contextlib.suppress(Exception):  # a callback must not end the watchdog
                callback()


_watchdog = _Watchdog()


class Waits:
    """The waits of one stream's loop: each bounded by the call's nearer bound, all of them
    ended by :meth:`interrupt` from any thread.

    A blocking read cannot be cancelled: at the deadline (a watchdog thread) or on
    :meth:`interrupt`, the socket under the request is shut down, which ends the read with
    an error; :meth:`check` then says why, as :class:`Expired` or :class:`Interrupted`.
    """

    __slots__ = ("_deadline", "_handle", "_socket", "expired", "interrupted")

    def __init__(self) -> None:
        self._socket: Socket | None = None
        self._handle: int | None = None
        self._deadline: float | None = None
        self.expired = False
        #: Set for good by :meth:`interrupt`: every later wait ends at once.
        self.interrupted = False

    @contextlib.contextmanager
    def running(self) -> Iterator[Waits]:
        """One run of the stream's loop."""
        try:
            yield self
        finally:
            self._disarm()
            self._socket = None

    def bound(self, seconds: float | None, socket: Socket | None = None) -> None:
        """The next wait ends after ``seconds`` (``None``: no bound); ``socket`` is where it
        waits."""
        self.check()
        self._socket = socket
        deadline = None if seconds is None else time.monotonic() + seconds
        if deadline == self._deadline:
            return
        self._disarm()
        if deadline is not None:
            self._deadline = deadline
            self._handle = _watchdog.call_at(deadline, self._expire)

    def check(self) -> None:
        """After a failed wait: :class:`Interrupted` or :class:`Expired` if it was ended on
        purpose (its socket shut down). An expiry is reported once."""
        if self.interrupted:
            raise Interrupted()
        if self.expired:
            self.expired = False
            raise Expired()

    def interrupt(self) -> None:
        """End the current wait and every later one (from any thread)."""
        self.interrupted = True
        socket = self._socket
        if socket is not None:
            socket.shutdown()

    def _expire(self) -> None:
        self.expired = True
        socket = self._socket
        if socket is not None:
            socket.shutdown()

    def _disarm(self) -> None:
        handle, self._handle, self._deadline = self._handle, None, None
        if handle is not None:
            _watchdog.cancel(handle)


# -- the socket under a request -----------------------------------------------------------


class AsyncSocket:
    """Not needed on an event loop: a cancel scope ends any wait."""

    __slots__ = ()

    def extensions(self) -> dict[str, Any]:
        """Request extensions that report the socket: none."""
        return {}

    def set(self, network_stream: object) -> None:
        """The network stream the request uses: not needed."""

    def shutdown(self) -> None:
        """Nothing to do: the waits' cancel scope ends the wait."""


class Socket:
    """The socket under one request, as far as it is known; :meth:`shutdown` ends a blocking
    read on it (from any thread).

    httpcore reports a new connection through its ``trace`` request extension; a kept-alive
    one is reported by the SDK's own transport (``_sync/shards.py``); the response's
    ``network_stream`` extension gives it once the head has come. A shutdown asked for
    before the socket is known happens as soon as it is.
    """

    __slots__ = ("_down", "_stream")

    def __init__(self) -> None:
        self._stream: object = None
        self._down = False

    def extensions(self) -> dict[str, Any]:
        """Request extensions that report the socket to this object."""
        return {"trace": self._trace, EXTENSION: self}

    def set(self, network_stream: object) -> None:
        """The network stream the request uses."""
        self._stream = network_stream
        if self._down:
            _shutdown(network_stream)

    def shutdown(self) -> None:
        """Shut the socket down now, or as soon as it is known."""
        self._down = True
        _shutdown(self._stream)

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.set(info.get("return_value"))


#: The request extension under which the SDK's own transport finds a request's ``Socket``.
EXTENSION = "aichatonline.socket"


def _shutdown(network_stream: object) -> None:
    get_extra_info = getattr(network_stream, "get_extra_info", None)
    if get_extra_info is None:
        return
    with contextlib.suppress(Exception):  # a stream of another kind, or already closed
        sock = get_extra_info("socket")
        if sock is not None:
            sock.shutdown(2)  # SHUT_RDWR (SD_BOTH on Windows): wakes a read blocked on it
