"""The sans-IO protocol core: all that the SDK knows about AiChatOnline, and no I/O.

Nothing in this package imports httpx, anyio, sockets or threads (a test checks). The I/O
layer moves bytes and sleeps; everything it needs to decide comes from here:

- ``prompt``   validating messages and formatting the prompt string
- ``wire``     URLs, headers and bodies of the two requests; token parsing; the one status
               table (``classify``) and the typed error for a status; the content codings
               we read
- ``decoder``  the incremental NDJSON stream decoder; ``lines`` its careful reading, line
               by line; ``blocks`` its fast paths (line shapes, learned; one parse a block)
- ``resume``   the text of a call, and resuming a dropped stream exactly
- ``timeouts`` ``Timeout`` (httpx's per-operation limits, plus ``total`` and
               ``first_piece``) and ``TimeLimits``, one call's view of them
- ``retries``  ``RetryPolicy``: retry decisions made by tenacity's strategies
- ``session``  what a client keeps between calls: the token cache (token generations)
- ``call``     one chat call as a state machine: events in, actions out; ``fetch`` one
               token fetch, the same way
- ``redact``   keeping the token and credentials out of messages
"""

from .actions import (
    COMPLETE,
    FETCH_TOKEN,
    READ_BODY,
    READ_ERROR,
    READ_HEAD,
    Action,
    EventOrderError,
    Fetched,
    Raise,
    Send,
    Sleep,
)
from .call import Call, CallState
from .codings import EXPANSION_LIMIT, check_content_encoding, check_expansion
from .decoder import DEFAULT_MAX_LINE_BYTES, StreamDecoder
from .headers import (
    BROWSER_USER_AGENT,
    build_headers,
    check_headers,
    is_header_text,
    is_header_token,
)
from .models import DEFAULT_MODEL, MODEL_ALIASES, MODELS, resolve_model
from .prompt import format_prompt, get_random_string, normalize_messages
from .redact import redact
from .request import CHAT_PATH, ChatRequest, Request
from .retries import Attempts, RetryPolicy, is_testing, set_testing
from .statuses import (
    ERROR_BODY_LIMIT,
    RETRYABLE,
    Outcome,
    classify,
    parse_retry_after,
    status_error,
)
from .timeouts import (
    DEFAULT_TIMEOUT,
    OPERATIONS,
    HttpxLikeTimeout,
    TimeLimits,
    Timeout,
    TimeoutTypes,
)
from .token_cache import TokenCache
from .token_fetch import TOKEN_PATH, FetchState, TokenFetch, parse_token, token_request
from .transcript import Transcript
from .urls import DEFAULT_BASE_URL, SITE_URL, normalize_base_url

__all__ = [
    "BROWSER_USER_AGENT",
    "CHAT_PATH",
    "COMPLETE",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "ERROR_BODY_LIMIT",
    "EXPANSION_LIMIT",
    "FETCH_TOKEN",
    "MODELS",
    "MODEL_ALIASES",
    "OPERATIONS",
    "READ_BODY",
    "READ_ERROR",
    "READ_HEAD",
    "RETRYABLE",
    "SITE_URL",
    "TOKEN_PATH",
    "Action",
    "Attempts",
    "Call",
    "CallState",
    "ChatRequest",
    "EventOrderError",
    "FetchState",
    "Fetched",
    "HttpxLikeTimeout",
    "Outcome",
    "Raise",
    "Request",
    "RetryPolicy",
    "Send",
    "Sleep",
    "StreamDecoder",
    "TimeLimits",
    "Timeout",
    "TimeoutTypes",
    "TokenCache",
    "TokenFetch",
    "Transcript",
    "build_headers",
    "check_content_encoding",
    "check_expansion",
    "check_headers",
    "classify",
    "format_prompt",
    "get_random_string",
    "is_header_text",
    "is_header_token",
    "is_testing",
    "normalize_base_url",
    "normalize_messages",
    "parse_retry_after",
    "parse_token",
    "redact",
    "resolve_model",
    "set_testing",
    "status_error",
    "token_request",
]
