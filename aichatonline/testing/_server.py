"""A faithful local AiChatOnline server on loopback, for tests, benchmarks and demos.

Theory of operation
-------------------
``LocalServer`` is a real HTTP/1.1 server written on the standard library alone. It never
imports the rest of ``aichatonline``: it is an independent emulation of the service described
in ``PROTOCOL.md``, so the client's protocol code is checked against a second implementation
rather than against itself.

Threads. ``start()`` spawns one daemon thread that owns a private asyncio event loop; every
socket is served on that loop. The calling thread only ever touches shared state under one
re-entrant lock (``_lock``), which is also the lock of a condition variable (``_changed``)
notified on every change, so ``wait_for()`` sleeps instead of polling. Because the loop lives
in its own thread, the server behaves the same when driven from sync code, asyncio or trio.
``stop()`` asks the loop to finish: it closes the listener, aborts every open connection (which
also ends stalls and paced streams at once), cancels the handlers and joins the thread.

Connections. Each accepted socket gets a ``_Connection`` protocol object: an input buffer, an
event set when the peer goes away (EOF or reset), and write flow control. Its write buffer high
water mark is zero, so ``drain()`` returns only once every byte has been handed to the kernel:
"written and flushed" in a fault description means exactly that. One handler task per
connection reads requests in turn (keep-alive; pipelined bytes stay in the buffer) and answers
them. A handler that finds the peer gone mid-response counts a *disconnect*.

Requests. ``GET /api/v1/user/getUniqueId`` issues a fresh token; ``POST
/aichatonline/api/chat/gpt`` checks the ``UniqueId`` header and the JSON body, then streams the
answer as NDJSON lines in HTTP chunked encoding. The answer is a pure function of the prompt
(``reply_for`` / ``pieces_for``), so tests know the exact expected text.

Faults. A ``Fault`` describes one misbehaviour. The fault for a request comes from, in order:
its ``X-Fault`` header, the FIFO queue filled by ``inject()`` for its endpoint, then
``always``. The streaming loop visits the points "after p valid lines" for p = 0..n and fires
the stall, in-band error and drop faults at their points.

Memory. A request head is limited to 64 KiB and a body to 8 MiB; a connection stops reading
once 1 MiB is buffered. Recorded requests grow without bound unless ``record_requests=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import http
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "CHAT_PATH",
    "TOKEN_PATH",
    "Fault",
    "LocalServer",
    "RecordedRequest",
    "SpawnedServer",
    "pieces_for",
    "reply_for",
    "run_server",
    "spawn_server",
]

_log = logging.getLogger("aichatonline.testing")

TOKEN_PATH = "/api/v1/user/getUniqueId"
"""Path of the token ("unique id") endpoint."""
CHAT_PATH = "/aichatonline/api/chat/gpt"
"""Path of the streaming chat endpoint."""

_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024
_READ_HIGH_WATER = 1024 * 1024
_BATCH = 16 * 1024  # bytes of NDJSON per write when not pacing: few syscalls, prompt delivery
_ROLE_PREFIXES = ("Assistant:", "System:", "User:", "Developer:")

# Lines the ``malformed`` fault interleaves with the valid ones, in turn: not JSON at all,
# JSON without ``data.message``, and JSON that is not an object.
_MALFORMED_LINES = (
    b"this line is not JSON\n",
    b'{"code":200,"data":{}}\n',
    b"[1,2,3]\n",
)

_CLOUDFLARE_PAGE = b"""<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
<meta name="robots" content="noindex,nofollow"></head>
<body><div class="main-wrapper" role="main"><div class="main-content">
<noscript><div class="h2">Enable JavaScript and cookies to continue</div></noscript>
</div></div><script>window._cf_chl_opt={cType: 'managed'};</script></body></html>
"""


# --------------------------------------------------------------------------- the answer


def reply_for(prompt: str) -> str:
    """Return the server's full answer to ``prompt``.

    The last user message is taken from a multi-message prompt (lines starting with
    ``User: ``, as the SDK formats them, up to the next role line); a prompt without such a
    line is the user message as a whole. The answer echoes it and carries non-ASCII
    characters on purpose, so that clients meet multi-byte UTF-8 split across reads.
    """
    lines = prompt.split("\n")
    last_user = None
    for index, line in enumerate(lines):
        if line.startswith("User: "):
            last_user = index
    if last_user is None:
        last = prompt
    else:
        collected = [lines[last_user][len("User: ") :]]
        for line in lines[last_user + 1 :]:
            if line.startswith(_ROLE_PREFIXES):
                break
            collected.append(line)
        last = "\n".join(collected)
    return f"You said: {last}. This is the local AiChatOnline server — ünïcödé ✓ 🚀."


def _cut(text: str, pieces: int | None, piece_size: int) -> list[str]:
    if piece_size < 1:
        raise ValueError(f"piece_size must be at least 1, got {piece_size}")
    if pieces is None:
        return [text[i : i + piece_size] for i in range(0, len(text), piece_size)]
    if pieces < 0:
        raise ValueError(f"pieces must be None or >= 0, got {pieces}")
    total = pieces * piece_size
    # Enough whole repetitions of the text to cover ``total`` characters, then cut.
    cycle = text * (total // len(text) + 1)
    return [cycle[i * piece_size : (i + 1) * piece_size] for i in range(pieces)]


def pieces_for(prompt: str, pieces: int | None = None, piece_size: int = 8) -> list[str]:
    """Return the text pieces the server streams for ``prompt``, one NDJSON line each.

    The infinite repetition of ``reply_for(prompt)`` is cut into consecutive
    ``piece_size``-character pieces and the first ``pieces`` are taken; with ``pieces=None``
    just enough to cover the reply exactly once (the last piece may be shorter).
    """
    return _cut(reply_for(prompt), pieces, piece_size)


@functools.lru_cache(maxsize=256)
def _encoded_lines(text: str, pieces: int | None, piece_size: int) -> tuple[bytes, ...]:
    # Cached because benchmarks send the same prompt over and over.
    return tuple(
        b'{"code":200,"data":{"message":' + json.dumps(piece, ensure_ascii=False).encode() + b"}}\n"
        for piece in _cut(text, pieces, piece_size)
    )


# --------------------------------------------------------------------------- faults

_INT_FIELDS = frozenset({"status", "drop_after", "stall_after", "error_after", "error_code"})
_FLOAT_FIELDS = frozenset({"stall"})
_STR_FIELDS = frozenset({"endpoint", "retry_after", "error_message", "body"})
_BOOL_FIELDS = frozenset(
    {"cloudflare", "drop_reset", "malformed", "trickle", "expire_token", "variant"}
)


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One scripted misbehaviour of the server; the defaults mean "no fault".

    Streaming fields count *valid* lines: "after k lines" is the point where k NDJSON pieces
    have been written (k = 0 is right after the response headers; k past the end means after
    the last piece, before the terminating chunk). They apply to a 200 chat stream; on the
    token endpoint ``stall`` delays the response, ``drop_after`` cuts it mid-body,
    ``trickle`` sends the body byte by byte, ``malformed`` answers 200 with a non-JSON body
    and ``error_after`` answers 200 with an error object instead of a token.
    """

    endpoint: Literal["chat", "token"] = "chat"
    """Which endpoint's next request consumes this fault."""
    status: int | None = None
    """Answer with this status and a JSON error body (or ``body``)."""
    retry_after: str | None = None
    """Value of a ``Retry-After`` header added to a ``status``/``cloudflare`` answer."""
    body: bytes | None = None
    """Raw body for a ``status`` answer instead of the JSON error object."""
    cloudflare: bool = False
    """Answer 403 with a Cloudflare "Just a moment..." challenge page."""
    drop_after: int | None = None
    """Abort the connection after this many lines, without the terminating chunk."""
    drop_reset: bool = False
    """Abort with a TCP reset (SO_LINGER 0) instead of a FIN."""
    stall: float = 0.0
    """Seconds without any byte, at ``stall_after`` lines."""
    stall_after: int = 0
    """Where the stall happens (0 = after the headers, before the first line)."""
    malformed: bool = False
    """Interleave malformed lines with the valid ones (the valid text is unchanged)."""
    error_after: int | None = None
    """After this many lines send ``{"code": error_code, "message": error_message}`` and end."""
    error_code: int = 500
    error_message: str = "internal error"
    trickle: bool = False
    """Send every body byte as its own write and its own chunk."""
    expire_token: bool = False
    """Invalidate the request's token first, so the request gets 401."""
    variant: bool = False
    """Answer with a different text ("Variant N: ..."), so a resend does not reproduce it."""

    def __post_init__(self) -> None:
        if self.endpoint not in ("chat", "token"):
            raise ValueError(f"endpoint must be 'chat' or 'token', got {self.endpoint!r}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be in 100..599, got {self.status}")
        for name in ("drop_after", "error_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be None or >= 0, got {value}")
        if self.stall < 0 or self.stall_after < 0:
            raise ValueError("stall and stall_after must be >= 0")

    @classmethod
    def from_header(cls, value: str, *, endpoint: Literal["chat", "token"] = "chat") -> Fault:
        """Parse an ``X-Fault`` header value such as ``"drop_after=3; trickle; status=503"``.

        Items are separated by ``;``; each is ``name=value`` with a field name of this class
        (``-`` may stand for ``_``), or a bare boolean field name meaning true. Raises
        ``ValueError`` on an unknown name or a bad value.
        """
        options: dict[str, Any] = {"endpoint": endpoint}
        for item in value.split(";"):
            item = item.strip()
            if not item:
                continue
            name, has_value, raw = item.partition("=")
            name = name.strip().lower().replace("-", "_")
            raw = raw.strip()
            try:
                if name in _BOOL_FIELDS:
                    if has_value and raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    options[name] = not has_value or raw.lower() in ("1", "true", "yes")
                elif not has_value:
                    raise ValueError("a value is required")
                elif name in _INT_FIELDS:
                    options[name] = int(raw)
                elif name in _FLOAT_FIELDS:
                    options[name] = float(raw)
                elif name == "body":
                    options[name] = raw.encode()
                elif name in _STR_FIELDS:
                    options[name] = raw
                else:
                    raise ValueError("unknown fault field")
            except ValueError as exc:
                raise ValueError(f"bad X-Fault item {item!r}: {exc}") from None
        return cls(**options)

    def to_header(self) -> str:
        """Render the non-default fields as an ``X-Fault`` header value (``endpoint`` omitted)."""
        items = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name == "endpoint" or value == spec.default:
                continue
            if value is True:
                items.append(spec.name)
            elif isinstance(value, bytes):
                items.append(f"{spec.name}={value.decode()}")
            else:
                items.append(f"{spec.name}={value}")
        return "; ".join(items)


