"""The client stacks under test: the SDK's, and the registry of every stack by name.

Every stack turns one chat into an iterable of text pieces that the caller
drains with the same loop (count the pieces, add up their lengths), so the
figures differ only by what the stack does per piece. Sync stacks give an
object with ``close()``; async stacks one with ``aclose()`` (``benchmarks/chat.py``).

The SDK is driven only through its public API (``Client`` / ``AsyncClient``,
``stream()``, ``get_token()``, ``http_client=``), with default settings, exactly as a
user would: ``sdk-sync`` and ``sdk-async`` are the default clients (httpx underneath),
``sdk-aiohttp`` is ``AsyncClient(http_client=DefaultAioHttpClient())``. The references
(``benchmarks/references.py``) re-implement the protocol (PROTOCOL.md) in the usual way
for their library.

Imports of optional packages (aiohttp, httpx-aiohttp, openai, orjson, trio, and
Starlette and uvicorn for the gateway) happen inside the stack that needs them: a
missing package skips that stack only.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .chat import PROMPT, AsyncStack, SyncStack
from .references import (
    AiohttpReused,
    GatewaySSE,
    HttpxAsync,
    HttpxNaive,
    HttpxSync,
    OpenAISync,
    OriginalAiohttp,
    RawSocket,
    RawSocketOneRequest,
)

__all__ = [
    "ASYNC_STACKS",
    "LABELS",
    "PROMPT",
    "SYNC_STACKS",
    "AsyncStack",
    "SyncStack",
    "missing_packages",
]


class SdkSync(SyncStack):
    """``aichatonline.Client.stream``, default settings, one warm client."""

    def warm(self) -> None:
        from aichatonline import Client

        self.client = Client(base_url=self.base_url)
        self.client.get_token()  # the token is cached; it also opens the connection

    def stream(self) -> Any:
        return self.client.stream(PROMPT)

    def close(self) -> None:
        self.client.close()


class SdkAsync(AsyncStack):
    """``aichatonline.AsyncClient.stream``, default settings, one warm client."""

    async def warm(self) -> None:
        from aichatonline import AsyncClient

        self.client = AsyncClient(base_url=self.base_url)
        await self.client.get_token()

    def stream(self) -> Any:
        return self.client.stream(PROMPT)

    async def aclose(self) -> None:
        await self.client.aclose()


class SdkAioHttp(SdkAsync):
    """``AsyncClient(http_client=DefaultAioHttpClient())``: the SDK on aiohttp's connections.

    The opt-in for the most streams at once on asyncio (httpx-aiohttp's transport under an
    ``httpx.AsyncClient``), otherwise default settings. The httpx client is the caller's,
    so the stack closes it after the SDK's client, as a user would.
    """

    backends = ("asyncio",)

    async def warm(self) -> None:
        from aichatonline import AsyncClient, DefaultAioHttpClient

        self.http_client = DefaultAioHttpClient()
        self.client = AsyncClient(base_url=self.base_url, http_client=self.http_client)
        await self.client.get_token()

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.http_client.aclose()


SYNC_STACKS: dict[str, type[SyncStack]] = {
    "floor": RawSocket,
    "floor-1req": RawSocketOneRequest,
    "sdk-sync": SdkSync,
    "httpx-sync": HttpxSync,
    "openai": OpenAISync,
}
ASYNC_STACKS: dict[str, type[AsyncStack]] = {
    "sdk-async": SdkAsync,
    "sdk-aiohttp": SdkAioHttp,
    "httpx-async": HttpxAsync,
    "httpx-naive": HttpxNaive,
    "original": OriginalAiohttp,
    "aiohttp": AiohttpReused,
    "gateway": GatewaySSE,
}

#: What each stack is, for the tables.
LABELS = {
    "floor": "raw socket + split + json.loads (stdlib floor)",
    "floor-orjson": "raw socket + split + orjson.loads (orjson floor)",
    "floor-1req": "raw socket, token cached: ONE request per chat (one-request floor)",
    "sdk-sync": "SDK Client.stream",
    "sdk-async": "SDK AsyncClient.stream",
    "sdk-aiohttp": "SDK AsyncClient.stream on DefaultAioHttpClient",
    "httpx-sync": "httpx.Client iter_lines + json.loads",
    "httpx-async": "httpx.AsyncClient aiter_lines + json.loads",
    "httpx-naive": "naive httpx.AsyncClient (no limits) aiter_lines + json.loads",
    "original": "original provider's way (aiohttp, session + token per call)",
    "aiohttp": "aiohttp, one reused ClientSession, token cached",
    "gateway": "through the gateway (SSE, one uvicorn worker)",
    "openai": "openai SDK streaming (SSE + pydantic chunks)",
}

#: The optional packages each stack needs.
_NEEDS = {
    "sdk-aiohttp": ("aiohttp", "httpx_aiohttp"),
    "original": ("aiohttp",),
    "aiohttp": ("aiohttp",),
    "openai": ("openai",),
    "gateway": ("starlette", "uvicorn"),
}


def missing_packages(stack: str, parser: str = "stdlib", backend: str = "asyncio") -> list[str]:
    """The packages ``stack`` needs that are not installed (empty: it can run)."""
    needed = list(_NEEDS.get(stack, ()))
    if parser == "orjson":
        needed.append("orjson")
    if backend == "trio":
        needed.append("trio")
    return [name for name in needed if importlib.util.find_spec(name) is None]
