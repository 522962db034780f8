"""A faithful local AiChatOnline server on loopback: ``LocalServer`` and its two endpoints.

Theory of operation
-------------------
``LocalServer`` is a real HTTP/1.1 server written on the standard library alone. It never
imports the rest of ``aichatonline``: it is an independent emulation of the service described
in ``PROTOCOL.md``, so the client's protocol code is checked against a second implementation
rather than against itself. Its parts, one module each:

- ``_background.py``: threads (one daemon thread owns the server's asyncio loop; every other
  thread touches shared state only under one lock, notified on every change);
- ``_http.py``: connections, reading requests (``RecordedRequest``), writing responses;
- ``_answers.py``: the answer to a prompt and its NDJSON lines;
- ``_faults.py``: what a ``Fault`` asks for, and its ``X-Fault`` header form;
- ``_mix.py``: ``FaultMix``, faults at fixed rates dealt once per conversation (soak tests);
- ``_delivery.py``: writing an answer with its fault acted out (pages, drops, stalls, trickles);
- ``_options.py``: ``ServerOptions``, how the server answers;
- this module: the endpoints and the server's state (tokens, records, counters, fault queues);
- ``_process.py``: the server in the foreground or in a child process.

Requests. ``GET /api/v1/user/getUniqueId`` issues a fresh token; ``POST
/aichatonline/api/chat/gpt`` checks the ``UniqueId`` header and the JSON body, then streams the
answer as NDJSON lines in HTTP chunked encoding. The answer is a pure function of the prompt
(``reply_for`` / ``pieces_for``), so tests know the exact expected text. Each request is
answered under the options current when it arrived.

Faults. A ``Fault`` describes one misbehaviour. The fault for a request comes from, in order:
its ``X-Fault`` header, the FIFO queue filled by ``inject()`` for its endpoint, then
``always``, then (for the first chat request of a conversation, with a valid token and body)
the ``fault_mix`` option. The streaming loop visits the points "after p valid lines" for
p = 0..n and fires the stall, in-band error and drop faults at their points (``_delivery.py``
acts them out).

Memory. Recorded requests grow without bound unless ``record_requests=False`` (the limits on a
single request are in ``_http.py``); a fault mix remembers the last ``MIX_MEMORY`` conversation
ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from ._answers import encoded_lines, error_object, pieces_for, reply_for
from ._background import BackgroundServer
from ._delivery import send_error, send_fault_page, send_token_body, stream_lines
from ._faults import NO_FAULT, Fault
from ._http import BadRequest, Connection, PeerGone, RecordedRequest, full_response, read_request
from ._mix import FaultMix, MixMemory
from ._options import ServerOptions, resolve_options

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._options import ServerOptionFields

__all__ = ["CHAT_PATH", "TOKEN_PATH", "LocalServer"]

_log = logging.getLogger("aichatonline.testing")

TOKEN_PATH = "/api/v1/user/getUniqueId"
"""Path of the token ("unique id") endpoint."""
CHAT_PATH = "/aichatonline/api/chat/gpt"
"""Path of the streaming chat endpoint."""

_T = TypeVar("_T")


class _Option(Generic[_T]):
    """A ``LocalServer`` attribute that reads one field of its ``options`` and replaces it."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, server: None, owner: type[Any]) -> _Option[_T]: ...
    @overload
    def __get__(self, server: LocalServer, owner: type[Any]) -> _T: ...
    def __get__(self, server: LocalServer | None, owner: type[Any]) -> _Option[_T] | _T:
        if server is None:
            return self
        value: _T = getattr(server.options, self._name)
        return value

    def __set__(self, server: LocalServer, value: _T) -> None:
        change: dict[str, Any] = {self._name: value}
        with server._lock:  # one change at a time: none is lost
            server.options = dataclasses.replace(server.options, **change)


