"""A streamed answer: the I/O loop that carries out one chat call, piece by piece.

:class:`AsyncStream` is an async iterator of text pieces. Its loop does I/O and nothing
else: it asks the call (``_core/call.py``) for the next action, performs it (get the
token, send the request, read the head or the next body bytes, sleep), and reports back;
every decision (retry, refresh the token, resume, give up) is the call's. A piece is handed
out straight from the list the call returned, without a generator in between.

Waiting. Each run of the loop happens inside ``AsyncWaits.running()`` (one cancel scope;
on the blocking client, a watchdog that shuts the request's socket down): before each wait
the call's nearer bound (whole call, first piece) is set as its deadline, and a close from
any task or thread ends the wait at once.

Closing. ``aclose()`` (or the end of an ``async with`` block) stops the stream: its
response is closed (httpx keeps the connection if the answer had ended). It may come from
another task or thread while one iterates: that iteration then simply ends. When the client
is closed while a stream runs, the stream ends with ``StreamInterrupted`` carrying the text
so far (or ``APIConnectionError`` with none yet), its cause saying the client was closed.
A stream dropped without being closed is closed after garbage collection, on its loop (on
the blocking client, by a closer thread); the stream is not a generator, so no event loop
has to finalize it and trio has nothing to warn about.

Written once, async; ``_sync/stream.py`` is generated from it.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Protocol, cast

from .._core import (
    COMPLETE,
    ERROR_BODY_LIMIT,
    FETCH_TOKEN,
    READ_BODY,
    READ_ERROR,
    Call,
    CallState,
    EventOrderError,
    Raise,
    RetryPolicy,
    Send,
    Sleep,
    TimeLimits,
)
from .._exceptions import APIConnectionError, APIError, InvalidRequestError
from .._stream_waits import AsyncSocket, AsyncWaits, Expired, Interrupted
from .._synchronization import AsyncNext, AsyncWakeup, async_close_now
from .closing import AsyncClosing
from .transport import AsyncResponse, AsyncTransport

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["AsyncStream", "AsyncTokenSource"]


class AsyncStream(AsyncClosing):
    """A streamed answer: ``async for`` it for text pieces.

    ``text`` is the text delivered so far, ``anomalies`` how many unreadable lines were
    skipped, ``retries`` how many retries the call took, ``headers`` the response headers
    of the last attempt. Leaving early (``break`` then ``aclose()``, the end of an
    ``async with`` block, an exception, or garbage collection) closes the response and
    gives its connection back.
    """

    __slots__ = (
        "__weakref__",
        "_call",
        "_client_closed",
        "_closed",
        "_iterating",
        "_pieces_out",
        "_response",
        "_tokens",
        "_transport",
        "_waits",
        "_wakeup",
    )

    def __init__(self, call: Call, transport: AsyncTransport, tokens: AsyncTokenSource) -> None:
        self._call = call
        self._transport = transport
        self._tokens = tokens
        self._response: AsyncResponse | None = None
        self._waits = AsyncWaits()  # every wait bounded, and ended by a close
        self._wakeup = AsyncWakeup()  # a back-off wait that closing cuts short
        # The generator sees the stream through a weak proxy: no reference cycle, so a
        # stream dropped mid-answer is finalized (and its connection closed) at once.
        self._pieces_out = _hand_out(cast("AsyncStream", weakref.proxy(self)))
        self._closed = False
        self._client_closed = False
        self._iterating = False

    # -- what the caller sees ---------------------------------------------------------

    @property
    def text(self) -> str:
        """All text handed out so far (another thread may read it while the stream runs).

        An :class:`~aichatonline.InvalidRequestError` for a stream made with
        ``keep_text=False``, which does not keep it.
        """
        return self._call.transcript.seen_text

    @property
    def conversation_id(self) -> str:
        """The ``conversationId`` sent with every attempt of this stream."""
        return self._call.chat.conversation_id

    @property
    def anomalies(self) -> int:
        """Unreadable lines skipped (and surrogate halves replaced), over every attempt."""
        return self._call.anomalies

    @property
    def retries(self) -> int:
        """How many retries the call took so far."""
        return self._call.retries

    @property
    def headers(self) -> Mapping[str, str] | None:
        """The response headers of the last attempt (lower-case names), once one came."""
        return self._call.headers

    @property
    def completed(self) -> bool:
        """Whether the whole answer arrived and was handed out (not stopped early, not
        failed)."""
        call = self._call
        return call.state is CallState.COMPLETE and not call.transcript.pending

    def __aiter__(self) -> Self:
        return self

    def __anext__(self) -> AsyncNext[str]:
        # Straight to the pieces generator, whose own step is C code: a method written
        # in Python for every piece cost about twice as much.
        return self._pieces_out.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its connection (from any task, any time)."""
        self._closed = True
        self._wakeup.wake()
        if self._iterating:  # another task waits on it: wake it, and it cleans up
            self._waits.interrupt()
            return
        try:
            await self._pieces_out.aclose()  # not running: it just ends
        except (ValueError, RuntimeError):
            # Another thread is handing out a piece of a batch this moment (``generator
            # already executing``): end that batch after the piece, and the thread's loop
            # sees ``_closed`` and cleans up.
            self._call.transcript.cut_batch()
            return
        await self._close_response()

    def __del__(self) -> None:
        # A finalizer must not raise (the stream's event loop may be gone already).
        response = getattr(self, "_response", None)
        if response is not None:
            with contextlib.suppress(Exception):
                response.close_later()
        pieces_out = getattr(self, "_pieces_out", None)
        if pieces_out is not None:
            # Ended here, synchronously: a generator collected unfinished makes trio warn.
            async_close_now(pieces_out)

    def __repr__(self) -> str:
        chars = self._call.transcript.length
        return f"<{type(self).__name__} conversation_id={self.conversation_id!r} chars={chars}>"

    # -- the loop ---------------------------------------------------------------------

    def client_closed(self) -> None:
        """The client is closing: end this stream (from the client, any task or thread)."""
        self._client_closed = True
        self._wakeup.wake()
        self._waits.interrupt()

    async def _advance(self) -> list[str]:
        """Run the call until it has pieces for the caller (``[]`` at the end)."""
        call = self._call
        while True:
            try:
                with self._waits.running() as waits:
                    return await self._run(waits)
            except Expired:
                expired = True
            except Interrupted:
                expired = False
            # Handled here, out of the except blocks: the error that ended the wait must
            # not ride along as the new error's __context__.
            await self._close_response()
            if expired and not call.over:  # a bound ran out: one more failed attempt
                limits = call.limits
                error = limits.timeout_error(self._doing(), limits.bound_name())
                error.__cause__ = TimeoutError("the wait was ended at the bound")
                call.failed(error)
                continue
            if self._closed or not self._client_closed:
                return []
            call.stop(APIConnectionError("the client was closed while the answer streamed"))
            self._closed = True
            action = call.next_action()
            assert type(action) is Raise
            raise action.error

    async def _run(self, waits: AsyncWaits) -> list[str]:
        call = self._call
        limits = call.limits
        while True:
            if self._closed:
                await self._close_response()
                return []
            action = call.next_action()
            try:
                if action is READ_BODY:
                    response = self._response
                    assert response is not None
                    waits.bound(limits.bound(), response.socket)
                    data = await response.read(limits)
                    pieces = call.receive(data) if data else call.end_of_body()
                    if call.next_action() is not READ_BODY:
                        # The answer ended, or the attempt failed: its pieces go out first.
                        await self._close_response()
                    if pieces:
                        return pieces
                elif type(action) is Send:
                    call.sent()
                    socket = AsyncSocket()
                    waits.bound(limits.bound(), socket)
                    response = await self._transport.send(action.request, limits, socket)
                    self._response = response
                    call.response_head(response.status, response.headers)
                    if call.next_action() not in (READ_BODY, READ_ERROR):
                        await self._close_response()  # unreadable: the attempt failed
                elif action is FETCH_TOKEN:
                    socket = AsyncSocket()
                    waits.bound(limits.bound(), socket)
                    try:
                        token = await self._tokens.token_for(call.policy, limits, socket)
                    except APIError as exc:
                        waits.check()  # a wait ended on purpose (a close, a deadline)
                        call.token_failed(exc)
                        continue
                    call.token_ready(token)
                elif action is READ_ERROR:
                    response = self._response
                    assert response is not None
                    waits.bound(limits.bound(), response.socket)
                    body = await response.read_limited(limits, ERROR_BODY_LIMIT)
                    await self._close_response()
                    call.error_body(body)
                elif type(action) is Sleep:
                    waits.bound(limits.bound())
                    await self._wakeup.sleep(action.seconds)  # the call never sleeps past total
                    call.slept()
                elif type(action) is Raise:
                    self._closed = True
                    raise action.error
                elif action is COMPLETE:
                    self._closed = True
                    return []
                else:
                    raise EventOrderError(f"the stream's loop has no step for {action!r}")
            except (APIError, InvalidRequestError) as exc:
                if type(action) is Raise:
                    raise
                await self._close_response()
                waits.check()  # a wait ended on purpose (a close, a deadline) says so
                if self._closed:
                    return []
                if self._client_closed:
                    closed = APIConnectionError("the client was closed while the answer streamed")
                    closed.__cause__ = exc
                    call.stop(closed)
                elif isinstance(exc, InvalidRequestError):
                    raise
                else:
                    call.failed(exc)
            except BaseException:
                await self._close_response()
                raise

    def _doing(self) -> str:
        """What the call was doing, for a message: its request, or fetching the token."""
        request = self._call.request
        if request is None:
            return "fetching the token"
        return self._transport.describe(request)

    async def _close_response(self) -> None:
        """Done with the response: httpx keeps its connection when the body was read to its
        end, and closes it otherwise."""
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()


async def _hand_out(stream: AsyncStream) -> AsyncGenerator[str, None]:
    """The pieces, batch by batch as the call gives them (the generator behind
    ``__anext__``)."""
    transcript = stream._call.transcript
    while not stream._closed:
        stream._iterating = True
        try:
            pieces = await stream._advance()
        finally:
            stream._iterating = False
        if not pieces:
            return
        # The transcript follows the batch's iterator, so that what the caller has seen is
        # known without a Python call for each piece; once the batch is out, nothing holds
        # its pieces (a stream waiting for its next read keeps none of them).
        handed = transcript.hand_out(pieces)
        del pieces
        for piece in handed:
            yield piece
        transcript.handed_out()
    await stream._close_response()  # closed from another thread while a batch was handed out


class AsyncTokenSource(Protocol):
    """Where a stream gets its token: the client's cache, or one fetch for every waiter."""

    async def token_for(
        self, policy: RetryPolicy, limits: TimeLimits, socket: AsyncSocket | None = None
    ) -> str: ...
