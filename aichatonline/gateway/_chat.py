"""``POST /v1/chat/completions``: one OpenAI request answered through the SDK's ``AsyncClient``.

Request flow (a raw ASGI endpoint, so the body, the response head and disconnects are in
our hands):

1. Concurrency: past ``max_concurrency`` requests in this worker, 429 at once.
2. Body: at most ``max_body_bytes`` (413), JSON (400, also when nested too deeply for the
   parser), checked by ``aichatonline._openai.check_chat_params`` (400 naming ``param``,
   404 unknown model; with ``drop_params`` unknown parameters are ignored and named in
   ``x-aichatonline-dropped-params``). The model is echoed back as it was asked for.
3. The SDK call (``client.stream(messages)``, with the request id as ``X-Request-Id``):
   ``stream=false`` joins the pieces into one ``chat.completion``. ``stream=true`` pumps
   them into a :class:`~._sse.Pipe`. Without ``sse_keepalive`` the SSE head goes out only
   once the first piece is in hand, so a request that fails before it gets a real HTTP
   status and error object. With it, the head goes out at once, an SSE comment follows each
   ``sse_keepalive`` seconds of silence, and a failure before the first piece is an error
   event followed by ``data: [DONE]``. A failure after the first piece is one
   ``data: {"error": ...}`` event, and the stream ends (text already sent is never sent
   again: the SDK resumes dropped streams and skips what was delivered).
4. A task watches ``receive()`` for ``http.disconnect`` the whole time: a client that goes
   away cancels the request, and the SDK stream is closed at once (``aclose()``, shielded),
   which closes the upstream response.
5. The drain may cut the request (:meth:`_Request.cut`): a stream closes its pipe, so the
   response loop sends what it holds, an error event and ``[DONE]``; anything else is
   cancelled and answered 503.

The request's record (``_observe.RequestRecord``) gets its outcome, first-piece time and
piece count here; nothing is kept once the request ends.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import anyio
import anyio.abc

from .. import AsyncClient, AsyncStream
from .._completions import ChunkSequence, whole_completion
from .._openai import ChatParams, check_chat_params
from ._errors import CLIENT_CLOSED, CONCURRENCY_LIMIT, CUT_BY_SHUTDOWN, Failure, failure_for
from ._observe import RequestRecord, record_of
from ._sse import DONE, KEEPALIVE, ChunkEncoder, Pipe, dumps
from ._worker import Gateway

__all__ = ["ChatEndpoint", "Gateway"]

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_JSON = b"application/json"
_CLOSE_SECONDS = 5.0  # the most a shielded upstream close may take
#: The most a client may take to send its request body.
BODY_SECONDS = 30.0
_BODY_TIMEOUT = Failure.invalid(
    408, f"The request body did not arrive within {BODY_SECONDS:g} s.", code="request_timeout"
)
_DROPPED_HEADER_CHARS = 1024


class _Cut(Exception):
    """Why a pipe closed early: the drain's time was up."""


class _Request:
    """One chat request in progress: the flags its tasks share, and how the drain cuts it."""

    __slots__ = ("cut_requested", "disconnected", "done", "pipe", "record", "work")

    def __init__(self, record: RequestRecord) -> None:
        self.record = record
        #: The answer's last bytes are on their way: nothing may be sent after them.
        self.done = False
        self.disconnected = False
        self.cut_requested = False
        self.pipe: Pipe | None = None
        self.work: anyio.CancelScope | None = None

    def cut(self) -> None:
        """End this request now (the drain's time is up)."""
        if self.done or self.cut_requested:
            return
        self.cut_requested = True
        if self.pipe is not None:  # streaming: the response loop ends it in-band
            self.pipe.close(_Cut())
        elif self.work is not None:
            self.work.cancel()


