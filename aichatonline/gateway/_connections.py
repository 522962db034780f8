"""The gateway's connections on uvicorn: deadlines, a budget, and closes that let answers land.

uvicorn arms no timer before a connection's first response, and every byte a client sends
resets its keep-alive timer: a client that connects and sends nothing, or sends its request
head a byte a second (slowloris), holds a descriptor for as long as it likes, and a few
thousand of them stop the gateway for everyone. This module closes that gap through
uvicorn's own seam for it, the HTTP protocol class (``uvicorn.Config(http=...)``): the
classes here subclass uvicorn's protocols (httptools' when it is installed, as uvicorn's
``auto`` picks, else h11's) and change none of uvicorn's code.

Theory of operation
-------------------
Each connection is in one phase with at most one deadline: one timer, armed when the phase
changes (a handful of times per request), never per byte received.

=====  =============================================  =====================================
phase  deadline                                       when it passes
=====  =============================================  =====================================
head   ``header_timeout`` after the accept, or after  nothing received: close; part of a
       the previous response                          head: 408 and close
body   ``body_timeout`` after the head                408 and close (close, if a response
                                                      has started)
app    none: the app's own limits apply               -
=====  =============================================  =====================================

Between requests uvicorn's own keep-alive timer closes an idle connection first; the first
byte of a next request cancels that timer, and the head deadline still holds. With a
keep-alive longer than ``header_timeout``, the next head has ``header_timeout`` from its
first byte instead.

The budget: a connection accepted while ``max_connections`` others are open is answered
503 (``Retry-After: 1``, ``Connection: close``) at once and closed, before any of its bytes
are read. A response that leaves part of the request unread (every refusal answered before
the body, see ``_refusals.py``, or any answer that ignores a body) ends the connection.

Closing: uvicorn closes through the transport it was given, a :class:`_Transport` that
hands the decision to the protocol. When the client may still be sending (a refusal before
its body, a 408 after half a head), the connection is half-closed instead: the answer and
a FIN go out, what the client still sends is read and dropped for at most ``linger``
seconds (or until the client closes), then the socket is closed. Closing with unread bytes
at once would make the kernel answer with a reset, which can destroy the answer before the
client reads it. A connection over the budget is closed at once: its descriptor is the
scarce thing.

The descriptor limit, the default budget and failed ``accept()`` calls: ``_descriptors.py``.
"""

from __future__ import annotations

import asyncio
import functools
import http
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: uvicorn's "auto" is h11 then too
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from ..types import ErrorObject
from ._chat import BODY_SECONDS
from ._descriptors import FALLBACK_MAX_CONNECTIONS, Throttled
from ._errors import Failure, log
from ._settings import DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT

__all__ = ["LINGER_SECONDS", "ConnectionLimits", "GuardedH11Protocol", "guarded_protocol"]

#: The most seconds a closed connection keeps reading (and dropping) what its client sends.
LINGER_SECONDS = 2.0
#: Seconds the app's own body deadline (``BODY_SECONDS``) goes first; this one is the backstop.
_BODY_GRACE = 1.0
_HEAD, _BODY, _APP = "head", "body", "app"


