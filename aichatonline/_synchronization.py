"""The few things the async I/O layer and its generated sync twin really do differently.

The I/O layer is written once, async, in ``_async/``; ``scripts/unasync.py`` generates
``_sync/`` from it by rewriting names (``async_x`` becomes ``sync_x``, ``AsyncX`` becomes
``X``) and dropping ``async``/``await``. What cannot be had by rewriting lives here, in
pairs side by side:

- the event loop a call runs on, so an ``AsyncClient`` can notice being moved to a new
  loop (its own httpx client starts afresh) or to another backend (an error: one client
  per backend) / none;
- the waits of one stream, bounded by the call's deadline and ended from any task or
  thread: one anyio cancel scope / a watchdog thread that shuts the socket under the
  request down (a blocking read cannot be cancelled, but it ends when its socket does);
- the socket under a request, as far as it is known: not needed / captured from httpcore's
  ``trace`` extension and the SDK's own transport;
- a lock acquired within the call's time limit: ``anyio.Lock`` / ``threading.Lock``;
- a sleep, and a back-off wait that a close cuts short;
- shielding a response's release from cancellation / nothing;
- running a callback when the event loop shuts down (so the SDK's own connections are
  closed while their loop can still close them) / nothing (threads have no such end);
- cleaning up later, from a finalizer: on the response's loop / on a closer thread (a
  finalizer may run while this very thread holds httpcore's pool lock);
- ending a suspended generator without an event loop, and the type ``__anext__``
  returns: an awaitable of the item / the item itself.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import queue
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from ._exceptions import InvalidRequestError

if TYPE_CHECKING:  # anyio is imported where the async client first needs it
    import anyio

__all__ = [
    "AsyncLock",
    "AsyncNext",
    "AsyncSocket",
    "AsyncWaits",
    "AsyncWakeup",
    "Interrupted",
    "Lock",
    "Socket",
    "Waits",
    "Wakeup",
    "async_at_loop_end",
    "async_close_now",
    "async_current_loop",
    "async_later",
    "async_shield",
    "async_sleep",
    "sync_at_loop_end",
    "sync_close_now",
    "sync_current_loop",
    "sync_later",
    "sync_shield",
    "sync_sleep",
]


class Interrupted(Exception):
    """A stream's wait was ended on purpose (its stream or client is closing)."""


class Expired(Exception):
    """A stream's wait ran into the call's whole-call or first-piece bound."""


# -- which loop ---------------------------------------------------------------------------


def async_current_loop() -> tuple[str, object]:
    """The running event loop: ``("asyncio", loop)`` or ``("trio", trio_token)``."""
    asyncio = sys.modules.get("asyncio")  # not imported: no asyncio loop can be running
    if asyncio is not None:
        try:
            return "asyncio", asyncio.get_running_loop()
        except RuntimeError:
            pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return "trio", trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
    raise InvalidRequestError(
        "the AsyncClient runs on asyncio or trio: call it from a coroutine on a running loop "
        "(use the blocking Client elsewhere)"
    )


_SYNC_LOOP = ("sync", None)


def sync_current_loop() -> tuple[str, object]:
    """The blocking client has no loop: always the same answer."""
    return _SYNC_LOOP


def _call_soon_on(loop: tuple[str, object], callback: Callable[[], object]) -> None:
    """Run ``callback`` on ``loop`` (from any thread); nothing if the loop has ended."""
    kind, handle = loop
    try:
        if kind == "asyncio":
            handle.call_soon_threadsafe(callback)  # type: ignore[attr-defined]
        else:
            handle.run_sync_soon(callback)  # type: ignore[attr-defined]
    except RuntimeError:  # the loop is closed (asyncio) or its run has ended (trio)
        pass


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
            _call_soon_on(self._loop, scope.cancel)


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


# -- locks ------------------------------------------------------------------------------


def _nothing() -> object:
    return None


class AsyncLock:
    """A lock for tasks, made afresh for each event loop it is used on."""

    def __init__(self) -> None:
        self._loop: Callable[[], object] = _nothing  # held weakly: a dead loop is freed
        self._lock: anyio.Lock | None = None

    async def acquire(self, timeout: float | None) -> bool:
        """Take the lock within ``timeout`` seconds (``None``: wait as long as it takes)."""
        import anyio

        loop = async_current_loop()[1]
        if self._lock is None or loop is not self._loop():
            try:
                self._loop = weakref.ref(loop)
            except TypeError:  # not weakly referable: held as it is
                self._loop = lambda: loop
            self._lock = anyio.Lock()
        if timeout is None:
            await self._lock.acquire()
            return True
        with anyio.move_on_after(timeout):
            await self._lock.acquire()
            return True
        return False

    def release(self) -> None:
        """Give the lock back."""
        assert self._lock is not None
        self._lock.release()


class Lock:
    """A lock for threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, timeout: float | None) -> bool:
        """Take the lock within ``timeout`` seconds (``None``: wait as long as it takes)."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=min(max(timeout, 0.0), threading.TIMEOUT_MAX))

    def release(self) -> None:
        """Give the lock back."""
        self._lock.release()


class AsyncAtomic:
    """Bookkeeping no other task interleaves: on an event loop a block without ``await``
    already runs alone, so there is nothing to hold (``with`` this, as with :class:`Atomic`)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


class Atomic:
    """Bookkeeping no other thread interleaves: a ``threading.Lock`` held by ``with``."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()


# -- sleeping -------------------------------------------------------------------------