class ChatEndpoint:
    """The ASGI app of ``POST /v1/chat/completions``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        gateway = self.gateway
        record = record_of(scope)
        if gateway.active >= gateway.settings.max_concurrency:
            record.outcome = "refused"
            await CONCURRENCY_LIMIT.send(send, record.request_id)
            return
        request = _Request(record)
        gateway.begin(request)
        try:
            with anyio.CancelScope() as request.work:
                await self._handle(scope, receive, send, request)
            if request.cut_requested and not request.done and not request.disconnected:
                request.done = True
                record.outcome = "cut_by_shutdown"
                await CUT_BY_SHUTDOWN.send(send, record.request_id)
        finally:
            gateway.end(request)

    async def _handle(self, scope: Any, receive: Any, send: Any, request: _Request) -> None:
        record = request.record
        body: bytes | Failure | None = _BODY_TIMEOUT
        with anyio.move_on_after(BODY_SECONDS):  # a client trickling its body holds a slot
            body = await _read_body(scope, receive, self.gateway.settings.max_body_bytes)
        if isinstance(body, Failure):
            await _answer(body, send, record)
            return
        if body is None:  # the client left while sending its request
            record.outcome = "client_gone"
            return
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply (``[[[[...``)
            invalid = Failure.invalid(
                400, "We could not parse the JSON body of your request.", code="invalid_json"
            )
            await _answer(invalid, send, record)
            return
        try:
            params = check_chat_params(data, drop_unknown=self.gateway.settings.drop_params)
        except ValueError as exc:  # InvalidRequestError is a ValueError
            await _answer(failure_for(exc), send, record)
            return
        record.stream = params.stream
        if params.dropped:
            record.extra_headers.append(
                (b"x-aichatonline-dropped-params", _dropped_header(params.dropped))
            )
        client = self.gateway.client
        if client is None:
            await _answer(failure_for(RuntimeError("the lifespan did not run")), send, record)
            return
        model = data["model"]  # as asked for: an alias is echoed back, as OpenAI does
        # One task group per request: the disconnect watcher, and for a stream the pump.
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, receive, group.cancel_scope, request)
            try:
                if params.stream:
                    await self._stream(client, params, model, send, request, group)
                else:
                    await self._complete(client, params, model, send, request)
            except OSError:  # an ASGI server whose send() raises once the client is gone
                if not request.done:
                    record.outcome = "client_gone"
                    self.gateway.client_gone()
            finally:
                request.done = True
                group.cancel_scope.cancel()  # the watcher; a shielded upstream close goes on

    async def _watch(self, receive: Any, scope: anyio.CancelScope, request: _Request) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not request.done:
                    request.disconnected = True
                    request.record.outcome = "client_gone"
                    self.gateway.client_gone()
                    scope.cancel()
                return

    def _first_piece(self, record: RequestRecord) -> None:
        if record.first_piece is None:
            record.first_piece = self.gateway.upstream_ok_at = time.monotonic()

    async def _complete(
        self, client: AsyncClient, params: ChatParams, model: str, send: Any, request: _Request
    ) -> None:
        record = request.record
        created = int(time.time())
        parts: list[str] = []
        stream = await _open(client, params, send, request)
        if stream is None:
            return
        try:
            async for piece in stream:
                if piece:
                    if not parts:
                        self._first_piece(record)
                    parts.append(piece)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error answer
            request.done = True
            await _answer(_failure(client, exc), send, record)
            return
        finally:
            record.pieces = len(parts)
            await _close(stream, self.gateway)
        completion = whole_completion(model, "".join(parts), created=created)
        body = dumps(completion.to_dict())
        request.done = True
        record.outcome = "completed"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", _JSON), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _stream(
        self,
        client: AsyncClient,
        params: ChatParams,
        model: str,
        send: Any,
        request: _Request,
        group: anyio.abc.TaskGroup,
    ) -> None:
        record, gateway = request.record, self.gateway
        sequence = ChunkSequence(model, include_usage=params.include_usage)
        encoder = ChunkEncoder(sequence)
        stream = await _open(client, params, send, request)
        if stream is None:
            return
        pipe = request.pipe = Pipe(gateway.settings.buffer_chars)
        keepalive = gateway.settings.sse_keepalive
        group.start_soon(_pump, stream, pipe, gateway)
        gateway.metrics.streams.inc()
        try:
            if keepalive is None:
                pieces = await pipe.take()
                if not pieces and pipe.error is not None:  # failed before the first piece
                    request.done = True
                    await _answer(_ending_failure(client, pipe.error), send, record)
                    return
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            else:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                pieces = await _take_or_ping(pipe, keepalive, send)
                if not pieces and pipe.error is not None:  # in-band: an event, then [DONE]
                    request.done = True
                    failure = _ending_failure(client, pipe.error)
                    record.outcome = _outcome_of(failure)
                    event = failure.event(record.request_id) + DONE
                    await send({"type": "http.response.body", "body": event, "more_body": False})
                    return
            if pieces:
                self._first_piece(record)
            data = b""
            while True:
                if pieces:
                    record.pieces += len(pieces)
                    data += encoder.events(sequence.text("".join(pieces)))
                finished = pipe.closed  # take() returned everything the pipe held
                if finished:
                    request.done = True
                    data += self._ending(client, pipe.error, sequence, encoder, record)
                await send({"type": "http.response.body", "body": data, "more_body": not finished})
                if finished:
                    return
                if keepalive is None:
                    pieces = await pipe.take()
                else:
                    pieces = await _take_or_ping(pipe, keepalive, send)
                if pieces and record.first_piece is None:
                    self._first_piece(record)
                data = b""
        finally:
            gateway.metrics.streams.dec()
            gateway.peak_buffered = max(gateway.peak_buffered, pipe.peak)

    @staticmethod
    def _ending(
        client: AsyncClient,
        error: Exception | None,
        sequence: ChunkSequence,
        encoder: ChunkEncoder,
        record: RequestRecord,
    ) -> bytes:
        """The last bytes of a stream that started: the finish events, or the error's."""
        if error is None:
            record.outcome = "completed"
            return encoder.events(sequence.end()) + DONE
        failure = _ending_failure(client, error)
        record.outcome = _outcome_of(failure)
        if isinstance(error, _Cut):  # the drain: an error event, and the stream ends cleanly
            return failure.event(record.request_id) + DONE
        return failure.event(record.request_id)


