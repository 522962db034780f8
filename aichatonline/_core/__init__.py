"""The sans-IO protocol core: all that the SDK knows about AiChatOnline, and no I/O.

Nothing in this package imports httpx, anyio, sockets or threads. The
transports move bytes; everything they need to decide comes from here:

- ``prompt``  validating messages and formatting the prompt string
- ``wire``    URLs, headers and bodies of the two requests; token parsing;
              classifying a status into a typed error
- ``decoder`` the incremental NDJSON stream decoder
- ``resume``  the text of a call, and resuming a dropped stream exactly
- ``policy``  timeouts, the whole-call deadline, and retry decisions
- ``redact``  keeping the token and proxy credentials out of messages
"""

from .decoder import DEFAULT_MAX_LINE_BYTES, StreamDecoder
from .policy import Deadline, RetryPolicy, Timeout, TimeoutTypes
from .prompt import format_prompt, get_random_string, normalize_messages
from .redact import redact
from .resume import Transcript
from .wire import (
    BROWSER_USER_AGENT,
    CHAT_PATH,
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    ERROR_BODY_LIMIT,
    SITE_URL,
    TOKEN_PATH,
    Chat,
    Outcome,
    Request,
    build_headers,
    classify,
    is_header_text,
    is_header_token,
    normalize_base_url,
    parse_retry_after,
    parse_token,
    status_error,
    token_request,
)

__all__ = [
    "BROWSER_USER_AGENT",
    "CHAT_PATH",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MODEL",
    "ERROR_BODY_LIMIT",
    "SITE_URL",
    "TOKEN_PATH",
    "Chat",
    "Deadline",
    "Outcome",
    "Request",
    "RetryPolicy",
    "StreamDecoder",
    "Timeout",
    "TimeoutTypes",
    "Transcript",
    "build_headers",
    "classify",
    "format_prompt",
    "get_random_string",
    "is_header_text",
    "is_header_token",
    "normalize_base_url",
    "normalize_messages",
    "parse_retry_after",
    "parse_token",
    "redact",
    "status_error",
    "token_request",
]
