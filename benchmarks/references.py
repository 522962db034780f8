"""The reference stacks: the same chats read the ways the SDK is measured against.

The raw-socket floors (HTTP/1.1 by hand: the least a client can do), bare httpx, the
original provider's aiohttp code, aiohttp with a reused session, the openai SDK, and the
SDK behind its own gateway. They re-implement the protocol (PROTOCOL.md) in the usual
way for their library; their headers and bodies match what the SDK sends
(``benchmarks/chat.py``), so no stack does less work on the wire than another. Optional
packages are imported inside the stack that needs them.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

from .chat import (
    MODEL,
    PROMPT,
    AsyncStack,
    SyncStack,
    browser_headers,
    chat_body,
    json_loads,
    random_string,
    token_url,
)
from .server import CHAT_PATH

__all__ = [
    "AiohttpReused",
    "GatewaySSE",
    "HttpxAsync",
    "HttpxNaive",
    "HttpxSync",
    "OpenAISync",
    "OriginalAiohttp",
    "RawSocket",
    "RawSocketOneRequest",
]


# -- sync stacks ---------------------------------------------------------------


class _RawHTTP:
    """The least a client can do: one keep-alive socket, HTTP/1.1 by hand.

    Chunked bodies are de-chunked in a ``bytearray`` (deleting its front is
    O(1) in CPython), so each received byte is copied a bounded number of times.
    """

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.netloc
        self.sock = socket.create_connection((parts.hostname, parts.port or 80))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def read_head(self) -> tuple[int, dict[str, str]]:
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split(" ", 2)[1]), headers

    def read_body(self, headers: dict[str, str]) -> bytes:
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._fill()
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return body

    def iter_chunks(self) -> Iterator[bytes]:
        buf = self.buf
        while True:
            while (end := buf.find(b"\r\n")) < 0:
                self._fill()
            size = int(buf[:end].split(b";", 1)[0], 16)
            need = end + 2 + size + 2
            while len(buf) < need:
                self._fill()
            if size == 0:  # no trailers from our server
                del buf[:need]
                return
            data = bytes(buf[end + 2 : end + 2 + size])
            del buf[:need]
            yield data

    def close(self) -> None:
        self.sock.close()


class RawSocket(SyncStack):
    """Raw socket + split + ``json.loads`` (the stdlib floor) or ``orjson.loads``.

    Like the original protocol, each chat fetches a token first (on the same
    keep-alive socket): the floor does the work of one token + one chat.
    """

    #: Fetch a token before every chat (this class), or once in ``warm()`` (the subclass).
    token_per_call = True

    def warm(self) -> None:
        self.http = _RawHTTP(self.base_url)
        self.headers = browser_headers(self.base_url)
        self.loads = json_loads(self.parser)
        if not self.token_per_call:
            self.chat_headers = self._chat_headers()

    def _chat_headers(self) -> dict[str, str]:
        http = self.http
        http.send("GET", token_url(""), self.headers)  # origin-form target
        status, headers = http.read_head()
        body = http.read_body(headers)
        if status != 200:
            raise RuntimeError(f"token: HTTP {status}")
        token = self.loads(body)["data"]
        return {**self.headers, "Content-Type": "application/json", "UniqueId": token}

    def stream(self) -> Iterator[str]:
        return self._pieces()

    def _pieces(self) -> Iterator[str]:
        http, loads = self.http, self.loads
        chat_headers = self._chat_headers() if self.token_per_call else self.chat_headers
        http.send("POST", CHAT_PATH, chat_headers, chat_body())
        status, _ = http.read_head()
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        # json.loads is fastest on str (bytes cost it an encoding sniff per call), so
        # the stdlib floor decodes each block of whole lines once; orjson prefers bytes.
        # Only whole lines are decoded, so a character split across reads is safe.
        text = self.parser == "stdlib"
        tail = b""
        for data in http.iter_chunks():
            end = data.rfind(b"\n")
            if end < 0:
                tail += data
                continue
            block = tail + data[:end] if tail else data[:end]
            tail = data[end + 1 :]
            for line in block.decode().split("\n") if text else block.split(b"\n"):
                if line:
                    yield loads(line)["data"]["message"]
        if tail:
            yield loads(tail)["data"]["message"]

    def close(self) -> None:
        self.http.close()


class RawSocketOneRequest(RawSocket):
    """The floor of a warm client: the token fetched once in ``warm()``, ONE request per chat.

    What the SDK's warm ``Client`` does on the wire (its token is cached), done by hand:
    the latency floor the SDK's sync client is held to.
    """

    token_per_call = False


def _httpx_limits() -> Any:
    import httpx

    # The pool settings the SDK first shipped with (no connection cap, 100 kept alive).
    return httpx.Limits(max_connections=None, max_keepalive_connections=100, keepalive_expiry=30)


class HttpxSync(SyncStack):
    """``httpx.Client``: a bare POST with the SDK's headers, ``iter_lines`` + ``json.loads``."""

    def warm(self) -> None:
        import httpx

        self.client = httpx.Client(limits=_httpx_limits())
        headers = browser_headers(self.base_url)
        token = self.client.get(token_url(self.base_url), headers=headers).json()["data"]
        self.chat_headers = {**headers, "Content-Type": "application/json", "UniqueId": token}
        self.url = f"{self.base_url}{CHAT_PATH}"

    def stream(self) -> Iterator[str]:
        return self._pieces()

    def _pieces(self) -> Iterator[str]:
        loads = json.loads
        body = chat_body()
        with self.client.stream("POST", self.url, headers=self.chat_headers, content=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            for line in r.iter_lines():
                if line:
                    yield loads(line)["data"]["message"]

    def close(self) -> None:
        self.client.close()


class OpenAISync(SyncStack):
    """The openai SDK's streaming chat completions (SSE + pydantic chunk objects)."""

    def warm(self) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=f"{self.base_url}/v1", api_key="bench", max_retries=0)

    def stream(self) -> Iterator[str]:
        return self._pieces()

    def _pieces(self) -> Iterator[str]:
        messages: Any = [{"role": "user", "content": PROMPT}]
        with self.client.chat.completions.create(
            model=MODEL, messages=messages, stream=True
        ) as chunks:
            for chunk in chunks:
                if chunk.choices:
                    text = chunk.choices[0].delta.content
                    if text:
                        yield text

    def close(self) -> None:
        self.client.close()