class LocalServer(BackgroundServer):
    """A real AiChatOnline-compatible HTTP/1.1 server on loopback, in a background thread.

    Use it as a context manager (sync or async, on asyncio and trio) or call ``start()`` and
    ``stop()``. How it answers is a ``ServerOptions``, given as ``options=`` and/or as keyword
    arguments (``LocalServer(pieces=3)``); each option is also an attribute that may be set at
    any time (``server.delay = 0.1``), checked at once and applied from the next request.
    Faults are scripted with ``inject()``, ``always`` or an ``X-Fault`` request header.
    """

    _thread_name = "aichatonline-local-server"

    pieces = _Option[int | None]()
    """Pieces per answer (None: the reply exactly once)."""
    piece_size = _Option[int]()
    """Characters per piece."""
    delay = _Option[float]()
    """Seconds between streamed lines."""
    token_ttl = _Option[float | None]()
    """Lifetime of a newly issued token in seconds (None: forever)."""
    require_token = _Option[bool]()
    """Whether the chat endpoint checks the ``UniqueId`` header."""
    record_requests = _Option[bool]()
    """Whether ``requests`` keeps every request (turn off for long runs)."""
    fault_mix = _Option[FaultMix | None]()
    """Faults at fixed rates, dealt on each conversation's first request (``FaultMix``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        options: ServerOptions | None = None,
        **changes: Unpack[ServerOptionFields],
    ) -> None:
        super().__init__(host, port)
        self._options = resolve_options(options, changes)  # checked in the caller's thread
        self.always: Fault | None = None
        """A fault applied to every request on its endpoint while the queue is empty."""
        self._records: list[RecordedRequest] = []
        self._tokens: dict[str, float | None] = {}  # token -> monotonic expiry (None: never)
        self._queues: dict[str, deque[Fault]] = {"chat": deque(), "token": deque()}
        self._tokens_issued = 0
        self._open_connections = 0
        self._disconnects = 0
        self._variants = itertools.count(1)
        self._mix = MixMemory()

    async def _listen(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: Connection(self._connection_opened, self._connection_closed),
            self._host,
            self._requested_port,
            backlog=4096,
        )

    # -- public state

    @property
    def options(self) -> ServerOptions:
        """How the server answers (setting it, or one of its fields, applies to new requests)."""
        return self._options

    @options.setter
    def options(self, options: ServerOptions) -> None:
        if not isinstance(options, ServerOptions):
            raise TypeError(f"options must be a ServerOptions, got {options!r}")
        self._options = options

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        return f"http://{self._authority()}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (a copy)."""
        with self._lock:
            return list(self._records)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The requests to the chat path."""
        return [r for r in self.requests if r.path == CHAT_PATH]

    @property
    def token_requests(self) -> list[RecordedRequest]:
        """The requests to the token path."""
        return [r for r in self.requests if r.path == TOKEN_PATH]

    @property
    def tokens_issued(self) -> int:
        """How many tokens the token endpoint has issued."""
        with self._lock:
            return self._tokens_issued

    @property
    def open_connections(self) -> int:
        """How many client connections are open right now."""
        with self._lock:
            return self._open_connections

    @property
    def disconnects(self) -> int:
        """How many responses the client abandoned before their body was complete."""
        with self._lock:
            return self._disconnects

    @property
    def mixed_faults(self) -> dict[str, int]:
        """How many faults of each kind the ``fault_mix`` has dealt (``FaultMix`` kinds)."""
        return self._mix.dealt()

    @property
    def pending_faults(self) -> list[Fault]:
        """The injected faults not consumed yet (chat first, then token)."""
        with self._lock:
            return [*self._queues["chat"], *self._queues["token"]]

    def inject(self, *faults: Fault) -> None:
        """Queue faults: each is consumed by the next request to its endpoint, in order."""
        with self._lock:
            for fault in faults:
                if not isinstance(fault, Fault):
                    raise TypeError(f"expected a Fault, got {fault!r}")
                self._queues[fault.endpoint].append(fault)

    def reset(self) -> None:
        """Forget recorded requests, zero the counters and drop queued faults and ``always``.

        The fault mix forgets the conversations it has seen (their next request is a first
        one again). Issued tokens stay valid (see ``expire_tokens``).
        """
        with self._changed:
            self._records.clear()
            for queue in self._queues.values():
                queue.clear()
            self.always = None
            self._tokens_issued = 0
            self._disconnects = 0
            self._variants = itertools.count(1)
            self._mix.clear()
            self._changed.notify_all()

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far."""
        with self._lock:
            self._tokens.clear()

    def reply_for(self, prompt: str) -> str:
        """The full answer to ``prompt`` (see the module-level ``reply_for``)."""
        return reply_for(prompt)

    def pieces_for(self, prompt: str) -> list[str]:
        """The pieces streamed for ``prompt`` with the current ``pieces``/``piece_size``."""
        options = self._options
        return pieces_for(prompt, options.pieces, options.piece_size)

    def __repr__(self) -> str:
        with self._lock:
            where = self.base_url if self.running else "stopped"
            return (
                f"<LocalServer {where} requests={len(self._records)} "
                f"tokens_issued={self._tokens_issued} open_connections={self._open_connections} "
                f"disconnects={self._disconnects}>"
            )

    # -- connection bookkeeping (loop thread)

    def _connection_opened(self, conn: Connection, transport: asyncio.Transport) -> None:
        self._track(asyncio.get_running_loop().create_task(self._serve(conn)), transport)
        with self._changed:
            self._open_connections += 1
            self._changed.notify_all()

    def _connection_closed(self, conn: Connection) -> None:
        if conn.transport is not None:
            self._transports.discard(conn.transport)
        with self._changed:
            self._open_connections -= 1
            self._changed.notify_all()

    # -- request handling (loop thread)

    async def _serve(self, conn: Connection) -> None:
        try:
            while True:
                raw = await conn.read_head()
                if raw is None:
                    return
                if not await self._respond(conn, raw):
                    return
        except BadRequest as exc:
            with contextlib.suppress(PeerGone):
                head, body = full_response(
                    exc.status, error_object(exc.status, exc.message), "application/json", False
                )
                conn.write(head + body)
        except PeerGone:
            pass
        # A bug in this package must show up in the log instead of killing the handler quietly.
        except Exception:  # noqa: BLE001
            _log.exception("aichatonline.testing: error while serving a connection")
        finally:
            conn.close()

    async def _respond(self, conn: Connection, raw: bytes) -> bool:
        """Answer one request; return whether the connection stays open."""
        request, keep_alive = await read_request(conn, raw)
        options = self._options
        with self._changed:
            if options.record_requests:
                self._records.append(request)
            self._changed.notify_all()
        keep_alive = keep_alive and not self._stopping

        endpoint: Literal["chat", "token"]
        if request.path == TOKEN_PATH:
            endpoint, allowed = "token", "GET"
        elif request.path == CHAT_PATH:
            endpoint, allowed = "chat", "POST"
        else:
            return send_error(conn, request, 404, "not found", keep_alive)
        if request.method != allowed:
            return send_error(
                conn, request, 405, "method not allowed", keep_alive, [("Allow", allowed)]
            )
        try:
            fault = self._fault_for(endpoint, request.headers.get("x-fault"))
        except ValueError as exc:
            return send_error(conn, request, 400, str(exc), keep_alive)
        try:
            if endpoint == "token":
                return await self._token(conn, request, fault, keep_alive, options)
            return await self._chat(conn, request, fault, keep_alive, options)
        except PeerGone:
            if not self._stopping:
                with self._changed:
                    self._disconnects += 1
                    self._changed.notify_all()
                _log.info("%s %s -> client went away", request.method, request.path)
            raise

    def _fault_for(self, endpoint: Literal["chat", "token"], header: str | None) -> Fault:
        if header is not None:
            return Fault.from_header(header, endpoint=endpoint)
        with self._lock:
            queue = self._queues[endpoint]
            if queue:
                return queue.popleft()
            always = self.always
        if always is not None and always.endpoint == endpoint:
            return always
        return NO_FAULT

    async def _token(
        self,
        conn: Connection,
        request: RecordedRequest,
        fault: Fault,
        keep_alive: bool,
        options: ServerOptions,
    ) -> bool:
        answered = send_fault_page(conn, request, fault, keep_alive)
        if answered is not None:
            return answered
        await conn.pause(fault.stall)
        if fault.malformed:
            body = b"<html>this is not JSON</html>"
        elif fault.error_after is not None:
            body = error_object(fault.error_code, fault.error_message)
        else:
            token = secrets.token_hex(16)
            with self._changed:
                ttl = options.token_ttl
                self._tokens[token] = None if ttl is None else time.monotonic() + ttl
                self._tokens_issued += 1
                self._changed.notify_all()
            body = json.dumps({"code": 200, "data": token}).encode()
        return await send_token_body(conn, request, body, fault, keep_alive)

    def _token_problem(self, token: str | None) -> str | None:
        if not token:
            return "missing UniqueId header"
        with self._lock:
            if token not in self._tokens:
                return "unknown UniqueId"
            expiry = self._tokens[token]
            if expiry is not None and time.monotonic() >= expiry:
                del self._tokens[token]
                return "expired UniqueId"
        return None

    async def _chat(
        self,
        conn: Connection,
        request: RecordedRequest,
        fault: Fault,
        keep_alive: bool,
        options: ServerOptions,
    ) -> bool:
        token = request.headers.get("uniqueid")
        payload = _chat_payload(request.body)
        mix = options.fault_mix
        if (
            mix is not None
            and fault is NO_FAULT
            and payload is not None
            and not (options.require_token and self._token_problem(token))
        ):
            # A request refused for its token does not use its conversation's fault up.
            text = reply_for(payload["prompt"])
            count = len(encoded_lines(text, options.pieces, options.piece_size))
            fault = self._mix.deal(mix, payload["conversationId"], count)
        if fault.expire_token and token:
            with self._lock:
                self._tokens.pop(token, None)
        answered = send_fault_page(conn, request, fault, keep_alive)
        if answered is not None:
            return answered
        if options.require_token or fault.expire_token:
            problem = self._token_problem(token)
            if problem is not None:
                return send_error(conn, request, 401, problem, keep_alive)
        if payload is None:
            return send_error(
                conn,
                request,
                400,
                "body must be a JSON object with string fields conversationId and prompt",
                keep_alive,
            )
        text = reply_for(payload["prompt"])
        if fault.variant:
            text = f"Variant {next(self._variants)}: {text}"
        lines = encoded_lines(text, options.pieces, options.piece_size)
        return await stream_lines(conn, request, lines, fault, keep_alive, options.delay)


def _chat_payload(body: bytes) -> dict[str, Any] | None:
    """The chat request's JSON object, if it has string fields conversationId and prompt."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
        return None
    fields = ("prompt", "conversationId")
    valid = isinstance(payload, dict) and all(isinstance(payload.get(f), str) for f in fields)
    return payload if valid else None