async def _take_or_ping(pipe: Pipe, seconds: float, send: Any) -> list[str]:
    """``pipe.take()``, with an SSE comment sent after each ``seconds`` of silence."""
    while True:
        with anyio.move_on_after(seconds):
            return await pipe.take()
        await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})


def _upstream_headers(record: RequestRecord) -> dict[str, str]:
    return {"X-Request-Id": record.request_id}


def _dropped_header(names: tuple[str, ...]) -> bytes:
    """The dropped parameters' names, percent-encoded (any text can be a JSON key), bounded."""
    shown: list[str] = []
    size = 0
    for index, name in enumerate(names):
        quoted = quote(name, safe="")
        if size + len(quoted) > _DROPPED_HEADER_CHARS:
            shown.append(f"...({len(names) - index} more)")
            break
        shown.append(quoted)
        size += len(quoted) + 2
    return ", ".join(shown).encode("ascii")


async def _answer(failure: Failure, send: Any, record: RequestRecord) -> None:
    """Answer ``failure`` as the whole response (nothing was sent yet)."""
    record.outcome = _outcome_of(failure)
    await failure.send(send, record.request_id)


async def _open(
    client: AsyncClient, params: ChatParams, send: Any, request: _Request
) -> AsyncStream | None:
    """The SDK's stream for the request, or ``None`` once its refusal is answered (the
    SDK's own input checks, say)."""
    try:
        return client.stream(
            params.messages, extra_headers=_upstream_headers(request.record), keep_text=False
        )
    except Exception as exc:  # noqa: BLE001 - every refusal becomes an error answer
        request.done = True
        await _answer(_failure(client, exc), send, request.record)
        return None


def _outcome_of(failure: Failure) -> str:
    if failure.error.code == "gateway_shutting_down":
        return "cut_by_shutdown"
    if failure.error.type == "invalid_request_error":
        return "refused"
    if failure.status == 500:
        return "gateway_error"
    return "upstream_error"


def _ending_failure(client: AsyncClient, error: Exception) -> Failure:
    return CUT_BY_SHUTDOWN if isinstance(error, _Cut) else _failure(client, error)


def _failure(client: AsyncClient, exc: BaseException) -> Failure:
    """The answer for ``exc`` from ``client``: 503 if the client was closed under the request.

    A closed SDK client (the lifespan closes it at shutdown) raises whatever the request was
    doing when it noticed: ``InvalidRequestError("the client is closed")`` for a new attempt,
    an ``APIConnectionError`` or ``StreamInterrupted`` for one in progress. None of them is the
    caller's fault or the service's: the gateway is going away, and a retry will find another.
    ``AsyncClient.aclose()`` marks the client closed before anything in flight can fail.
    """
    if client.is_closed:
        return CLIENT_CLOSED
    return failure_for(exc)


async def _pump(stream: AsyncStream, pipe: Pipe, gateway: Gateway) -> None:
    """Move the SDK stream's pieces into ``pipe``; close the stream however this ends."""
    try:
        async for piece in stream:
            if piece and not pipe.put(piece):
                await pipe.room()
    except Exception as exc:  # noqa: BLE001 - handed to the response loop, which answers it
        pipe.close(exc)
    else:
        pipe.close()
    finally:
        # Also when cancelled (the client left): release the upstream response at once.
        await _close(stream, gateway)


async def _close(stream: AsyncStream, gateway: Gateway) -> None:
    """Close the SDK stream (shielded: also when cancelled) and count its retries."""
    with anyio.CancelScope(shield=True) as scope:
        scope.deadline = anyio.current_time() + _CLOSE_SECONDS
        await stream.aclose()
    if stream.retries:
        gateway.metrics.retries.inc(stream.retries)


async def _read_body(scope: Any, receive: Any, limit: int) -> bytes | Failure | None:
    """The request body, or a 413 :class:`Failure`, or ``None`` if the client went away."""
    too_large = Failure.invalid(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return too_large
            except ValueError:
                return Failure.invalid(400, "The Content-Length header is not a number.")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            return too_large
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)
