"""One worker's state: its settings, its SDK client, its metrics, readiness and the drain.

Nothing here belongs to a request. :class:`Gateway` holds what every request of the worker
shares: the SDK ``AsyncClient`` (made and closed by the app's lifespan), the chat requests
in progress (so the drain can end them), when the service last answered (readiness) and the
metrics.

The drain (theory of operation)
-------------------------------
``aichatonline gateway`` turns SIGTERM and SIGINT into a drain (:func:`drain_on_signals`,
installed by the lifespan when the app runs in the main thread of its process):

1. ``draining`` becomes true: every new request is answered 503 ``gateway_shutting_down``
   with ``Connection: close`` (``/health`` and ``/ready`` too; ``/metrics`` still answers),
   and every answer that starts from then on closes its connection. The worker still
   accepts connections, so none waits unanswered while load balancers notice the 503s.
2. The chat requests in progress get ``shutdown_timeout`` seconds to finish.
3. Those still running are cut: a stream gets the text it was owed so far, an OpenAI error
   event (``gateway_shutting_down``) and ``data: [DONE]``; a request not yet answered a 503.
4. The server is told to exit (uvicorn's own handler): it stops listening, closes idle
   connections and runs the lifespan's shutdown, and the process exits 0.

A second SIGINT during the drain skips to step 4 (uvicorn then waits a few seconds at most).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import sniffio

from .._exceptions import APIError
from ..types import ErrorObject
from ._errors import Failure, failure_for, log
from ._memory import Trimmer
from ._metrics import Metrics
from ._settings import GatewaySettings

if TYPE_CHECKING:
    from .. import AsyncClient

__all__ = ["Gateway", "Live", "drain_on_signals"]

#: The most one readiness check may wait for the service's answer.
PROBE_SECONDS = 5.0
#: After the cut, how long the cut requests get to send their last bytes.
CUT_SECONDS = 5.0


class Live(Protocol):
    """What the drain needs of a chat request in progress: a way to end it now."""

    def cut(self) -> None: ...


class Gateway:
    """One worker's state: settings, SDK client, metrics, readiness, drain. No request data."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.client: AsyncClient | None = None
        self.metrics = Metrics()
        #: Chat requests in progress in this worker (``begin`` and ``end``).
        self.live: set[Live] = set()
        self._idle: anyio.Event | None = None  # set when ``live`` empties, for the drain
        #: Requests whose client went away before the answer was complete.
        self.disconnects = 0
        #: The most text characters one stream held for a slow client.
        self.peak_buffered = 0
        #: Whether the worker is draining (see the module docstring).
        self.draining = False
        #: Whether the lifespan turns SIGTERM/SIGINT into a drain (``aichatonline gateway``).
        self.handle_signals = False
        #: ``time.monotonic()`` when the service last answered (a token, or a first piece).
        self.upstream_ok_at: float | None = None
        self._probe_lock: anyio.Lock | None = None
        #: Gives freed memory back once the worker's streams have ended (``_memory.py``).
        self.trimmer = Trimmer()
        #: The lifespan's task group, for work that outlives a request (a trim).
        self.background: anyio.abc.TaskGroup | None = None

    @property
    def active(self) -> int:
        """Chat requests in progress in this worker."""
        return len(self.live)

    def begin(self, request: Live) -> None:
        self.live.add(request)

    def end(self, request: Live) -> None:
        self.live.discard(request)
        if self.live:
            return
        if self._idle is not None:
            self._idle.set()
        if self.background is not None:
            self.trimmer.streams_ended(self.background)

    async def _until_idle(self) -> None:
        if self.live:
            self._idle = anyio.Event()
            await self._idle.wait()

    def client_gone(self) -> None:
        self.disconnects += 1
        self.metrics.disconnects.inc()

    # ----------------------------------------------------------------------- readiness

    async def not_ready(self) -> Failure | None:
        """``None`` when ready; else the 503 saying why (see ``/ready``)."""
        ttl = self.settings.ready_ttl
        if self._answered_within(ttl):
            return None
        client = self.client
        if client is None:
            return _not_ready("the gateway's lifespan did not run", "gateway_not_started")
        if self._probe_lock is None:
            self._probe_lock = anyio.Lock()
        async with self._probe_lock:  # one token fetch however many probes wait
            if self._answered_within(ttl):
                return None
            try:
                with anyio.fail_after(PROBE_SECONDS):
                    await client.with_options(max_retries=0).get_token(refresh=True)
            except TimeoutError:
                return _not_ready(
                    f"the AiChatOnline service did not answer within {PROBE_SECONDS:g} s",
                    "upstream_timeout",
                )
            except APIError as exc:
                failure = failure_for(exc)
                return _not_ready(failure.error.message, failure.error.code)
            except Exception as exc:  # noqa: BLE001 - e.g. the client closed under the probe
                log.warning("readiness check failed: %s", type(exc).__name__)
                return _not_ready("the readiness check failed", "gateway_not_ready")
        self.upstream_ok_at = time.monotonic()
        return None

    def _answered_within(self, seconds: float) -> bool:
        at = self.upstream_ok_at
        return at is not None and time.monotonic() - at < seconds

    # ----------------------------------------------------------------------- the drain

    async def drain(self) -> None:
        """Steps 1 to 3 of the module docstring; returns when the worker may exit."""
        self.draining = True
        timeout = self.settings.shutdown_timeout
        log.warning(
            "draining: %d chat request(s) in progress get up to %g s",
            len(self.live),
            timeout,
        )
        with anyio.move_on_after(timeout):
            await self._until_idle()
        if not self.live:
            return
        log.warning("shutdown timeout: cutting %d chat request(s)", len(self.live))
        for request in list(self.live):
            request.cut()
        with anyio.move_on_after(CUT_SECONDS):
            await self._until_idle()


