"""Hostile HTTP servers on loopback: byte-level misbehaviour scripted per request.

The bundled ``LocalServer`` misbehaves the way a real service does; these servers misbehave
the way an attacker, a captive portal or a broken proxy does. A :class:`HostileServer`
accepts TCP connections on 127.0.0.1 (a thread each), reads and records each HTTP/1.1
request, and hands it to a *handler*: a function that writes whatever bytes it likes
through a :class:`Conn`, then returns True to read the next request on the connection::

    def handler(request: Request, conn: Conn) -> bool:
        conn.send(b"HTTP/1.1 200 OK\r\n")
        conn.pause(5.0)  # ends early (ClientGone) when the client leaves or the server stops
        return False  # close the connection

    with HostileServer(route(chat=handler)) as server:  # the token endpoint answers TOKEN
        ...  # point a client at server.base_url, then look at server.requests

Most handlers are a :func:`raw` script, byte strings to send and seconds to pause:
``raw(CHUNKED_HEAD, chunk(ndjson("Hel")), 5.0)``. The server counts the connections open
at any moment and keeps every byte received; :func:`unaccepting` gives a port whose
connection attempts hang; :func:`drain` / :func:`adrain` run a client's stream.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TOKEN = "TOK-7f3a91c2e5d84b60"
TOKEN_PATH = "/api/v1/user/getUniqueId"
CHAT_PATH = "/aichatonline/api/chat/gpt"
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@dataclass(frozen=True)
class Request:
    """One request as the server read it (``body`` is empty when bodies are not read)."""

    method: str
    path: str  # without the query
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float = field(default_factory=time.monotonic)


class ClientGone(Exception):
    """The client closed the connection, or the server is stopping: the handler ends."""


Handler = Callable[[Request, "Conn"], "bool | None"]


class Conn:
    """One accepted connection, as a handler sees it."""

    def __init__(self, sock: socket.socket, server: HostileServer) -> None:
        self.sock, self._server, self._buffer = sock, server, b""

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientGone from exc

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``; raise :class:`ClientGone` as soon as the client closes."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._buffer += self._receive(left, watch=self._server.read_bodies)

    def _receive(self, timeout: float | None = None, *, watch: bool = True) -> bytes:
        """The next bytes from the client (b"" if ``timeout`` ran out first)."""
        wake = self._server._wake_r
        ready, _, _ = select.select([wake, *([self.sock] if watch else [])], [], [], timeout)
        if wake in ready:
            raise ClientGone
        if not ready:
            return b""
        try:
            data = self.sock.recv(65536)
        except OSError as exc:
            raise ClientGone from exc
        if not data:
            raise ClientGone
        self._server._note(received=data)
        return data

    def read_request(self, read_body: bool) -> Request:
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._receive()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = line.split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        size = int(headers.get("content-length", "0")) if read_body else 0
        while len(self._buffer) < size:
            self._buffer += self._receive()
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return Request(method, urlsplit(target).path, headers, body)


class HostileServer:
    """An HTTP/1.1 server on 127.0.0.1 whose every answer is written by ``handler``.

    ``read_bodies=False`` leaves request bodies unread, with a small receive buffer (a
    server that stops reading: the client's send blocks once the buffers are full).
    """

    def __init__(
        self, handler: Handler, *, read_bodies: bool = True, host: str = "127.0.0.1"
    ) -> None:
        self.handler, self.read_bodies = handler, read_bodies
        self.connections = 0  # accepted, in all
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._raw = bytearray()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if not read_bodies:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind((host, 0))
        self._listener.listen(512)
        self.port: int = self._listener.getsockname()[1]
        self.base_url = f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == CHAT_PATH]

    @property
    def received(self) -> bytes:
        """Every byte received, on every connection."""
        with self._lock:
            return bytes(self._raw)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it holds (True) or ``timeout`` runs out (False)."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return False
            time.sleep(0.02)
        return True

    def __enter__(self) -> HostileServer:
        self._accepting = threading.Thread(target=self._accept, name="hostile-accept")
        self._accepting.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._wake_w.send(b"x")  # every select() of every thread now sees it readable
        self._accepting.join()
        with self._lock:
            for sock in self._open:  # wakes a handler blocked in sendall
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(10)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        if self._errors and exc_type is None:
            raise RuntimeError("a hostile handler failed") from self._errors[0]

    def _note(self, *, received: bytes = b"", request: Request | None = None) -> None:
        with self._lock:
            self._raw += received
            if request is not None:
                self._requests.append(request)

    def _accept(self) -> None:
        while self._wake_r not in select.select([self._listener, self._wake_r], [], [])[0]:
            sock, _ = self._listener.accept()
            with self._lock:
                self._open.add(sock)
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), name="hostile-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        conn = Conn(sock, self)
        try:
            while True:
                request = conn.read_request(self.read_bodies)
                self._note(request=request)
                if not self.handler(request, conn) or not self.read_bodies:
                    break
        except (ClientGone, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 (a bug in a handler: raised at stop)
            self._errors.append(exc)
        finally:
            with self._lock:
                self._open.discard(sock)
            sock.close()


@contextlib.contextmanager
def unaccepting() -> Iterator[str]:
    """The base URL of a port whose accept queue is full: connection attempts hang."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())  # takes the only place in the queue
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


# --------------------------------------------------------------------------- bytes


def response(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> bytes:
    """A whole response with ``Content-Length``."""
    lines = [f"HTTP/1.1 {status} Hostile", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunk(data: bytes) -> bytes:
    """``data`` in chunked framing (``b""``: the last chunk)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def ndjson(text: str) -> bytes:
    """One line of the chat stream (non-ASCII and lone surrogates as JSON escapes)."""
    return b'{"code":200,"data":{"message":%s}}\n' % json.dumps(text).encode()


def trickled(data: bytes, every: float, give_up: float = 4.0) -> list[bytes | float]:
    """A :func:`raw` script sending ``data`` one byte every ``every`` s, for at most
    ``give_up`` s (so that a client that never gives up fails its test in bounded time)."""
    return [step for byte in data[: int(give_up / every) + 1] for step in (bytes([byte]), every)]


# --------------------------------------------------------------------------- handlers


def raw(*script: bytes | float, keep: bool = False) -> Handler:
    """Send each byte string, pause for each number of seconds; then close the connection
    (``keep``: read the next request on it)."""

    def handle(request: Request, conn: Conn) -> bool:
        for step in script:
            if isinstance(step, bytes):
                conn.send(step)
            else:
                conn.pause(step)
        return keep

    return handle


def reply(
    status: int = 200, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> Handler:
    """One whole response; the connection stays open for the next request."""
    return raw(response(status, body, headers), keep=True)


def token(value: str = TOKEN) -> Handler:
    return reply(200, json.dumps({"code": 200, "data": value}).encode())


def redirect(location: str, status: int = 307) -> Handler:
    return reply(status, b"", {"Location": location})


def stream(pieces: Iterable[str] = ("Hel", "lo"), every: float = 0.0) -> Handler:
    """A healthy chunked NDJSON answer, one piece every ``every`` seconds."""
    lines: list[bytes | float] = []
    for piece in pieces:
        lines += [every, chunk(ndjson(piece))] if lines else [chunk(ndjson(piece))]
    return raw(CHUNKED_HEAD, *lines, chunk(b""), keep=True)


def silent(give_up: float = 10.0, *, then: bytes = b"") -> Handler:
    """Send ``then`` (maybe nothing), then never another byte; close after ``give_up`` s."""
    return raw(then, give_up)


def trickle(data: bytes, every: float, *, then: bytes = b"", give_up: float = 4.0) -> Handler:
    """Send ``then`` at once, then ``data`` one byte every ``every`` s; then close."""
    return raw(then, *trickled(data, every, give_up))


def delayed(seconds: float, handler: Handler) -> Handler:
    """Wait ``seconds`` (ended early if the client leaves), then answer with ``handler``."""

    def handle(request: Request, conn: Conn) -> bool | None:
        conn.pause(seconds)
        return handler(request, conn)

    return handle


def _one_each(handlers: Handler | Sequence[Handler]) -> Handler:
    if callable(handlers):
        return handlers
    queue, lock = list(handlers), threading.Lock()

    def handle(request: Request, conn: Conn) -> bool | None:
        with lock:
            current = queue.pop(0) if len(queue) > 1 else queue[0]
        return current(request, conn)

    return handle


def route(
    *,
    chat: Handler | Sequence[Handler] | None = None,
    token_: Handler | Sequence[Handler] | None = None,
) -> Handler:
    """The AiChatOnline endpoints: chat requests to ``chat`` (default: the answer "Hello"),
    token requests to ``token_`` (default: ``TOKEN``), anything else a 404. A list answers
    one request per handler, in order, the last one answering all later requests."""
    handlers = {
        CHAT_PATH: _one_each(chat if chat is not None else stream()),
        TOKEN_PATH: _one_each(token_ if token_ is not None else token()),
    }
    return lambda request, conn: handlers.get(request.path, reply(404))(request, conn)


# --------------------------------------------------------------------------- running a call


@dataclass
class Outcome:
    """What a client's stream gave: the pieces, its final ``text``, the error, the time."""

    pieces: list[str]
    text: str
    error: Exception | None
    seconds: float
    stream: Any = field(repr=False)


def drain(stream: Any) -> Outcome:
    """Iterate a (sync) stream to its end or its error, closing it."""
    started, pieces, error = time.monotonic(), [], None
    try:
        with stream:
            for piece in stream:
                pieces.append(piece)
    except Exception as exc:  # noqa: BLE001 (the test looks at it)
        error = exc
    return Outcome(pieces, stream.text, error, time.monotonic() - started, stream)


async def adrain(stream: Any) -> Outcome:
    """Iterate an async stream to its end or its error, closing it."""
    started, pieces, error = time.monotonic(), [], None
    try:
        async with stream:
            async for piece in stream:
                pieces.append(piece)
    except Exception as exc:  # noqa: BLE001 (the test looks at it)
        error = exc
    return Outcome(pieces, stream.text, error, time.monotonic() - started, stream)
