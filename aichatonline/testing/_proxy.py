"""A small real forward proxy on loopback (HTTP or SOCKS5), for testing ``proxy=`` support.

Theory of operation: the proxy shares ``LocalServer``'s lifecycle (one asyncio loop in a daemon
thread, see ``_background.py``) and serves every client connection with asyncio streams.

- HTTP kind: absolute-form requests (``GET http://host:port/path HTTP/1.1``) are rewritten to
  origin form and sent to the origin over a connection kept per client connection and origin;
  the response head is relayed unchanged and the body is copied as it arrives (chunked bodies
  chunk by chunk), so a streaming answer reaches the client piece by piece. An origin that
  ends a body early makes the proxy close the client connection the same way (FIN, or a reset
  after a reset). ``CONNECT host:port`` opens a tunnel. A client leaving mid-response is
  noticed at the next byte the origin sends (the proxy does not watch an idle client), so the
  origin's ``disconnects`` counts it late while the origin stalls; tunnels pass it on at once.
- SOCKS5 kind: RFC 1928 ``CONNECT`` with IPv4, IPv6 and domain addresses, no authentication
  or RFC 1929 username/password when credentials are set; then a tunnel.
- A tunnel copies bytes both ways; an end of stream is passed on as a half-close, an error
  closes both sides.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import struct
from typing import Literal, NoReturn
from urllib.parse import quote, urlsplit

from ._background import BackgroundServer
from ._http import BadRequest, RequestHead, header_dict, parse_head
from ._relay import ProxyDone, abort_with_reset, copy_chunked, copy_exact, copy_to_eof, tunnel

__all__ = ["ForwardProxy"]

_HOP_HEADERS = frozenset({"proxy-authorization", "proxy-connection"})


class ForwardProxy(BackgroundServer):
    """A forward proxy on loopback, ``kind="http"`` (absolute-form and CONNECT) or ``"socks5"``.

    With ``username`` and ``password`` it requires them (``Proxy-Authorization: Basic`` for
    HTTP, RFC 1929 for SOCKS5). Lifecycle as ``LocalServer``: ``start()``/``stop()``, sync and
    async context managers.
    """

    _thread_name = "aichatonline-forward-proxy"

    def __init__(
        self,
        kind: Literal["http", "socks5"] = "http",
        *,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if kind not in ("http", "socks5"):
            raise ValueError(f"kind must be 'http' or 'socks5', got {kind!r}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        super().__init__(host, port)
        self.kind: Literal["http", "socks5"] = kind
        self._username = username
        self._password = password
        self._connections = 0
        self._requests: list[str] = []
        self._auth_failures = 0

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(
            self._handle, self._host, self._requested_port, backlog=4096
        )

    # -- public state

    @property
    def url(self) -> str:
        """The proxy URL without credentials, e.g. ``socks5://127.0.0.1:PORT``."""
        return f"{self.kind}://{self._authority()}"

    @property
    def url_with_credentials(self) -> str:
        """The proxy URL with ``user:password@`` when credentials are set."""
        if self._username is None or self._password is None:
            return self.url
        userinfo = f"{quote(self._username, safe='')}:{quote(self._password, safe='')}"
        return f"{self.kind}://{userinfo}@{self._authority()}"

    @property
    def connections(self) -> int:
        """How many client connections the proxy has accepted."""
        with self._lock:
            return self._connections

    @property
    def requests(self) -> list[str]:
        """What the proxy was asked to do, in order: ``"GET http://..."``, ``"CONNECT h:p"``,
        ``"SOCKS5 h:p"`` (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def auth_failures(self) -> int:
        """How many clients failed to authenticate."""
        with self._lock:
            return self._auth_failures

    def reset(self) -> None:
        """Zero the counters and forget the recorded requests."""
        with self._changed:
            self._connections = 0
            self._requests.clear()
            self._auth_failures = 0
            self._changed.notify_all()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return (
            f"<ForwardProxy {where} connections={self.connections} "
            f"requests={len(self.requests)} auth_failures={self.auth_failures}>"
        )

    # -- loop thread

    def _record(self, request: str | None = None, *, auth_failure: bool = False) -> None:
        with self._changed:
            if request is not None:
                self._requests.append(request)
            if auth_failure:
                self._auth_failures += 1
            self._changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._track(task, writer.transport)
        with self._changed:
            self._connections += 1
            self._changed.notify_all()
        try:
            if self.kind == "socks5":
                await self._socks5(reader, writer)
            else:
                await self._http(reader, writer)
        except ConnectionResetError:
            abort_with_reset(writer)
        except (
            ProxyDone,
            BadRequest,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            OSError,
        ):
            pass
        except asyncio.CancelledError:
            # Cancelled by stop(): end normally, because asyncio 3.11's stream callback logs
            # a cancelled handler task as an error.
            if not self._stopping:
                raise
        finally:
            self._transports.discard(writer.transport)
            writer.close()

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(host, port)
        self._transports.add(writer.transport)
        return reader, writer

    def _close_origin(self, writer: asyncio.StreamWriter) -> None:
        self._transports.discard(writer.transport)
        writer.close()

    async def _socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _socks5_serve(self, reader, writer)

    # -- HTTP

    def _http_authorized(self, headers: dict[str, str]) -> bool:
        if self._username is None:
            return True
        scheme, _, encoded = headers.get("proxy-authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return decoded == f"{self._username}:{self._password}"

    async def _answer(self, writer: asyncio.StreamWriter, status: str, extra: str = "") -> NoReturn:
        body = f"{status}\n".encode()
        writer.write(
            f"HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        raise ProxyDone

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        origins: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed between requests
                head = parse_head(raw)
                headers = header_dict(head.headers)
                if not self._http_authorized(headers):
                    self._record(auth_failure=True)
                    await self._answer(
                        writer,
                        "407 Proxy Authentication Required",
                        'Proxy-Authenticate: Basic realm="aichatonline-testing"\r\n',
                    )
                if head.method == "CONNECT":
                    await self._connect(reader, writer, head.target)
                    return
                if not await self._forward(reader, writer, head, headers, origins):
                    return
        finally:
            for _, origin_writer in origins.values():
                self._close_origin(origin_writer)

    async def _connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str
    ) -> None:
        self._record(f"CONNECT {target}")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            await self._answer(writer, "400 Bad Request")
        try:
            origin = await self._open(host.strip("[]"), int(port))
        except OSError:
            await self._answer(writer, "502 Bad Gateway")
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await tunnel((reader, writer), origin)
        finally:
            self._close_origin(origin[1])

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        head: RequestHead,
        headers: dict[str, str],
        origins: dict[tuple[str, int], tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> bool:
        """Relay one absolute-form request and its response; return whether to keep going."""
        target = urlsplit(head.target)
        if target.scheme != "http" or not target.hostname:
            await self._answer(writer, "400 Bad Request")
        assert target.hostname is not None
        self._record(f"{head.method} {head.target}")
        key = (target.hostname, target.port or 80)
        origin = origins.get(key)
        if origin is None or origin[1].is_closing() or origin[0].at_eof():
            try:
                origin = origins[key] = await self._open(*key)
            except OSError:
                await self._answer(writer, "502 Bad Gateway")
        assert origin is not None
        origin_reader, origin_writer = origin

        path = target.path or "/"
        if target.query:
            path += f"?{target.query}"
        lines = [f"{head.method} {path} {head.version}"]
        lines += [f"{name}: {value}" for name, value in head.headers if name not in _HOP_HEADERS]
        origin_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await copy_chunked(reader, origin_writer)
        elif headers.get("content-length", "0").isdigit():
            await copy_exact(reader, origin_writer, int(headers.get("content-length", "0")))
        await origin_writer.drain()

        raw = await origin_reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        status_line = raw.split(b"\r\n", 1)[0].split(b" ")
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        response = header_dict(_parse_response_headers(raw))
        if head.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in response.get("transfer-encoding", "").lower():
            await copy_chunked(origin_reader, writer)
        elif "content-length" in response:
            await copy_exact(origin_reader, writer, int(response["content-length"]))
        else:
            await copy_to_eof(origin_reader, writer)
            return False
        closing = [
            "close" in response.get("connection", "").lower(),
            "close" in headers.get("connection", "").lower(),
            "close" in headers.get("proxy-connection", "").lower(),
        ]
        if closing[0]:
            self._close_origin(origin_writer)
            del origins[key]
        return not any(closing)


def _parse_response_headers(raw: bytes) -> list[tuple[str, str]]:
    headers = []
    for line in raw.decode("latin-1").split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip().lower(), value.strip()))
    return headers


async def _read_socks_address(reader: asyncio.StreamReader, kind: int) -> str:
    if kind == 1:
        return str(ipaddress.IPv4Address(await reader.readexactly(4)))
    if kind == 4:
        return str(ipaddress.IPv6Address(await reader.readexactly(16)))
    if kind == 3:
        length = (await reader.readexactly(1))[0]
        return (await reader.readexactly(length)).decode("idna")
    raise ProxyDone


async def _socks_reply(writer: asyncio.StreamWriter, code: int) -> None:
    # Reply with a zero IPv4 bind address: clients do not use it.
    writer.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
    await writer.drain()


async def _socks5_handshake(
    proxy: ForwardProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, int]:
    version, count = await reader.readexactly(2)
    if version != 5:
        raise ProxyDone
    methods = await reader.readexactly(count)
    wanted = 0 if proxy._username is None else 2
    if wanted not in methods:
        # Count before answering, so a client that sees the refusal also sees the count.
        proxy._record(auth_failure=True)
        writer.write(b"\x05\xff")
        await writer.drain()
        raise ProxyDone
    writer.write(bytes([5, wanted]))
    await writer.drain()
    if wanted == 2:
        # RFC 1929: VER ULEN UNAME PLEN PASSWD.
        _, ulen = await reader.readexactly(2)
        username = (await reader.readexactly(ulen)).decode(errors="replace")
        plen = (await reader.readexactly(1))[0]
        password = (await reader.readexactly(plen)).decode(errors="replace")
        ok = username == proxy._username and password == proxy._password
        if not ok:
            proxy._record(auth_failure=True)
        writer.write(b"\x01\x00" if ok else b"\x01\x01")
        await writer.drain()
        if not ok:
            raise ProxyDone
    version, command, _, address_type = await reader.readexactly(4)
    host = await _read_socks_address(reader, address_type)
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    if version != 5 or command != 1:
        await _socks_reply(writer, 7)  # command not supported
        raise ProxyDone
    return host, port


async def _socks5_serve(
    proxy: ForwardProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    host, port = await _socks5_handshake(proxy, reader, writer)
    shown = f"[{host}]" if ":" in host else host
    proxy._record(f"SOCKS5 {shown}:{port}")
    try:
        origin = await proxy._open(host, port)
    except OSError:
        await _socks_reply(writer, 5)  # connection refused
        raise ProxyDone from None
    try:
        await _socks_reply(writer, 0)
        await tunnel((reader, writer), origin)
    finally:
        proxy._close_origin(origin[1])
