"""What goes on the wire and what comes back, as plain data. No I/O.

Requests are described as :class:`Request` values (method, URL, headers,
body) for the transport to send; responses come back as a status, headers and
(the start of) a body, and are turned here into a token, or a typed error.
Every URL, header, body shape and status rule of PROTOCOL.md lives in this file.
"""

from __future__ import annotations

import http
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum

from .._exceptions import (
    APIStatusError,
    AuthenticationError,
    BlockedError,
    InvalidRequestError,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from .prompt import get_random_string
from .redact import redact

__all__ = [
    "BROWSER_USER_AGENT",
    "CHAT_PATH",
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "ERROR_BODY_LIMIT",
    "SITE_URL",
    "TOKEN_PATH",
    "Chat",
    "Outcome",
    "Request",
    "build_headers",
    "classify",
    "is_header_text",
    "is_header_token",
    "normalize_base_url",
    "parse_retry_after",
    "parse_token",
    "status_error",
    "token_request",
]

SITE_URL = "https://aichatonline.org"
DEFAULT_BASE_URL = "https://aichatonlineorg.erweima.ai"
CHAT_PATH = "/aichatonline/api/chat/gpt"
TOKEN_PATH = "/api/v1/user/getUniqueId"
DEFAULT_MODEL = "gpt-4o-mini"

BROWSER_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

#: How much of an error response body is read: enough to classify it and quote its start.
ERROR_BODY_LIMIT = 64 * 1024
_PREVIEW_CHARS = 300
_CHALLENGE_MARKER = b"<title>just a moment...</title>"


@dataclass(frozen=True)
class Request:
    """One HTTP request for the transport to send. The repr leaves headers out (the token)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(default=None, repr=False)
    #: Values the request carries that no error message may repeat (the token).
    secrets: tuple[str, ...] = field(default=(), repr=False)


def normalize_base_url(url: str) -> str:
    """Check that ``url`` is an ``http(s)://host[:port][/prefix]`` URL; drop a trailing slash."""
    if not isinstance(url, str):
        raise InvalidRequestError(f"base_url must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise InvalidRequestError(
            f"base_url must look like 'https://host[:port]', got {url!r}", field="base_url"
        )
    if "?" in rest or "#" in rest:
        raise InvalidRequestError("base_url must not contain a query or fragment", field="base_url")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def build_headers(base_url: str, user_agent: str | None = None) -> dict[str, str]:
    """The browser-like headers the original provider sent, with a replaceable User-Agent."""
    return {
        "User-Agent": user_agent or BROWSER_USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "Accept-Language": "en-US,en;q=0.5",
        "Referer": f"{base_url}/chatgpt/chat/",
        "Origin": base_url,
        "Sec-Fetch-Dest": "empty",
        "Sec-Fetch-Mode": "cors",
        "Sec-Fetch-Site": "same-origin",
    }


def token_request(base_url: str, headers: Mapping[str, str]) -> Request:
    """``GET {base}/api/v1/user/getUniqueId?canvas=-<10 chars>``: ask for a unique id."""
    url = f"{base_url}{TOKEN_PATH}?canvas=-{get_random_string(10)}"
    return Request("GET", url, headers)


def parse_token(body: bytes) -> str:
    """The unique id from a 200 token response; a :class:`ProtocolError` if it has none."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"the token response is not JSON: {_preview(body)}") from exc
    token = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise ProtocolError("the token response has no non-empty string 'data' field")
    if not is_header_token(token):
        raise ProtocolError("the token response's 'data' cannot be sent as a header value")
    return token


def is_header_token(value: str) -> bool:
    """Whether ``value`` can travel as a token header: visible ASCII, no spaces."""
    return bool(value) and all("!" <= char <= "~" for char in value)


def is_header_text(value: str) -> bool:
    """Whether ``value`` can travel as a header value like User-Agent: printable ASCII."""
    return all(" " <= char <= "~" for char in value)


@dataclass(frozen=True)
class Chat:
    """One chat call: what stays the same across all of its attempts.

    A re-sent request carries the same ``conversationId`` and prompt, which is
    what lets a dropped stream be resumed.
    """

    base_url: str
    headers: Mapping[str, str] = field(repr=False)
    prompt: str = field(repr=False)
    conversation_id: str = field(default_factory=get_random_string)
    #: The JSON body, built once (at construction, so that text which cannot
    #: be encoded fails before any I/O) and sent with every attempt.
    body: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        payload = {"conversationId": self.conversation_id, "prompt": self.prompt}
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        try:
            body = text.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 for it
            raise InvalidRequestError(
                f"the messages contain text that is not valid Unicode ({exc.reason})",
                field="messages",
            ) from None
        object.__setattr__(self, "body", body)  # frozen: set once, here

    def request(self, token: str) -> Request:
        """The chat request, authenticated by ``token``."""
        headers = {**self.headers, "Content-Type": "application/json", "UniqueId": token}
        return Request("POST", f"{self.base_url}{CHAT_PATH}", headers, self.body, (token,))


class Outcome(Enum):
    """What a response status means for the caller."""

    OK = "ok"
    TOKEN_REJECTED = "token rejected"
    BLOCKED = "blocked by a Cloudflare challenge"
    RATE_LIMITED = "rate limited"
    TRANSIENT = "transient"
    FATAL = "fatal"


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
    """Classify a response by status, headers and the start of its body (PROTOCOL.md)."""
    if 200 <= status < 300:
        return Outcome.OK
    if status in (403, 503) and _is_challenge(headers, body):
        return Outcome.BLOCKED
    if status in (401, 403):
        return Outcome.TOKEN_REJECTED
    if status in (402, 429):
        return Outcome.RATE_LIMITED
    if status in (408, 409) or status >= 500:
        return Outcome.TRANSIENT
    return Outcome.FATAL


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    secrets: tuple[str, ...] = (),
) -> APIStatusError:
    """The typed error for a response that is not a success.

    ``headers`` must be case-insensitive (httpx's are) or use lower-case names.
    ``secrets`` (the token sent) are masked if the body echoes them.
    """
    outcome = classify(status, headers, body)
    preview = redact(_preview(body), *secrets)
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown Status"
    message = f"HTTP {status} {phrase}"
    if outcome is Outcome.BLOCKED:
        return BlockedError(
            f"{message}: blocked by the site's Cloudflare bot protection (a challenge page)",
            status_code=status,
            body=preview,
        )
    if preview:
        message = f"{message}: {preview}"
    if outcome is Outcome.TOKEN_REJECTED:
        return AuthenticationError(message, status_code=status, body=preview)
    if outcome is Outcome.RATE_LIMITED:
        retry_after = parse_retry_after(headers.get("retry-after"), now=now)
        return RateLimitError(message, status_code=status, body=preview, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status_code=status, body=preview)
    return APIStatusError(message, status_code=status, body=preview)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _is_challenge(headers: Mapping[str, str], body: bytes) -> bool:
    if headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    return _CHALLENGE_MARKER in body[:ERROR_BODY_LIMIT].lower()


def _preview(body: bytes) -> str:
    text = body[: _PREVIEW_CHARS * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:_PREVIEW_CHARS] + ("…" if len(text) > _PREVIEW_CHARS else "")
