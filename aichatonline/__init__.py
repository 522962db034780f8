"""aichatonline: a small, exact Python SDK for the AiChatOnline chat service.

A blocking :class:`Client` for scripts and an :class:`AsyncClient` for asyncio
and trio stream an answer piece by piece, over one sans-IO protocol core and
one transport on httpx, with retries (tenacity) that never lose or repeat
text. :class:`AiChatOnline` is the original provider class, kept working.
``aichatonline.testing`` is a local AiChatOnline server for tests.

The names below are loaded on first use (PEP 562): the package's pytest
plugin imports ``aichatonline`` in every test run of every project that has
it installed, and that should not cost the import of httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._client import AsyncClient, AsyncStream, Client, Stream
    from ._core import (
        BROWSER_USER_AGENT,
        DEFAULT_BASE_URL,
        DEFAULT_MODEL,
        RetryPolicy,
        StreamDecoder,
        Timeout,
        format_prompt,
        get_random_string,
    )
    from ._exceptions import (
        AiChatOnlineError,
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BlockedError,
        InvalidRequestError,
        ProtocolError,
        RateLimitError,
        ServerError,
        ServiceError,
        StreamInterrupted,
    )
    from ._provider import AiChatOnline, AsyncGeneratorProvider, ProviderModelMixin
    from ._types import AsyncResult, CreateResult, Message, Messages, TextPart

__all__ = [
    "BROWSER_USER_AGENT",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AiChatOnline",
    "AiChatOnlineError",
    "AsyncClient",
    "AsyncGeneratorProvider",
    "AsyncResult",
    "AsyncStream",
    "AuthenticationError",
    "BlockedError",
    "Client",
    "CreateResult",
    "InvalidRequestError",
    "Message",
    "Messages",
    "ProtocolError",
    "ProviderModelMixin",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "ServiceError",
    "Stream",
    "StreamDecoder",
    "StreamInterrupted",
    "TextPart",
    "Timeout",
    "__version__",
    "format_prompt",
    "get_random_string",
]

_MODULE_OF = {
    "AsyncClient": "._client",
    "AsyncStream": "._client",
    "Client": "._client",
    "Stream": "._client",
    "BROWSER_USER_AGENT": "._core",
    "DEFAULT_BASE_URL": "._core",
    "DEFAULT_MODEL": "._core",
    "RetryPolicy": "._core",
    "StreamDecoder": "._core",
    "Timeout": "._core",
    "format_prompt": "._core",
    "get_random_string": "._core",
    "AiChatOnlineError": "._exceptions",
    "APIConnectionError": "._exceptions",
    "APIError": "._exceptions",
    "APIStatusError": "._exceptions",
    "APITimeoutError": "._exceptions",
    "AuthenticationError": "._exceptions",
    "BlockedError": "._exceptions",
    "InvalidRequestError": "._exceptions",
    "ProtocolError": "._exceptions",
    "RateLimitError": "._exceptions",
    "ServerError": "._exceptions",
    "ServiceError": "._exceptions",
    "StreamInterrupted": "._exceptions",
    "AiChatOnline": "._provider",
    "AsyncGeneratorProvider": "._provider",
    "ProviderModelMixin": "._provider",
    "AsyncResult": "._types",
    "CreateResult": "._types",
    "Message": "._types",
    "Messages": "._types",
    "TextPart": "._types",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