#: The bytes a connection's write buffer holds before the app waits for the client to read.
WRITE_BUFFER_HIGH = 16 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """What one worker allows a connection: the deadlines, the budget, the linger."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = BODY_SECONDS + _BODY_GRACE
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    max_connections: int = FALLBACK_MAX_CONNECTIONS
    linger: float = LINGER_SECONDS


# --------------------------------------------------------------------------- canned answers


def _raw(failure: Failure) -> bytes:
    """``failure`` as a whole HTTP/1.1 response that closes the connection."""
    body = failure.body()
    lines = [
        b"HTTP/1.1 %d %s" % (failure.status, http.HTTPStatus(failure.status).phrase.encode()),
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
        *(name + b": " + value for name, value in failure.headers),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@functools.lru_cache(maxsize=8)
def _late(part: str, seconds: float) -> bytes:
    return _raw(
        Failure.invalid(
            408, f"The request {part} did not arrive within {seconds:g} s.", code="request_timeout"
        )
    )


_BUSY = _raw(
    Failure(
        503,
        ErrorObject(
            message="The gateway has as many connections open as it may; retry shortly.",
            type="server_error",
            code="too_many_connections",
        ),
        [(b"retry-after", b"1")],
    )
)


_over_budget = Throttled(log)


# --------------------------------------------------------------------------- the transport


class _Transport(asyncio.Transport):
    """The transport uvicorn's protocol sees: ``close()`` is the guard's decision, and what
    uvicorn writes after it is dropped (the guard may have answered already)."""

    def __init__(self, transport: Any, on_close: Callable[[], None]) -> None:
        super().__init__()
        self._transport: asyncio.Transport = transport
        self._on_close = on_close
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closing:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        if not self.closing:
            self._transport.writelines(list_of_data)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self._on_close()

    def is_closing(self) -> bool:
        return self.closing or self._transport.is_closing()

    def abort(self) -> None:
        self.closing = True
        self._transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


# --------------------------------------------------------------------------- the protocol


class _Guarded(asyncio.Protocol):
    """The deadlines, the budget and the lingering close, over one of uvicorn's protocols.

    Listed before uvicorn's class in the bases. What it reads of uvicorn's protocol is
    what both of its HTTP/1.1 protocols have: ``config``, ``loop``, ``connections`` (the
    server's open connections), ``cycle`` (the newest request: ``more_body``,
    ``response_started``, ``response_complete``) and ``on_response_complete()``.
    """

    config: Any
    loop: asyncio.AbstractEventLoop
    connections: Any
    cycle: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super_: Any = super()
        super_.__init__(*args, **kwargs)
        limits = getattr(self.config, "connection_limits", None)
        self._limits: ConnectionLimits = limits or ConnectionLimits()
        self._timer: asyncio.TimerHandle | None = None
        self._socket: Any = None  # the real transport
        self._shown: _Transport | None = None
        self._phase = _HEAD
        self._head_started = False  # a byte of the awaited request head has arrived
        self._lingering = False
        self._lost = False

    # -- asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        # Any: uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._socket = transport
        # A slow reader's stream holds what waits in this buffer: uvicorn stops sending past
        # its high-water mark (flow control), so a low mark bounds the memory per stream.
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._shown = _Transport(transport, self._close)
        super().connection_made(self._shown)
        if len(self.connections) > self._limits.max_connections:
            _over_budget.warning(
                "%d connections open, the most this worker allows (--max-connections): "
                "new ones are answered 503",
                self._limits.max_connections,
            )
            transport.write(_BUSY)
            self._shown.closing = True
            transport.close()
            return
        self._arm(self._limits.header_timeout, self._head_late)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # read and dropped: the answer has gone out
        if self._phase is _HEAD and not self._head_started:
            self._head_started = True
            if self._timer is None:  # after a keep-alive longer than header_timeout
                self._arm(self._limits.header_timeout, self._head_late)
        newest = self.cycle
        super().data_received(data)
        self._follow(newest)

    def eof_received(self) -> None:
        # Returning None closes the socket: lingering, the client is done too; otherwise
        # uvicorn's own answer (None as well).
        if not self._lingering:
            super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._disarm()
        super().connection_lost(exc)

    # -- uvicorn's hook, called when a response is complete

    def on_response_complete(self) -> None:
        newest = self.cycle
        super_: Any = super()
        super_.on_response_complete()
        if self._shown is None or self._shown.closing or self._lost:
            return
        if self.cycle is not newest:  # h11 went on to a pipelined request at once
            self._follow(newest)
        elif newest.response_complete:
            if newest.more_body:  # the answer left part of the body unread: end here
                self._shown.close()
                return
            self._phase, self._head_started = _HEAD, False
            if self._limits.keep_alive_timeout <= self._limits.header_timeout:
                self._arm(self._limits.header_timeout, self._head_late)
            else:
                self._disarm()  # uvicorn's keep-alive timer; the first byte arms ours
        # else: a pipelined request waits (httptools); its phase was set when its head came

    # -- phases

    def _follow(self, previous: Any) -> None:
        """After uvicorn parsed bytes: a new head, or the end of the body, changes the phase."""
        cycle = self.cycle
        if cycle is not previous and cycle is not None:
            if cycle.more_body:
                self._phase = _BODY
                self._arm(self._limits.body_timeout, self._body_late)
            else:
                self._phase = _APP
                self._disarm()
        elif self._phase is _BODY and cycle is not None and not cycle.more_body:
            self._phase = _APP
            self._disarm()

    def _head_late(self) -> None:
        self._timer = None
        if self._head_started:
            self._answer_and_close(_late("head", self._limits.header_timeout))
        elif self._shown is not None:
            self._shown.close()

    def _body_late(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self._answer_and_close(_late("body", self._limits.body_timeout))
        elif self._shown is not None:
            self._shown.close()

    def _answer_and_close(self, response: bytes) -> None:
        assert self._shown is not None
        if not self._shown.closing:
            self._socket.write(response)
            self._shown.close()

    # -- timers and closing

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        """uvicorn (or a deadline) closes: linger if the client may still be sending."""
        self._disarm()
        socket = self._socket
        assert socket is not None
        cycle = self.cycle
        sending = (self._phase is _HEAD and self._head_started) or (
            cycle is not None and cycle.more_body
        )
        if self._lost or not sending or not socket.can_write_eof() or socket.is_closing():
            socket.close()
            return
        self._lingering = True
        socket.resume_reading()
        socket.write_eof()  # the answer, then a FIN; the client reads both
        self._timer = self.loop.call_later(self._limits.linger, socket.close)


class GuardedH11Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the gateway's deadlines, budget and lingering close."""


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol with the gateway's deadlines, budget and closes."""


def guarded_protocol() -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``: over httptools' protocol when it
    is installed (as uvicorn's ``auto`` chooses), else over h11's."""
    if HttpToolsProtocol is None:
        return GuardedH11Protocol
    return GuardedHttpToolsProtocol