_NO_FAULT = Fault()


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    """The path without the query string."""
    query: dict[str, str]
    headers: dict[str, str]
    """Header names in lower case; repeated headers joined with ``", "``."""
    body: bytes = field(repr=False)

    def json(self) -> Any:
        """Decode the body as JSON."""
        return json.loads(self.body)


# --------------------------------------------------------------------------- HTTP plumbing


class _BadRequest(Exception):
    """The request cannot be parsed; answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _PeerGone(Exception):
    """The client closed or reset the connection."""


@dataclass(frozen=True)
class _Head:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]


def _parse_head(head: bytes) -> _Head:
    """Parse a request head (request line and header lines, ending with an empty line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, f"malformed request line {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400, f"malformed header line {line[:100]!r}")
        headers.append((name.lower(), value.strip()))
    return _Head(parts[0], parts[1], parts[2], headers)


def _header_dict(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in headers:
        result[name] = f"{result[name]}, {value}" if name in result else value
    return result


def _wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    # Formatting a date per response is measurable in benchmarks; it changes once a second.
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)))
    return _date_cache[1]


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _response_head(status: int, headers: Iterable[tuple[str, str]], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}", f"Date: {_http_date()}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _full_response(
    status: int,
    body: bytes,
    content_type: str,
    keep_alive: bool,
    extra: Iterable[tuple[str, str]] = (),
) -> tuple[bytes, bytes]:
    """Return (head, body) of a response with a ``Content-Length``."""
    headers = [
        ("Server", "aichatonline-testing"),
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        *extra,
    ]
    return _response_head(status, headers, keep_alive), body


