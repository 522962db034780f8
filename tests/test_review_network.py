"""Review fixes on the wire: non-ASCII base URLs, and a SOCKS5 proxy that is not one.

- A ``base_url`` with a non-ASCII path or host goes out as ASCII (the path percent-encoded
  as UTF-8, the host IDNA-encoded); one that cannot be encoded is an
  :class:`InvalidRequestError` when the client is made, before any traffic.
- A malformed SOCKS5 reply is the SDK's :class:`APIConnectionError`, not socksio's
  ``ProtocolError``.

Each test talks to a raw socket server on loopback that records what it received and
answers what the test says, on the blocking client and the async one (asyncio and trio).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aichatonline import (
    APIConnectionError,
    AsyncClient,
    Client,
)
from tests.faces import backend_of
from tests.helpers import assert_ours

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


class RawServer:
    """A loopback TCP server: ``handle(connection, server)`` serves each connection."""

    def __init__(self, handle: Callable[[socket.socket, RawServer], None]) -> None:
        self.handle = handle
        self.received: list[bytes] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(connection,), daemon=True).start()

    def _one(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10)
            with contextlib.suppress(OSError):
                self.handle(connection, self)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def read_head(connection: socket.socket) -> bytes:
    """The bytes of a request head (to its blank line)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def answer_with(response: bytes) -> Callable[[socket.socket, RawServer], None]:
    """A handler that records the request head and answers ``response``."""

    def handle(connection: socket.socket, server: RawServer) -> None:
        server.received.append(read_head(connection))
        connection.sendall(response)

    return handle


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket, RawServer], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(handle: Callable[[socket.socket, RawServer], None]) -> RawServer:
        servers.append(RawServer(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


async def complete(flavor: str, **options: Any) -> str:
    """A ``complete("hi")`` with a client of ``flavor`` made with ``options`` (no retries)."""
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 10)
    if flavor == "sync":
        with Client(**options) as client:
            return client.complete("hi")
    async with AsyncClient(**options) as client:
        return await client.complete("hi")


def request_line(head: bytes) -> bytes:
    return head.split(b"\r\n", 1)[0]


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


# -- 2. a malformed SOCKS5 reply -----------------------------------------------------------


def socks_then(*replies: bytes) -> Callable[[socket.socket, RawServer], None]:
    """A "SOCKS5 proxy" that answers each message of the handshake with the next reply."""

    def handle(connection: socket.socket, server: RawServer) -> None:
        for reply in replies:
            server.received.append(connection.recv(65536))
            connection.sendall(reply)

    return handle


HTTP_ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"

MALFORMED = [
    pytest.param(None, (HTTP_ANSWER,), id="an-http-proxy"),
    pytest.param(None, (b"\x05",), id="short-method-reply"),
    pytest.param(None, (b"\x05\x00\x00",), id="long-method-reply"),
    pytest.param(None, (b"\x05\x00", HTTP_ANSWER), id="http-connect-reply"),
    pytest.param(None, (b"\x05\x00", b"\x05\x00\x00\x09garbage"), id="bad-address-type"),
    pytest.param(None, (b"\x05\x00", b"\x05\x00\x00\x01\x7f"), id="short-address"),
    pytest.param("u:pw", (b"\x05\x02", b"\x01\x00", b"garbage!"), id="after-auth"),
]


@pytest.mark.parametrize(("credentials", "replies"), MALFORMED)
async def test_a_malformed_socks5_reply_is_a_connection_error(
    flavor: str, serve: Any, credentials: str | None, replies: tuple[bytes, ...]
) -> None:
    proxy = serve(socks_then(*replies))
    userinfo = f"{credentials}@" if credentials else ""

    with pytest.raises(APIConnectionError) as info:
        await complete(
            flavor,
            base_url="http://example.invalid",
            proxy=f"socks5://{userinfo}127.0.0.1:{proxy.port}",
        )

    assert_ours(info.value)
    assert "the SOCKS5 proxy sent a malformed reply" in str(info.value)
    assert proxy.received  # the handshake did start
    # What refused the reply (socksio, below httpx and httpcore) is chained as the cause.
    assert info.value.__cause__ is not None
