"""HTTP/1.1 reading and writing for the local server and the proxy, on the standard library.

Reading: ``parse_head`` turns a request head into a ``RequestHead``; ``Connection`` reads
heads and bodies (``Content-Length`` or chunked, with ``Expect: 100-continue``) off a socket;
``read_request`` puts the two together into a ``RecordedRequest``.
Writing: ``response_head`` / ``full_response`` build responses, ``ChunkedBody`` frames a
streamed body as HTTP chunks. Nothing here knows the service's endpoints; a fault can always
bypass the framing and write raw bytes with ``Connection.write`` (a drop, a trickle, a reset).

Connections. Each accepted socket gets a ``Connection`` protocol object: an input buffer, an
event set when the peer goes away (EOF or reset), and write flow control. Its write buffer high
water mark is zero, so ``drain()`` returns only once every byte has been handed to the kernel:
"written and flushed" in a fault description means exactly that. One handler task per
connection reads requests in turn (keep-alive; pipelined bytes stay in the buffer) and answers
them. A handler that finds the peer gone mid-response gets ``PeerGone``.

Why not h11: its state machine wants every response to go through it, while faults write
broken framing on purpose; it also refuses what this server accepts (an HTTP/1.1 request
without ``Host``, a stray CRLF between requests, HTTP/1.0 keep-alive). And the SDK's own
requests are written by h11 (through httpcore), so a second, independent reader checks more.

Memory. A request head is limited to 64 KiB and a body to 8 MiB; a connection stops reading
once 1 MiB is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "SERVER_NAME",
    "BadRequest",
    "ChunkedBody",
    "Connection",
    "PeerGone",
    "RecordedRequest",
    "RequestHead",
    "full_response",
    "header_dict",
    "parse_head",
    "read_request",
    "reason",
    "response_head",
    "wants_keep_alive",
]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024
_READ_HIGH_WATER = 1024 * 1024
SERVER_NAME = "aichatonline-testing"
"""The ``Server`` header of every response of the local server."""


class BadRequest(Exception):
    """The request cannot be parsed; answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PeerGone(Exception):
    """The client closed or reset the connection."""


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RequestHead:
    """A parsed request line and its headers (names in lower case, in order)."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]


def parse_head(head: bytes) -> RequestHead:
    """Parse a request head (request line and header lines, ending with an empty line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, f"malformed request line {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, f"malformed header line {line[:100]!r}")
        headers.append((name.lower(), value.strip()))
    return RequestHead(parts[0], parts[1], parts[2], headers)


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


def header_dict(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict; a repeated header's values joined with ``", "``."""
    result: dict[str, str] = {}
    for name, value in headers:
        result[name] = f"{result[name]}, {value}" if name in result else value
    return result


def wants_keep_alive(version: str, headers: dict[str, str]) -> bool:
    """Whether the client asked to keep the connection open after this request."""
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


async def read_request(conn: Connection, raw_head: bytes) -> tuple[RecordedRequest, bool]:
    """Parse ``raw_head``, read its body; return the request and whether to keep the connection."""
    head = parse_head(raw_head)
    headers = header_dict(head.headers)
    body = await conn.read_body(headers)
    split = urlsplit(head.target)
    request = RecordedRequest(
        method=head.method,
        path=split.path,
        query=dict(parse_qsl(split.query, keep_blank_values=True)),
        headers=headers,
        body=body,
    )
    return request, wants_keep_alive(head.version, headers)


# --------------------------------------------------------------------------- writing

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    # Formatting a date per response is measurable in benchmarks; it changes once a second.
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)))
    return _date_cache[1]


def reason(status: int) -> str:
    """The reason phrase of ``status`` ("Unknown" for a code without one)."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_head(status: int, headers: Iterable[tuple[str, str]], keep_alive: bool) -> bytes:
    """A response head with ``Date``, the given headers and ``Connection``."""
    lines = [f"HTTP/1.1 {status} {reason(status)}", f"Date: {_http_date()}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def full_response(
    status: int,
    body: bytes,
    content_type: str,
    keep_alive: bool,
    extra: Iterable[tuple[str, str]] = (),
    server: str = SERVER_NAME,
) -> tuple[bytes, bytes]:
    """Return (head, body) of a response with a ``Content-Length``."""
    headers = [
        ("Server", server),
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        *extra,
    ]
    return response_head(status, headers, keep_alive), body


# --------------------------------------------------------------------------- a connection


class Connection(asyncio.Protocol):
    """One client connection: an input buffer, a "peer gone" event and write flow control.

    ``opened(connection, transport)`` is called once the socket is accepted (its owner starts
    a handler task there), ``closed(connection)`` once it is gone.
    """

    def __init__(
        self,
        opened: Callable[[Connection, asyncio.Transport], None],
        closed: Callable[[Connection], None],
    ) -> None:
        self._opened = opened
        self._closed = closed
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
        self._opened(self, transport)

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
        self._closed(self)

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
                raise BadRequest(431, "request head too large")
            if self._eof:
                if self._buffer:
                    raise PeerGone
                return None
            await self._more()

    async def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if self._eof:
                raise PeerGone
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
                raise BadRequest(400, "chunk header too long")
            if self._eof:
                raise PeerGone
            await self._more()

    async def read_body(self, headers: dict[str, str]) -> bytes:
        """Read the body of the request whose head had these headers."""
        if headers.get("expect", "").lower() == "100-continue":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                line = await self.read_line()
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "malformed chunk size") from None
                if size == 0:
                    while await self.read_line() != b"\r\n":  # trailers
                        pass
                    return bytes(body)
                if len(body) + size > _MAX_BODY:
                    raise BadRequest(413, "request body too large")
                body += (await self.read_exactly(size + 2))[:-2]
        length = headers.get("content-length")
        if length is None:
            return b""
        if not length.isdigit():
            raise BadRequest(400, "malformed Content-Length")
        if int(length) > _MAX_BODY:
            raise BadRequest(413, "request body too large")
        return await self.read_exactly(int(length))

    # -- writing

    def write(self, data: bytes) -> None:
        if self.gone.is_set() or self.transport is None:
            raise PeerGone
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until every written byte is in the kernel; raise PeerGone if the peer left."""
        while self._writing_paused and not self.gone.is_set():
            self._writable = asyncio.get_running_loop().create_future()
            try:
                await self._writable
            finally:
                self._writable = None
        if self.gone.is_set():
            raise PeerGone

    async def pause(self, seconds: float) -> None:
        """Sleep, but raise PeerGone as soon as the client goes away."""
        if seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.gone.wait(), seconds)
        if self.gone.is_set():
            raise PeerGone

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


# --------------------------------------------------------------------------- chunked framing


class ChunkedBody:
    """Collects NDJSON lines and writes them as HTTP chunks, batched or byte by byte."""

    def __init__(self, conn: Connection, head: bytes, trickle: bool) -> None:
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