def _json_error(status: int, message: str) -> bytes:
    return json.dumps({"code": status, "message": message}, ensure_ascii=False).encode()


class _Connection(asyncio.Protocol):
    """One client connection: an input buffer, a "peer gone" event and write flow control."""

    def __init__(self, server: LocalServer) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._reading_paused = False
        self._writing_paused = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self.gone = asyncio.Event()

    # -- protocol callbacks (run on the loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # High water mark 0: drain() waits until the kernel has every byte (see module doc).
        transport.set_write_buffer_limits(high=0)
        self._server._connection_opened(self, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        # An HTTP client that closes its end has abandoned whatever it was receiving.
        self._eof = True
        self.gone.set()
        self._wake_reader()
        return True  # keep the transport: the handler closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self.gone.set()
        self._wake_reader()
        self._wake_writer()
        self._server._connection_closed(self)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- reading (used by the handler task)

    async def _more(self) -> None:
        if self._reading_paused and self.transport is not None:
            self.transport.resume_reading()
            self._reading_paused = False
        self._readable = asyncio.get_running_loop().create_future()
        try:
            await self._readable
        finally:
            self._readable = None

    async def read_head(self) -> bytes | None:
        """Return the next request head, or None on a clean end of the connection."""
        while True:
            # Tolerate stray CRLFs between requests (RFC 9112, section 2.2).
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self._buffer[: end + 4])
                del self._buffer[: end + 4]
                return head
            if len(self._buffer) > _MAX_HEAD:
                raise _BadRequest(431, "request head too large")
            if self._eof:
                if self._buffer:
                    raise _PeerGone
                return None
            await self._more()

    async def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if self._eof:
                raise _PeerGone
            await self._more()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                return await self.read_exactly(end + 2)
            if len(self._buffer) > _MAX_HEAD:
                raise _BadRequest(400, "chunk header too long")
            if self._eof:
                raise _PeerGone
            await self._more()

    # -- writing

    def write(self, data: bytes) -> None:
        if self.gone.is_set() or self.transport is None:
            raise _PeerGone
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until every written byte is in the kernel; raise _PeerGone if the peer left."""
        while self._writing_paused and not self.gone.is_set():
            self._writable = asyncio.get_running_loop().create_future()
            try:
                await self._writable
            finally:
                self._writable = None
        if self.gone.is_set():
            raise _PeerGone

    async def pause(self, seconds: float) -> None:
        """Sleep, but raise _PeerGone as soon as the client goes away."""
        if seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.gone.wait(), seconds)
        if self.gone.is_set():
            raise _PeerGone

    def drop(self, reset: bool) -> None:
        """Abort the connection: a FIN, or a TCP reset when ``reset``."""
        if self.transport is None:
            return
        if reset:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        else:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _ChunkedBody:
    """Collects NDJSON lines and writes them as HTTP chunks, batched or byte by byte."""

    def __init__(self, conn: _Connection, head: bytes, trickle: bool) -> None:
        self._conn = conn
        self._head = head
        self._trickle = trickle
        self._body = bytearray()

    @property
    def pending(self) -> int:
        return len(self._body)

    def add(self, line: bytes) -> None:
        self._body += line

    def _framed(self) -> bytes:
        """Take the pending lines framed as one chunk (nothing when trickling: see flush)."""
        framed = b""
        if self._body and not self._trickle:
            framed = b"%x\r\n%s\r\n" % (len(self._body), bytes(self._body))
            self._body.clear()
        return framed

    async def flush(self) -> None:
        conn = self._conn
        if self._trickle:
            if self._head:
                conn.write(self._head)
                self._head = b""
                await conn.drain()
            for byte in bytes(self._body):
                conn.write(b"1\r\n%c\r\n" % byte)
                await conn.drain()
            self._body.clear()
        else:
            # The headers travel with the first lines: one syscall for a short answer.
            data = self._head + self._framed()
            self._head = b""
            if data:
                conn.write(data)
        await conn.drain()

    async def finish(self) -> None:
        if self._trickle:
            await self.flush()
            self._conn.write(b"0\r\n\r\n")
        else:
            self._conn.write(self._head + self._framed() + b"0\r\n\r\n")
            self._head = b""
        # No drain: the response is complete as far as the server is concerned; the
        # transport flushes the rest in the background (and before any close).


# --------------------------------------------------------------------------- lifecycle base

_S = TypeVar("_S", bound="_BackgroundServer")


class _BackgroundServer:
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

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

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


# --------------------------------------------------------------------------- the server


class LocalServer(_BackgroundServer):
    """A real AiChatOnline-compatible HTTP/1.1 server on loopback, in a background thread.

    Use it as a context manager (sync or async, on asyncio and trio) or call ``start()`` and
    ``stop()``. The answer options may be changed at any time; they apply to the next request.
    Faults are scripted with ``inject()``, ``always`` or an ``X-Fault`` request header.
    """

    _thread_name = "aichatonline-local-server"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pieces: int | None = None,
        piece_size: int = 8,
        delay: float = 0.0,
        token_ttl: float | None = None,
        require_token: bool = True,
        record_requests: bool = True,
    ) -> None:
        super().__init__(host, port)
        self.pieces: int | None = pieces
        """Pieces per answer (None: the reply exactly once)."""
        self.piece_size: int = piece_size
        """Characters per piece."""
        self.delay: float = delay
        """Seconds between streamed lines."""
        self.token_ttl: float | None = token_ttl
        """Lifetime of a newly issued token in seconds (None: forever)."""
        self.require_token: bool = require_token
        """Whether the chat endpoint checks the ``UniqueId`` header."""
        self.record_requests: bool = record_requests
        """Whether ``requests`` keeps every request (turn off for long runs)."""
        self.always: Fault | None = None
        """A fault applied to every request on its endpoint while the queue is empty."""
        _cut("x", pieces, piece_size)  # validate early, in the caller's thread
        self._records: list[RecordedRequest] = []
        self._tokens: dict[str, float | None] = {}  # token -> monotonic expiry (None: never)
        self._queues: dict[str, deque[Fault]] = {"chat": deque(), "token": deque()}
        self._tokens_issued = 0
        self._open_connections = 0
        self._disconnects = 0
        self._variants = itertools.count(1)

    async def _listen(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _Connection(self), self._host, self._requested_port, backlog=4096
        )

    # -- public state

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

        Issued tokens stay valid (see ``expire_tokens``).
        """
        with self._changed:
            self._records.clear()
            for queue in self._queues.values():
                queue.clear()
            self.always = None
            self._tokens_issued = 0
            self._disconnects = 0
            self._variants = itertools.count(1)
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
        return pieces_for(prompt, self.pieces, self.piece_size)

    def __repr__(self) -> str:
        with self._lock:
            where = self.base_url if self.running else "stopped"
            return (
                f"<LocalServer {where} requests={len(self._records)} "
                f"tokens_issued={self._tokens_issued} open_connections={self._open_connections} "
                f"disconnects={self._disconnects}>"
            )

    # -- connection bookkeeping (loop thread)

    def _connection_opened(self, conn: _Connection, transport: asyncio.Transport) -> None:
        self._track(asyncio.get_running_loop().create_task(self._serve(conn)), transport)
        with self._changed:
            self._open_connections += 1
            self._changed.notify_all()

    def _connection_closed(self, conn: _Connection) -> None:
        if conn.transport is not None:
            self._transports.discard(conn.transport)
        with self._changed:
            self._open_connections -= 1
            self._changed.notify_all()

    # -- request handling (loop thread)

    async def _serve(self, conn: _Connection) -> None:
        try:
            while True:
                raw = await conn.read_head()
                if raw is None:
                    return
                if not await self._respond(conn, raw):
                    return
        except _BadRequest as exc:
            with contextlib.suppress(_PeerGone):
                head, body = _full_response(
                    exc.status, _json_error(exc.status, exc.message), "application/json", False
                )
                conn.write(head + body)
        except _PeerGone:
            pass
        # A bug in this module must show up in the log instead of killing the handler quietly.
        except Exception:  # noqa: BLE001
            _log.exception("aichatonline.testing: error while serving a connection")
        finally:
            conn.close()

    async def _read_body(self, conn: _Connection, headers: dict[str, str]) -> bytes:
        if headers.get("expect", "").lower() == "100-continue":
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                line = await conn.read_line()
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise _BadRequest(400, "malformed chunk size") from None
                if size == 0:
                    while await conn.read_line() != b"\r\n":  # trailers
                        pass
                    return bytes(body)
                if len(body) + size > _MAX_BODY:
                    raise _BadRequest(413, "request body too large")
                body += (await conn.read_exactly(size + 2))[:-2]
        length = headers.get("content-length")
        if length is None:
            return b""
        if not length.isdigit():
            raise _BadRequest(400, "malformed Content-Length")
        if int(length) > _MAX_BODY:
            raise _BadRequest(413, "request body too large")
        return await conn.read_exactly(int(length))

    async def _respond(self, conn: _Connection, raw: bytes) -> bool:
        """Answer one request; return whether the connection stays open."""
        head = _parse_head(raw)
        headers = _header_dict(head.headers)
        body = await self._read_body(conn, headers)
        split = urlsplit(head.target)
        request = RecordedRequest(
            method=head.method,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
        )
        with self._changed:
            if self.record_requests:
                self._records.append(request)
            self._changed.notify_all()
        keep_alive = _wants_keep_alive(head.version, headers) and not self._stopping

        endpoint: Literal["chat", "token"]
        if request.path == TOKEN_PATH:
            endpoint, allowed = "token", "GET"
        elif request.path == CHAT_PATH:
            endpoint, allowed = "chat", "POST"
        else:
            return self._send_error(conn, request, 404, "not found", keep_alive)
        if request.method != allowed:
            return self._send_error(
                conn, request, 405, "method not allowed", keep_alive, [("Allow", allowed)]
            )
        try:
            fault = self._fault_for(endpoint, headers.get("x-fault"))
        except ValueError as exc:
            return self._send_error(conn, request, 400, str(exc), keep_alive)
        try:
            if endpoint == "token":
                return await self._token(conn, request, fault, keep_alive)
            return await self._chat(conn, request, fault, keep_alive)
        except _PeerGone:
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
        return _NO_FAULT

    def _send(
        self,
        conn: _Connection,
        request: RecordedRequest,
        status: int,
        response: tuple[bytes, bytes],
        keep_alive: bool,
    ) -> bool:
        conn.write(response[0] + response[1])
        _log.info("%s %s -> %d", request.method, request.path, status)
        return keep_alive

    def _send_error(
        self,
        conn: _Connection,
        request: RecordedRequest,
        status: int,
        message: str,
        keep_alive: bool,
        extra: Iterable[tuple[str, str]] = (),
    ) -> bool:
        response = _full_response(
            status, _json_error(status, message), "application/json", keep_alive, extra
        )
        return self._send(conn, request, status, response, keep_alive)

    def _send_fault_status(
        self, conn: _Connection, request: RecordedRequest, fault: Fault, keep_alive: bool
    ) -> bool | None:
        """Answer a ``cloudflare`` or ``status`` fault; None when the fault has neither."""
        extra = [("Retry-After", fault.retry_after)] if fault.retry_after is not None else []
        if fault.cloudflare:
            extra += [
                ("cf-ray", f"{secrets.token_hex(8)}-AMS"),
                ("cf-mitigated", "challenge"),
                ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate"),
            ]
            head, body = _full_response(
                403, _CLOUDFLARE_PAGE, "text/html; charset=UTF-8", keep_alive, extra
            )
            # A Cloudflare answer names Cloudflare as the server, not us.
            head = head.replace(b"Server: aichatonline-testing", b"Server: cloudflare")
            return self._send(conn, request, 403, (head, body), keep_alive)
        if fault.status is not None:
            if fault.body is None:
                response = _full_response(
                    fault.status,
                    _json_error(fault.status, _reason(fault.status)),
                    "application/json",
                    keep_alive,
                    extra,
                )
            else:
                try:
                    json.loads(fault.body)
                    content_type = "application/json"
                except ValueError:
                    content_type = "text/plain; charset=utf-8"
                response = _full_response(fault.status, fault.body, content_type, keep_alive, extra)
            return self._send(conn, request, fault.status, response, keep_alive)
        return None

    async def _token(
        self, conn: _Connection, request: RecordedRequest, fault: Fault, keep_alive: bool
    ) -> bool:
        answered = self._send_fault_status(conn, request, fault, keep_alive)
        if answered is not None:
            return answered
        await conn.pause(fault.stall)
        if fault.malformed:
            body = b"<html>this is not JSON</html>"
        elif fault.error_after is not None:
            body = _json_error(fault.error_code, fault.error_message)
        else:
            token = secrets.token_hex(16)
            with self._changed:
                ttl = self.token_ttl
                self._tokens[token] = None if ttl is None else time.monotonic() + ttl
                self._tokens_issued += 1
                self._changed.notify_all()
            body = json.dumps({"code": 200, "data": token}).encode()
        head, body = _full_response(200, body, "application/json", keep_alive)
        if fault.drop_after is not None:
            conn.write(head + body[: len(body) // 2])
            await conn.drain()
            conn.drop(fault.drop_reset)
            _log.info("%s %s -> 200, dropped", request.method, request.path)
            return False
        if fault.trickle:
            conn.write(head)
            await conn.drain()
            for byte in body:
                conn.write(bytes((byte,)))
                await conn.drain()
            return keep_alive
        return self._send(conn, request, 200, (head, body), keep_alive)

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
        self, conn: _Connection, request: RecordedRequest, fault: Fault, keep_alive: bool
    ) -> bool:
        token = request.headers.get("uniqueid")
        if fault.expire_token and token:
            with self._lock:
                self._tokens.pop(token, None)
        answered = self._send_fault_status(conn, request, fault, keep_alive)
        if answered is not None:
            return answered
        if self.require_token or fault.expire_token:
            problem = self._token_problem(token)
            if problem is not None:
                return self._send_error(conn, request, 401, problem, keep_alive)
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None
        if not (
            isinstance(payload, dict)
            and isinstance(payload.get("prompt"), str)
            and isinstance(payload.get("conversationId"), str)
        ):
            return self._send_error(
                conn,
                request,
                400,
                "body must be a JSON object with string fields conversationId and prompt",
                keep_alive,
            )
        text = reply_for(payload["prompt"])
        if fault.variant:
            text = f"Variant {next(self._variants)}: {text}"
        lines = _encoded_lines(text, self.pieces, self.piece_size)
        return await self._stream(conn, request, lines, fault, keep_alive)

    async def _stream(
        self,
        conn: _Connection,
        request: RecordedRequest,
        lines: tuple[bytes, ...],
        fault: Fault,
        keep_alive: bool,
    ) -> bool:
        head = _response_head(
            200,
            [
                ("Server", "aichatonline-testing"),
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Cache-Control", "no-cache"),
                ("Transfer-Encoding", "chunked"),
            ],
            keep_alive,
        )
        out = _ChunkedBody(conn, head, fault.trickle)
        count = len(lines)
        delay = self.delay
        # Fault points past the end fire after the last line, before the terminating chunk.
        stall_at = min(fault.stall_after, count) if fault.stall > 0 else -1
        error_at = -1 if fault.error_after is None else min(fault.error_after, count)
        drop_at = -1 if fault.drop_after is None else min(fault.drop_after, count)
        for point in range(count + 1):
            if point == stall_at:
                await out.flush()
                await conn.pause(fault.stall)
            if point == error_at:
                out.add(_json_error(fault.error_code, fault.error_message) + b"\n")
                await out.finish()
                _log.info("%s %s -> 200, in-band error", request.method, request.path)
                return keep_alive
            if point == drop_at:
                await out.flush()
                conn.drop(fault.drop_reset)
                _log.info("%s %s -> 200, dropped after %d", request.method, request.path, point)
                return False
            if point == count:
                break
            if fault.malformed:
                out.add(_MALFORMED_LINES[point % len(_MALFORMED_LINES)])
            out.add(lines[point])
            if delay > 0:
                await out.flush()
                if point < count - 1:
                    await conn.pause(delay)
            elif out.pending >= _BATCH:
                await out.flush()
        if fault.malformed:
            out.add(_MALFORMED_LINES[count % len(_MALFORMED_LINES)])
        await out.finish()
        _log.info("%s %s -> 200, %d lines", request.method, request.path, count)
        return keep_alive


# ------------------------------------------------------------- foreground and subprocess


class _StopSignal(BaseException):
    """Raised by run_server's signal handler to unwind the wait, like KeyboardInterrupt."""


def run_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    pieces: int | None = None,
    piece_size: int = 8,
    delay: float = 0.0,
    token_ttl: float | None = None,
    require_token: bool = True,
    on_ready: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (or ``stop_event``), then return cleanly.

    ``on_ready`` is called with the base URL once the server listens. Signal handlers are
    installed only when called from the main thread; elsewhere pass ``stop_event``. Requests
    are not recorded (a long-running server must not grow), but are logged at INFO level on
    the ``aichatonline.testing`` logger.
    """
    server = LocalServer(
        host,
        port,
        pieces=pieces,
        piece_size=piece_size,
        delay=delay,
        token_ttl=token_ttl,
        require_token=require_token,
        record_requests=False,
    )
    stop = stop_event if stop_event is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}
    signals = [signal.SIGINT, signal.SIGTERM]

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        for sig in signals:  # a second signal during shutdown must not interrupt it
            signal.signal(sig, signal.SIG_IGN)
        raise _StopSignal

    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            previous[sig] = signal.signal(sig, on_signal)
    try:
        server.start()
        if on_ready is not None:
            on_ready(server.base_url)
        stop.wait()
    except _StopSignal:
        pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class SpawnedServer:
    """A local server running in a child process (see ``spawn_server``)."""

    def __init__(self, process: subprocess.Popen[str], base_url: str) -> None:
        self.process = process
        """The child process."""
        self.base_url = base_url
        """``http://HOST:PORT`` of the child's server."""

    def stop(self, timeout: float = 10.0) -> int:
        """Send SIGTERM, wait for the child to exit (kill it after ``timeout``); return its code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> SpawnedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SpawnedServer {self.base_url} pid={self.process.pid}>"


def spawn_server(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    pieces: int | None = None,
    piece_size: int = 8,
    delay: float = 0.0,
    token_ttl: float | None = None,
    require_token: bool = True,
    verbose: bool = False,
    timeout: float = 30.0,
) -> SpawnedServer:
    """Run ``python -m aichatonline.testing`` as a child process and return its handle.

    Blocks until the child prints its base URL. From async code, call it through
    ``anyio.to_thread.run_sync``.
    """
    argv = [
        sys.executable,
        "-m",
        "aichatonline.testing",
        "--host",
        host,
        "--port",
        str(port),
        "--piece-size",
        str(piece_size),
        "--delay",
        str(delay),
    ]
    if pieces is not None:
        argv += ["--pieces", str(pieces)]
    if token_ttl is not None:
        argv += ["--token-ttl", str(token_ttl)]
    if not require_token:
        argv.append("--no-require-token")
    if verbose:
        argv.append("-v")
    # Make the package importable in the child even when it is not installed.
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = _readline_with_timeout(process.stdout, timeout)
    if not line.startswith("http"):
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(f"the server process did not start (first output: {line!r})")
    return SpawnedServer(process, line.strip())


def _readline_with_timeout(stream: IO[str], timeout: float) -> str:
    # A helper thread keeps this portable: select() does not work on pipes on Windows.
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""
