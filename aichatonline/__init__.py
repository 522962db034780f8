"""aichatonline: a small, exact Python SDK for the AiChatOnline chat service.

A blocking :class:`Client` for scripts and an :class:`AsyncClient` for asyncio
and trio stream an answer piece by piece, over one sans-IO protocol core and
one transport on httpx, with retries (tenacity) that never lose or repeat
text. :class:`AiChatOnline` is the original provider class, kept working.
``aichatonline.testing`` is a local AiChatOnline server for tests.
"""

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
from ._version import __version__

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
