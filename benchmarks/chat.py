"""What every stack sends, and how the bench drives a stack.

The prompt, the browser-like headers PROTOCOL.md prescribes (the SDK's default set), the
chat body and the token URL, so that the SDK and every reference put the same bytes on
the wire; and the two shapes of a stack (:class:`SyncStack`, :class:`AsyncStack`): set up
once with ``warm()``, then one ``stream()`` per chat, an iterable of text pieces.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from typing import Any

from .server import TOKEN_PATH

__all__ = [
    "MODEL",
    "PROMPT",
    "AsyncStack",
    "SyncStack",
    "browser_headers",
    "chat_body",
    "json_loads",
    "random_string",
    "token_url",
]

PROMPT = "Hello"
MODEL = "gpt-4o-mini"
# The header set of PROTOCOL.md, section 2, as the SDK sends it by default.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def browser_headers(base_url: str) -> dict[str, str]:
    """The browser-like headers PROTOCOL.md prescribes (the SDK's default set)."""
    return {
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "Accept-Language": "en-US,en;q=0.5",
        "Referer": f"{base_url}/chatgpt/chat/",
        "Origin": base_url,
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
    }


def random_string(length: int = 10) -> str:
    """``get_random_string`` of the original provider."""
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=length))


def chat_body() -> bytes:
    """The chat request body: a fresh conversation id and the prompt."""
    payload = {"conversationId": random_string(), "prompt": PROMPT}
    return json.dumps(payload, separators=(",", ":")).encode()


def token_url(base_url: str) -> str:
    return f"{base_url}{TOKEN_PATH}?canvas=-{random_string()}"


def json_loads(name: str) -> Callable[[bytes], Any]:
    """``json.loads`` (``"stdlib"``) or ``orjson.loads`` (``"orjson"``)."""
    if name == "orjson":
        import orjson

        return orjson.loads  # type: ignore[no-any-return]
    return json.loads


class SyncStack:
    """A blocking way of streaming one chat: ``warm()`` once, then ``stream()`` per chat."""

    def __init__(self, base_url: str, parser: str) -> None:
        self.base_url = base_url
        self.parser = parser

    def warm(self) -> None:
        """Set up what a warm client has (connection, token); not timed."""

    def stream(self) -> Any:
        """One chat: an iterable of pieces with ``close()``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the stack's connections."""


class AsyncStack:
    """An async way of streaming one chat: ``await warm()`` once, ``stream()`` per chat."""

    #: The event loops the stack runs on.
    backends: tuple[str, ...] = ("asyncio", "trio")

    def __init__(self, base_url: str, parser: str) -> None:
        self.base_url = base_url
        self.parser = parser

    async def warm(self) -> None:
        """Set up what a warm client has (connection, token); not timed."""

    def stream(self) -> Any:
        """One chat: an async iterable of pieces with ``aclose()``."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the stack's connections."""