async def async_sleep(seconds: float) -> None:
    """Wait ``seconds`` on the running loop (asyncio or trio)."""
    import anyio

    await anyio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    """Wait ``seconds``."""
    time.sleep(min(seconds, threading.TIMEOUT_MAX))


class AsyncWakeup:
    """A back-off wait that a close cuts short, from another task of the same loop.

    Once woken it stays woken: whatever waits after that returns at once (the client that
    owns it is closing).
    """

    __slots__ = ("_event", "woken")

    def __init__(self) -> None:
        self._event: Any = None
        self.woken = False

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until :meth:`wake`."""
        import anyio

        event = self._event = anyio.Event()
        try:
            if not self.woken:  # checked after the event is set up: no wake is missed
                with anyio.move_on_after(seconds):
                    await event.wait()
        finally:
            self._event = None

    def wake(self) -> None:
        """End the wait now, and every later one."""
        self.woken = True
        event = self._event
        if event is not None:
            event.set()


class Wakeup:
    """A back-off wait that a close cuts short, from another thread.

    Once woken it stays woken: whatever waits after that returns at once (the client that
    owns it is closing).
    """

    __slots__ = ("_event", "woken")

    def __init__(self) -> None:
        self._event: threading.Event | None = None
        self.woken = False

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until :meth:`wake`."""
        event = self._event = threading.Event()
        try:
            if not self.woken:  # checked after the event is set up: no wake is missed
                event.wait(min(seconds, threading.TIMEOUT_MAX))
        finally:
            self._event = None

    def wake(self) -> None:
        """End the wait now, and every later one."""
        self.woken = True
        event = self._event
        if event is not None:
            event.set()


# -- shielding --------------------------------------------------------------------------


@contextlib.contextmanager
def async_shield() -> Iterator[None]:
    """Shield what runs inside from cancellation (releasing a connection must finish)."""
    import anyio

    with anyio.CancelScope(shield=True):
        yield


@contextlib.contextmanager
def sync_shield() -> Iterator[None]:
    """Nothing cancels a blocking call."""
    yield


# -- the end of an event loop -----------------------------------------------------------

# ``asyncio.run`` (``shutdown_asyncgens``) and ``trio.run`` finalize the async generators
# still alive when the loop ends, inside the loop: a generator's ``finally`` is the hook
# asyncio and trio do not otherwise have. The caller holds the generator (nothing global
# does), and ends it itself when it no longer cares (``aclose``).


async def async_at_loop_end(
    callback: Callable[[object], Awaitable[None]],
) -> AsyncGenerator[None, None]:
    """Arrange for ``await callback(loop)`` (a bound method, held weakly) when the running
    loop shuts down; returns the handle the caller keeps (and ``aclose()``s when done)."""
    loop = async_current_loop()[1]
    guard = _guard(loop, weakref.WeakMethod(callback))
    await guard.__anext__()  # started on this loop: the loop now finalizes it
    return guard


async def _guard(
    loop: object, reference: weakref.WeakMethod[Callable[[object], Awaitable[None]]]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        method = reference()
        if method is not None:
            await method(loop)


def sync_at_loop_end(callback: Callable[[object], None]) -> Any:
    """Threads have no loop to end: nothing to arrange (no handle: ``None``)."""
    return None


# -- cleaning up later, from a finalizer ------------------------------------------------

_pending: set[Any] = set()  # cleanups scheduled on a loop: held until they ran


def async_later(loop: tuple[str, object], cleanup: Callable[[], Awaitable[None]]) -> None:
    """Run ``await cleanup()`` soon on ``loop`` (from any thread, a finalizer included);
    nothing if that loop has ended."""

    def start() -> None:
        kind, _ = loop
        if kind == "asyncio":
            import asyncio

            task = asyncio.get_running_loop().create_task(_quietly(cleanup))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
        else:
            import trio

            trio.lowlevel.spawn_system_task(_quietly, cleanup)

    _call_soon_on(loop, start)


async def _quietly(cleanup: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(Exception):  # a cleanup has no caller to tell
        await cleanup()


_closer: queue.SimpleQueue[Callable[[], None]] | None = None
_closer_lock = threading.Lock()


def sync_later(loop: tuple[str, object], cleanup: Callable[[], None]) -> None:
    """Run ``cleanup()`` soon on the closer thread: a finalizer may run while this thread
    holds the lock ``cleanup`` needs."""
    global _closer
    with _closer_lock:
        if _closer is None:
            _closer = queue.SimpleQueue()
            threading.Thread(
                target=_close_forever, args=(_closer,), name="aichatonline-closer", daemon=True
            ).start()
        _closer.put(cleanup)


def _close_forever(jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
    while True:
        job = jobs.get()
        with contextlib.suppress(Exception):  # a cleanup has no caller to tell
            job()


# -- handing out items --------------------------------------------------------------------

#: What ``__anext__`` returns: an awaitable of the item (the generated ``__next__``
#: returns the item itself: scripts/unasync.py writes ``AsyncNext[T]`` as ``T``).
AsyncNext = Awaitable


def async_close_now(generator: AsyncGenerator[Any, None]) -> None:
    """End a suspended async generator without an event loop (its cleanup never awaits)."""
    closing = generator.aclose()
    try:
        closing.send(None)
    except (StopIteration, RuntimeError):  # ended (RuntimeError: it was running)
        pass
    finally:
        closing.close()


def sync_close_now(generator: Generator[Any, None, None]) -> None:
    """End a suspended generator."""
    generator.close()
