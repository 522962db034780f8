"""``POST /v1/chat/completions``: one OpenAI request answered through the SDK's ``AsyncClient``.

Request flow (a raw ASGI endpoint, so the body, the response head and disconnects are in
our hands):

1. Concurrency: past ``max_concurrency`` requests in this worker, 429 at once.
2. Body: at most ``max_body_bytes`` (413), JSON (400, also when nested too deeply for the
   parser), checked by ``aichatonline._openai.check_chat_params`` (400 naming ``param``,
   404 unknown model).
3. ``stream=false``: ``await client.complete(messages)`` -> one ``chat.completion``.
   ``stream=true``: ``client.stream(messages)``, pumped into a :class:`~._sse.Pipe`; the
   SSE head goes out only once the first piece is in hand, so a request that fails before
   it gets a real HTTP status and error object. A failure after that is one
   ``data: {"error": ...}`` event, and the stream ends (text already sent is never sent
   again: the SDK resumes dropped streams and skips what was delivered).
4. A task watches ``receive()`` for ``http.disconnect`` the whole time: a client that goes
   away cancels the request, and the SDK stream is closed at once (``aclose()``, shielded),
   which closes the upstream response.

Nothing is kept between requests: :class:`Gateway` holds the settings, the one SDK client
of this worker and a few counters.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import anyio.abc

from .. import AsyncClient, AsyncStream
from .._openai import ChatParams, check_chat_params, new_completion_id
from ..types import ChatCompletion, ChatCompletionMessage, Choice
from ._errors import CLIENT_CLOSED, CONCURRENCY_LIMIT, Failure, failure_for
from ._settings import GatewaySettings
from ._sse import ChunkEncoder, Pipe, dumps

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


class Gateway:
    """One worker's state: its settings, its SDK client and counters. No request data."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.client: AsyncClient | None = None
        #: Requests in progress on ``/v1/chat/completions`` in this worker.
        self.active = 0
        #: Requests whose client went away before the answer was complete.
        self.disconnects = 0
        #: The most text characters one stream held for a slow client.
        self.peak_buffered = 0


class _Request:
    """The per-request flags the disconnect watcher and the response share."""

    __slots__ = ("disconnected", "done")

    def __init__(self) -> None:
        self.done = False
        self.disconnected = False


class ChatEndpoint:
    """The ASGI app of ``POST /v1/chat/completions``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        gateway = self.gateway
        if gateway.active >= gateway.settings.max_concurrency:
            await CONCURRENCY_LIMIT.send(send)
            return
        gateway.active += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            gateway.active -= 1

    async def _handle(self, scope: Any, receive: Any, send: Any) -> None:
        body: bytes | Failure | None = _BODY_TIMEOUT
        with anyio.move_on_after(BODY_SECONDS):  # a client trickling its body holds a slot
            body = await _read_body(scope, receive, self.gateway.settings.max_body_bytes)
        if isinstance(body, Failure):
            await body.send(send)
            return
        if body is None:  # the client left while sending its request
            return
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply (``[[[[...``)
            await Failure.invalid(
                400, "We could not parse the JSON body of your request.", code="invalid_json"
            ).send(send)
            return
        try:
            params = check_chat_params(data)
        except ValueError as exc:  # InvalidRequestError is a ValueError
            await failure_for(exc).send(send)
            return
        client = self.gateway.client
        if client is None:
            await failure_for(RuntimeError("the gateway's lifespan did not run")).send(send)
            return
        request = _Request()
        # One task group per request: the disconnect watcher, and for a stream the pump.
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, receive, group.cancel_scope, request)
            try:
                if params.stream:
                    await self._stream(client, params, send, request, group)
                else:
                    await self._complete(client, params, send, request)
            except OSError:  # an ASGI server whose send() raises once the client is gone
                if not request.done:
                    self.gateway.disconnects += 1
            finally:
                request.done = True
                group.cancel_scope.cancel()  # the watcher; a shielded upstream close goes on

    async def _watch(self, receive: Any, scope: anyio.CancelScope, request: _Request) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not request.done:
                    request.disconnected = True
                    self.gateway.disconnects += 1
                    scope.cancel()
                return

    async def _complete(
        self, client: AsyncClient, params: ChatParams, send: Any, request: _Request
    ) -> None:
        created = int(time.time())
        try:
            text = await client.complete(params.messages)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error answer
            request.done = True
            await _failure(client, exc).send(send)
            return
        completion = ChatCompletion(
            id=new_completion_id(),
            created=created,
            model=params.model,
            choices=[Choice(message=ChatCompletionMessage(content=text))],
        )
        body = dumps(completion.to_dict())
        request.done = True
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
        send: Any,
        request: _Request,
        group: anyio.abc.TaskGroup,
    ) -> None:
        encoder = ChunkEncoder(
            id=new_completion_id(),
            created=int(time.time()),
            model=params.model,
            include_usage=params.include_usage,
        )
        try:
            stream = client.stream(params.messages)
        except Exception as exc:  # noqa: BLE001 - e.g. the SDK's own input checks
            request.done = True
            await _failure(client, exc).send(send)
            return
        pipe = Pipe(self.gateway.settings.buffer_chars)
        group.start_soon(_pump, stream, pipe)
        try:
            pieces = await pipe.take()
            if not pieces and pipe.error is not None:  # failed before the first piece
                request.done = True
                await _failure(client, pipe.error).send(send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            data = encoder.start()
            while True:
                if pieces:
                    data += encoder.content("".join(pieces))
                finished = pipe.finished
                if finished:
                    request.done = True
                    error = pipe.error
                    data += encoder.end() if error is None else _failure(client, error).event()
                await send({"type": "http.response.body", "body": data, "more_body": not finished})
                if finished:
                    return
                pieces = await pipe.take()
                data = b""
        finally:
            self.gateway.peak_buffered = max(self.gateway.peak_buffered, pipe.peak)


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


async def _pump(stream: AsyncStream, pipe: Pipe) -> None:
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
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _CLOSE_SECONDS
            await stream.aclose()


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
