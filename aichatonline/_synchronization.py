"""The few things the async I/O layer and its generated sync twin really do differently.

The I/O layer is written once, async, in ``_async/``; ``scripts/unasync.py`` generates
``_sync/`` from it by rewriting names (``async_x`` becomes ``sync_x``, ``AsyncX`` becomes
``X``) and dropping ``async``/``await``. What cannot be had by rewriting lives here, in
pairs side by side:

- the network backend: asyncio's or trio's (whichever loop runs the call) / blocking sockets;
- the event loop a call runs on, so an ``AsyncClient`` can notice being moved to a new
  loop (it starts afresh) or to another backend (an error: one client per backend);
- a lock acquired within the call's time limit: ``anyio.Lock`` / ``threading.Lock``;
- a sleep: ``anyio.sleep`` / ``time.sleep``;
- a guard that ends a wait at the whole-call bound, used only around a caller's own httpx
  client (the SDK's own connections size every wait instead): a cancel scope / nothing
  (a blocking call cannot be cancelled; its per-operation limits still hold);
- shielding the release of a caller's httpx response from cancellation / nothing;
- running a callback when the event loop shuts down (so idle connections are closed
  while their loop can still close them) / nothing (threads have no such end);
- ending a suspended generator without an event loop (from a finalizer), and the type
  ``__anext__`` returns: an awaitable of the item / the item itself.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

from ._backends import get_async_backend, get_sync_backend
from ._backends.base import AsyncNetworkBackend, NetworkBackend
from ._exceptions import InvalidRequestError

if TYPE_CHECKING:  # anyio is imported where the async client first needs it
    import anyio

__all__ = [
    "AsyncLock",
    "AsyncNext",
    "Lock",
    "async_at_loop_end",
    "async_backend",
    "async_close_now",
    "async_current_loop",
    "async_deadline_guard",
    "async_shield",
    "async_sleep",
    "sync_at_loop_end",
    "sync_backend",
    "sync_close_now",
    "sync_current_loop",
    "sync_deadline_guard",
    "sync_shield",
    "sync_sleep",
]


# -- which loop, which backend ---------------------------------------------------------


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


def async_backend(kind: str) -> AsyncNetworkBackend:
    """The network backend for loop ``kind`` (``"asyncio"`` or ``"trio"``)."""
    return get_async_backend(kind)  # type: ignore[return-value]


def sync_backend(kind: str) -> NetworkBackend:
    """The blocking network backend."""
    return get_sync_backend(kind)  # type: ignore[return-value]


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


# -- sleeping -------------------------------------------------------------------------


async def async_sleep(seconds: float) -> None:
    """Wait ``seconds`` on the running loop (asyncio or trio)."""
    import anyio

    await anyio.sleep(seconds)


def sync_sleep(seconds: float) -> None:
    """Wait ``seconds``."""
    time.sleep(seconds)


class AsyncWakeup:
    """A back-off wait that a close cuts short, from another task of the same loop.

    Once woken it stays woken: whatever waits after that returns at once (the stream or
    client that owns it is closing).
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

    Once woken it stays woken: whatever waits after that returns at once (the stream or
    client that owns it is closing).
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
                event.wait(seconds)
        finally:
            self._event = None

    def wake(self) -> None:
        """End the wait now, and every later one."""
        self.woken = True
        event = self._event
        if event is not None:
            event.set()


# -- guards for a caller's own httpx client ---------------------------------------------


@contextlib.asynccontextmanager
async def async_deadline_guard(seconds: float | None) -> AsyncIterator[bool]:
    """End the wait inside after ``seconds`` (``None``: no bound); yields nothing useful.

    Raises ``TimeoutError`` when it fires.
    """
    if seconds is None:
        yield False
        return
    import anyio

    with anyio.fail_after(seconds):
        yield True


@contextlib.contextmanager
def sync_deadline_guard(seconds: float | None) -> Iterator[bool]:
    """A blocking call cannot be cancelled: the per-operation limits bound it, and a bound
    already past is refused before it starts (so it holds between reads).

    Raises ``TimeoutError`` when ``seconds`` is zero.
    """
    if seconds is not None and seconds <= 0:
        raise TimeoutError()
    yield False


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
# does): a loop that ends without finalizing its generators (``loop.close()`` alone) is
# then freed with the caller's next loop, not kept for the life of the process.


async def async_at_loop_end(callback: Callable[[object], None]) -> object:
    """Arrange for ``callback(loop)`` (a bound method, held weakly) to run when the running
    loop shuts down; returns the handle the caller keeps for as long as it cares."""
    loop = async_current_loop()[1]
    guard = _guard(loop, weakref.WeakMethod(callback))
    await guard.__anext__()  # started on this loop: the loop now finalizes it
    return guard


async def _guard(
    loop: object, reference: weakref.WeakMethod[Callable[[object], None]]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        method = reference()
        if method is not None:
            method(loop)


def sync_at_loop_end(callback: Callable[[object], None]) -> object:
    """Threads have no loop to end: nothing to arrange."""
    return None


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
