"""aichatonline: a small, exact Python SDK for the AiChatOnline chat service.

A blocking :class:`Client` for scripts and an :class:`AsyncClient` for asyncio and trio
stream an answer piece by piece, over one sans-IO protocol core (``_core``) and one I/O
layer written once (``_async``, with its blocking twin generated), with retries
(tenacity) that never lose or repeat text. :class:`AiChatOnline` is the original g4f
provider class, kept working. ``aichatonline.testing`` is a local AiChatOnline server.

``AICHATONLINE_LOG=info`` (or ``debug``) in the environment shows the SDK's log lines
(retries, and at debug skipped stream lines) on stderr, as ``OPENAI_LOG`` does for openai.

The names below are loaded on first use (PEP 562, ``_lazy.py``): the package's pytest
plugin imports ``aichatonline`` in every test run of every project that has it installed,
and that should not cost the import of the clients. ``_EXPORTS`` says where each name
lives; ``__all__`` and the ``TYPE_CHECKING`` imports list the same names (a test checks).
The errors (``_exceptions.py``, small and pure) are imported at once, by their own
``__all__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _exceptions
from ._exceptions import *  # noqa: F403 - the error tree, named by its own __all__
from ._lazy import lazy_exports
from ._version import __version__

if TYPE_CHECKING:
    from ._async.chat_completions import AsyncChat, AsyncChatCompletionStream, AsyncCompletions
    from ._async.client import AsyncClient
    from ._async.conversation import AsyncConversation, AsyncConversationStream
    from ._async.stream import AsyncStream
    from ._base_client import NOT_GIVEN, NotGiven
    from ._core import (
        BROWSER_USER_AGENT,
        DEFAULT_BASE_URL,
        DEFAULT_MODEL,
        DEFAULT_TIMEOUT,
        MODELS,
        HttpxLikeTimeout,
        RetryPolicy,
        StreamDecoder,
        Timeout,
        TimeoutTypes,
        format_prompt,
        get_random_string,
        is_testing,
        set_testing,
    )
    from ._http_clients import DefaultAioHttpClient, DefaultAsyncHttpxClient, DefaultHttpxClient
    from ._messages import Message, Messages, TextPart
    from ._provider import (
        AiChatOnline,
        AsyncGeneratorProvider,
        AsyncResult,
        CreateResult,
        ProviderModelMixin,
    )
    from ._sync.chat_completions import Chat, ChatCompletionStream, Completions
    from ._sync.client import Client
    from ._sync.conversation import Conversation, ConversationStream
    from ._sync.stream import Stream
    from .types import Completion

__all__ = [
    "BROWSER_USER_AGENT",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "MODELS",
    "NOT_GIVEN",
    "AiChatOnline",
    "AsyncChat",
    "AsyncChatCompletionStream",
    "AsyncClient",
    "AsyncCompletions",
    "AsyncConversation",
    "AsyncConversationStream",
    "AsyncGeneratorProvider",
    "AsyncResult",
    "AsyncStream",
    "Chat",
    "ChatCompletionStream",
    "Client",
    "Completion",
    "Completions",
    "Conversation",
    "ConversationStream",
    "CreateResult",
    "DefaultAioHttpClient",
    "DefaultAsyncHttpxClient",
    "DefaultHttpxClient",
    "HttpxLikeTimeout",
    "Message",
    "Messages",
    "NotGiven",
    "ProviderModelMixin",
    "RetryPolicy",
    "Stream",
    "StreamDecoder",
    "TextPart",
    "Timeout",
    "TimeoutTypes",
    "__version__",
    "format_prompt",
    "get_random_string",
    "is_testing",
    "set_testing",
]

_EXPORTS = {
    "._async.client": ["AsyncClient"],
    "._async.chat_completions": ["AsyncChat", "AsyncChatCompletionStream", "AsyncCompletions"],
    "._async.conversation": ["AsyncConversation", "AsyncConversationStream"],
    "._async.stream": ["AsyncStream"],
    "._base_client": ["NOT_GIVEN", "NotGiven"],
    "._core": [
        "BROWSER_USER_AGENT",
        "DEFAULT_BASE_URL",
        "DEFAULT_MODEL",
        "DEFAULT_TIMEOUT",
        "MODELS",
        "HttpxLikeTimeout",
        "RetryPolicy",
        "StreamDecoder",
        "Timeout",
        "TimeoutTypes",
        "format_prompt",
        "get_random_string",
        "is_testing",
        "set_testing",
    ],
    "._http_clients": ["DefaultAioHttpClient", "DefaultAsyncHttpxClient", "DefaultHttpxClient"],
    "._messages": ["Message", "Messages", "TextPart"],
    "._provider": [
        "AiChatOnline",
        "AsyncGeneratorProvider",
        "AsyncResult",
        "CreateResult",
        "ProviderModelMixin",
    ],
    "._sync.client": ["Client"],
    "._sync.chat_completions": ["Chat", "ChatCompletionStream", "Completions"],
    "._sync.conversation": ["Conversation", "ConversationStream"],
    "._sync.stream": ["Stream"],
    ".types": ["Completion"],
}
__all__ += _exceptions.__all__
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


def _log_from_env() -> None:
    # AICHATONLINE_LOG=info|debug, as openai-python's OPENAI_LOG: read at import, and only
    # when it is set does the import pay for the logging set-up (_config pulls in the core).
    import os

    if os.environ.get("AICHATONLINE_LOG"):
        from ._config import log_from_env

        log_from_env()


_log_from_env()
