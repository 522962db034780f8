"""Background-thread life: one asyncio listener in a daemon thread, for sync, asyncio and trio.

``BackgroundServer`` is the base of ``LocalServer`` and ``ForwardProxy``: ``start()`` /
``stop()``, ``wait_for()``, and the sync and async context managers. A subclass says how to
listen (``_listen``) and serves its connections on the loop.

Threads. ``start()`` spawns one daemon thread that owns a private asyncio event loop; every
socket is served on that loop. The calling thread only ever touches shared state under one
re-entrant lock (``_lock``), which is also the lock of a condition variable (``_changed``)
notified on every change, so ``wait_for()`` sleeps instead of polling. Because the loop lives
in its own thread, the server behaves the same when driven from sync code, asyncio or trio.
``stop()`` asks the loop to finish: it closes the listener, aborts every open connection (which
also ends stalls and paced streams at once), cancels the handlers and joins the thread.

What subclasses use (protected, not public): ``_thread_name``; ``_listen()`` to override;
``_host`` and ``_requested_port``; ``_lock`` and ``_changed`` around their own state (notify
``_changed`` on every change that a ``wait_for`` predicate may read); ``_track(task,
transport)`` for each connection's handler, and ``_transports`` to forget a closed transport;
``_stopping`` (true while ``stop()`` tears down); ``_authority()`` for their URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import types
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BackgroundServer"]

_S = TypeVar("_S", bound="BackgroundServer")


class BackgroundServer:
    """Run one asyncio listener in a daemon thread; shared by LocalServer and ForwardProxy."""

    _thread_name = "aichatonline-testing"

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._requested_port = port
        self._port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()
        self._stopping = False

    async def _listen(self) -> asyncio.Server:
        raise NotImplementedError

    # -- public lifecycle

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port the server listens on (the ephemeral one once started with port 0)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the server is started and not stopped."""
        with self._lock:
            return self._thread is not None

    def _authority(self) -> str:
        if not self.running:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def start(self: _S) -> _S:
        """Start listening in a background thread; return once connections are accepted."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError(f"{type(self).__name__} is already started")
            ready = threading.Event()
            errors: list[BaseException] = []
            self._stopping = False
            thread = threading.Thread(
                target=self._run, args=(ready, errors), name=self._thread_name, daemon=True
            )
            self._thread = thread
        thread.start()
        if not ready.wait(timeout=30) or errors:
            self.stop()
            if errors:
                raise errors[0]
            raise RuntimeError(f"{type(self).__name__} did not start within 30 seconds")
        return self

    def stop(self) -> None:
        """Stop the server: close the listener and every connection, join the thread.

        Idempotent; safe to call from any thread but the server's own.
        """
        with self._lock:
            thread, loop, stop_event = self._thread, self._loop, self._stop_event
            self._thread = None
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(stop_event.set)
        if thread is not threading.current_thread():
            thread.join(timeout=5)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self: _S) -> _S:
        import anyio.to_thread  # lazily: the module itself needs the standard library only

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.stop)

    def wait_for(self: _S, predicate: Callable[[_S], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` is true; return False after ``timeout`` seconds.

        The predicate is re-checked whenever the server's records or counters change (no
        polling), so it should depend on those.
        """
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    # -- loop thread

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(ready, errors))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self, ready: threading.Event, errors: list[BaseException]) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
            stop_event = self._stop_event
            if self._thread is None:  # stop() came before the loop existed
                stop_event.set()
        try:
            server = await self._listen()
        # Whatever went wrong (port taken, bad host or port), start() re-raises it.
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
            ready.set()
            return
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await stop_event.wait()
        finally:
            self._stopping = True
            server.close()
            # Aborting the sockets ends every handler (reads see EOF, stalls see the peer
            # gone); cancelling is the fallback for a handler still busy after that.
            for transport in list(self._transports):
                transport.abort()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=1)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _track(self, task: asyncio.Task[None], transport: asyncio.WriteTransport | None) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if transport is not None:
            self._transports.add(transport)