# -- async stacks --------------------------------------------------------------


class HttpxAsync(AsyncStack):
    """``httpx.AsyncClient``: a bare POST, ``aiter_lines`` + ``json.loads``.

    Its pool has no connection cap (the limits the SDK first shipped with), so
    concurrent streams do not fail on httpx's default limit of 100.
    """

    def limits(self) -> Any:
        return _httpx_limits()

    async def warm(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(limits=self.limits(), timeout=httpx.Timeout(300.0))
        headers = browser_headers(self.base_url)
        reply = await self.client.get(token_url(self.base_url), headers=headers)
        token = reply.json()["data"]
        self.chat_headers = {**headers, "Content-Type": "application/json", "UniqueId": token}
        self.url = f"{self.base_url}{CHAT_PATH}"

    def stream(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        loads = json.loads
        body = chat_body()
        async with self.client.stream(
            "POST", self.url, headers=self.chat_headers, content=body
        ) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            async for line in r.aiter_lines():
                if line:
                    yield loads(line)["data"]["message"]

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpxNaive(HttpxAsync):
    """A naive ``httpx.AsyncClient`` for many streams: only the limits raised.

    ``max_connections=None, max_keepalive_connections=None`` is what a user
    does after hitting ``PoolTimeout`` at 101 streams: no cap, and every
    connection kept alive.
    """

    def limits(self) -> Any:
        import httpx

        return httpx.Limits(max_connections=None, max_keepalive_connections=None)


class OriginalAiohttp(AsyncStack):
    """The original provider's way: aiohttp, a new session and a new token per call.

    As in the seed's ``create_async_generator``: browser headers on a fresh
    ``ClientSession``, ``grab_token`` (GET, ``raise_for_status``, ``.json()``),
    then the POST with ``json=data`` and ``async for chunk in response.content``
    (one line per iteration) through ``json.loads``, skipping what fails.
    """

    backends = ("asyncio",)

    async def warm(self) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.headers = {
            **browser_headers(self.base_url),
            "Accept-Encoding": "gzip, deflate, br",
            "Content-Type": "application/json",
            "Connection": "keep-alive",
            "TE": "trailers",
        }

    def stream(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        async with self.aiohttp.ClientSession(headers=self.headers) as session:
            data = {"conversationId": random_string(), "prompt": PROMPT}
            headers = dict(self.headers)
            async with session.get(token_url(self.base_url), proxy=None) as response:
                response.raise_for_status()
                headers["UniqueId"] = (await response.json())["data"]
            async with session.post(
                f"{self.base_url}{CHAT_PATH}", headers=headers, json=data, proxy=None
            ) as response:
                response.raise_for_status()
                async for chunk in response.content:
                    try:
                        text = json.loads(chunk)["data"]["message"]
                    except Exception:  # the original's bare ``except: continue``
                        continue
                    yield text


class AiohttpReused(AsyncStack):
    """aiohttp as a careful user writes it: ONE ``ClientSession`` for every call, token cached.

    The fair async reference: the session (and its connection pool) is made once in
    ``warm()``, the token fetched once, and each chat is one POST, read with
    ``async for line in response.content`` (one line per iteration) and ``json.loads``.
    The connector has no connection cap (``limit=0``; aiohttp's default of 100 would queue
    the 101st stream behind the others), like the SDK's pool.
    """

    backends = ("asyncio",)

    async def warm(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=0)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=60)
        )
        headers = browser_headers(self.base_url)
        async with self.session.get(token_url(self.base_url), headers=headers) as response:
            response.raise_for_status()
            token = (await response.json())["data"]
        self.chat_headers = {**headers, "Content-Type": "application/json", "UniqueId": token}
        self.url = f"{self.base_url}{CHAT_PATH}"
        self.loads = json_loads(self.parser)

    def stream(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        loads = self.loads
        async with self.session.post(
            self.url, headers=self.chat_headers, data=chat_body()
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            async for line in response.content:
                if len(line) > 1:  # our server sends no blank lines; a user's code checks
                    yield loads(line)["data"]["message"]

    async def aclose(self) -> None:
        await self.session.close()


class GatewaySSE(AsyncStack):
    """The SDK behind the OpenAI-compatible gateway (``aichatonline gateway``), one worker.

    ``warm()`` starts the gateway as users run it, in its own process, pointed at the bench
    server; each chat is one ``POST /v1/chat/completions`` with ``stream: true`` read over a
    raw asyncio socket (chunked SSE, ``json.loads`` per event), so the client side costs
    little and the figures are the gateway's. Its pieces are the SSE content deltas: the
    gateway coalesces the service's pieces into fewer events, so only the text's length is
    checked, not the number of pieces. ``probe()`` reads the gateway process's CPU seconds
    and RSS, for the worker's timed section.
    """

    backends = ("asyncio",)
    coalesces = True

    #: The gateway's ``--max-concurrency``: set by the worker from the spec's stream count.
    max_concurrency = 1000

    async def warm(self) -> None:
        from .gateway import GatewayProcess

        self.gateway = GatewayProcess(self.base_url, self.max_concurrency)
        self.loads = json_loads(self.parser)

    def stream(self) -> AsyncIterator[str]:
        from .gateway import sse_pieces

        return sse_pieces(self.gateway.host, self.gateway.port, self.loads)

    def probe(self) -> dict[str, float]:
        cpu = self.gateway.cpu()
        rss, peak = self.gateway.memory()
        return {"cpu": cpu, "rss": rss, "peak_rss": peak}

    async def aclose(self) -> None:
        self.gateway.stop()
