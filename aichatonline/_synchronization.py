"""The few things the async I/O layer and its generated sync twin really do differently.

The I/O layer is written once, async, in ``_async/``; ``scripts/unasync.py`` generates
``_sync/`` from it by rewriting names (``async_x`` becomes ``sync_x``, ``AsyncX`` becomes
``X``) and dropping ``async``/``await``. What cannot be had by rewriting lives here, in
pairs side by side:

- the event loop a call runs on, so an ``AsyncClient`` can notice being moved to a new
  loop (its own httpx client starts afresh) or to another backend (an error: one client
  per backend) / none;
- the waits of one stream and the socket under its request are the one larger pair, in
  ``_stream_waits.py``: one anyio cancel scope / a watchdog thread that shuts the socket
  down (a blocking read cannot be cancelled, but it ends when its socket does);
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
    "AsyncWakeup",
    "Lock",
    "Wakeup",
    "async_at_loop_end",
    "async_close_now",
    "async_current_loop",
    "async_later",
    "async_shield",
    "async_sleep",
    "call_soon_on",
    "sync_at_loop_end",
    "sync_close_now",
    "sync_current_loop",
    "sync_later",
    "sync_shield",
    "sync_sleep",
]


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


def call_soon_on(loop: tuple[str, object], callback: Callable[[], object]) -> None:
    """Run ``callback`` on ``loop`` (from any thread); nothing if the loop has ended."""
    kind, handle = loop
    try:
        if kind == "asyncio":
            handle.call_soon_threadsafe(callback)  # type: ignore[attr-defined]
        else:
            handle.run_sync_soon(callback)  # type: ignore[attr-defined]
    except RuntimeError:  # the loop is closed (asyncio) or its run has ended (trio)
        pass


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

    call_soon_on(loop, start)


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