def _not_ready(reason: str, code: str | None) -> Failure:
    message = "The gateway is not ready: " + reason.rstrip(".") + "."
    return Failure(503, ErrorObject(message=message, type="server_error", code=code))


async def drain_on_signals(
    gateway: Gateway, *, task_status: Any = anyio.TASK_STATUS_IGNORED
) -> None:
    """Turn SIGTERM/SIGINT into :meth:`Gateway.drain`, then hand the signal to the server.

    Runs for the lifespan of the app, in the main thread of its process (signals can only
    be handled there); elsewhere it does nothing. The server's own handlers (uvicorn's,
    which make it exit) are called once the drain is over, or at once for a second SIGINT.
    """
    if threading.current_thread() is not threading.main_thread():
        task_status.started()
        return
    received: list[int] = []
    wakeup = anyio.Event()
    soon = _call_soon()
    signals = [signal.SIGINT, signal.SIGTERM]
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in signals}

    def on_signal(sig: int, frame: FrameType | None) -> None:
        if not received:
            received.append(sig)
            # A signal handler runs between two bytecodes of the event loop's thread: the
            # event is set from the loop itself, as a callback.
            soon(wakeup.set)
        elif sig == signal.SIGINT:  # a second Ctrl+C: stop without waiting
            _hand_over(previous[sig], sig, frame)

    for sig in signals:
        signal.signal(sig, on_signal)
    task_status.started()
    try:
        await wakeup.wait()
        await gateway.drain()
        _hand_over(previous[received[0]], received[0], None)
    finally:
        for sig in signals:
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, previous[sig])


def _call_soon() -> Callable[[Callable[[], object]], object]:
    """How to run a callback in this event loop from a signal handler, without waiting."""
    if sniffio.current_async_library() == "trio":
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    import asyncio

    return asyncio.get_running_loop().call_soon_threadsafe


def _hand_over(handler: Any, sig: int, frame: FrameType | None) -> None:
    """Let the handler that was there before ours act on ``sig``."""
    if callable(handler):
        handler(sig, frame)
    else:  # no server handler (SIG_DFL): what the signal would have done without us
        signal.signal(sig, signal.SIG_DFL)
        signal.raise_signal(sig)
