"""What goes on the wire and what comes back, as plain data. No I/O.

Requests are described as :class:`Request` values (method, URL, headers,
body) for the transport to send; responses come back as a status, headers and
(the start of) a body, and are turned here into a token, or a typed error.
Every URL, header, body shape and status rule of PROTOCOL.md lives in this file.
"""

from __future__ import annotations

import http
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import quote, urlsplit

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
    "EXPANSION_LIMIT",
    "MODELS",
    "MODEL_ALIASES",
    "RETRYABLE",
    "SITE_URL",
    "TOKEN_PATH",
    "Chat",
    "Outcome",
    "Request",
    "build_headers",
    "check_content_encoding",
    "check_expansion",
    "check_headers",
    "classify",
    "is_header_text",
    "is_header_token",
    "normalize_base_url",
    "parse_retry_after",
    "parse_token",
    "resolve_model",
    "status_error",
    "token_request",
]

SITE_URL = "https://aichatonline.org"
DEFAULT_BASE_URL = "https://aichatonlineorg.erweima.ai"
CHAT_PATH = "/aichatonline/api/chat/gpt"
TOKEN_PATH = "/api/v1/user/getUniqueId"
DEFAULT_MODEL = "gpt-4o-mini"
#: The models the service answers as (it has one; the request carries no model field).
MODELS: tuple[str, ...] = (DEFAULT_MODEL,)
#: Other names accepted for them.
MODEL_ALIASES: Mapping[str, str] = {"gpt-4o-mini-2024-07-18": DEFAULT_MODEL}

BROWSER_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

#: How much of an error response body is read: enough to classify it and quote its start.
ERROR_BODY_LIMIT = 64 * 1024
#: The most one network read of a compressed body may expand to: 16 MiB. httpx undoes the
#: content coding a read at a time (at most 64 KiB through httpcore, 16 KiB through
#: aiohttp); an NDJSON answer compresses some tenfold, so a read that expands past this is
#: a decompression bomb, not an answer.
EXPANSION_LIMIT = 16 * 1024 * 1024
#: The content codings we ask for (``Accept-Encoding: gzip, deflate``) and can read.
_CODINGS = frozenset({"gzip", "x-gzip", "deflate", "identity"})
_PREVIEW_CHARS = 300
# A str as a JSON string literal, non-ASCII kept (json's own C encoder).
_json_string = json.encoder.encode_basestring
_CHALLENGE_MARKER = b"<title>just a moment...</title>"
_BRACKETED_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\](?::[0-9]*)?")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@dataclass(frozen=True)
class Request:
    """One HTTP request for the transport to send. The repr leaves headers out (the token)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(default=None, repr=False)
    #: Values the request carries that no error message may repeat (the token).
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def shown_url(self) -> str:
        """The URL for messages: the query left out (it holds nothing the reader needs)."""
        return self.url.partition("?")[0]


def resolve_model(model: str | None) -> str:
    """The service's name for ``model``: empty or ``None`` means the default; aliases resolve.

    An unknown model is an :class:`InvalidRequestError` naming the models there are.
    """
    if model is None or model == "":
        return DEFAULT_MODEL
    if not isinstance(model, str):
        raise InvalidRequestError(
            f"model must be a string, not {type(model).__name__}", field="model"
        )
    if model in MODELS:
        return model
    alias = MODEL_ALIASES.get(model)
    if alias is not None:
        return alias
    raise InvalidRequestError(
        f"model {model!r} is not supported; choose one of {', '.join(MODELS)}", field="model"
    )


def normalize_base_url(url: str) -> str:
    """Check that ``url`` is an ``http(s)://host[:port][/prefix]`` URL; drop a trailing slash.

    Everything a request would trip over later is refused now, as an
    :class:`InvalidRequestError`: control characters or spaces, a malformed IPv6 host, a
    port out of range, a query or fragment, and credentials (``user:pass@``: the service
    has no such authentication, and they would show wherever the URL is shown; the message
    never repeats them). A non-ASCII host is IDNA-encoded (``xn--``) and a non-ASCII path
    percent-encoded as UTF-8, as a browser would: what goes on the wire is ASCII.
    """
    if not isinstance(url, str):
        raise InvalidRequestError(
            f"base_url must be a string, not {type(url).__name__}", field="base_url"
        )
    url = url.strip()
    shown = redact(url)
    if any(char <= " " or char == "\x7f" for char in url):
        raise InvalidRequestError(
            f"base_url must not contain spaces or control characters, got {shown!r}",
            field="base_url",
        )
    if "@" in url:
        # Credentials (user:password@), or something that reads like them: refused, and
        # the URL is not repeated (a password may hold any character, "/" included).
        raise InvalidRequestError(
            "base_url must not contain credentials (user:password@) or an '@'",
            field="base_url",
        )
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise InvalidRequestError(
            f"base_url must look like 'https://host[:port]', got {shown!r}"
            + _did_you_mean(url, sep),
            field="base_url",
        )
    if not rest.isascii():
        # What goes on the wire is ASCII: an IDNA host, a percent-encoded UTF-8 path.
        rest = _ascii_rest(rest, shown)
        url = f"{scheme}://{rest}"
    netloc = rest.split("/", 1)[0]
    if netloc.startswith("[") and _BRACKETED_HOST.fullmatch(netloc) is None:
        raise InvalidRequestError(
            f"base_url has a malformed IPv6 host: {shown!r}", field="base_url"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise InvalidRequestError(
            f"base_url is not a valid URL ({exc}): {shown!r}", field="base_url"
        ) from None
    if not parts.hostname:
        raise InvalidRequestError(f"base_url has no host: {shown!r}", field="base_url")
    if port == 0:
        raise InvalidRequestError(f"base_url has port 0: {shown!r}", field="base_url")
    if parts.query or parts.fragment or "?" in rest or "#" in rest:
        raise InvalidRequestError("base_url must not contain a query or fragment", field="base_url")
    return f"{scheme.lower()}://{rest.rstrip('/')}"


_LOOPBACK = re.compile(r"(?:localhost|127(?:\.\d+){3}|\[::1\]|0\.0\.0\.0)(?::\d*)?(?:/.*)?")


def _did_you_mean(url: str, sep: str) -> str:
    """A suggestion for a base URL written without its scheme (``localhost:8000``).

    Loopback addresses get ``http://`` (a local server seldom has TLS), others
    ``https://``. Only for a plain ``host[:port][/path]`` (the URL holds no ``@``: it was
    refused before), so the suggestion repeats nothing that could be a secret.
    """
    if sep or not url or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+(?:/[^\s]*)?", url):
        return ""
    scheme = "http" if _LOOPBACK.fullmatch(url.lower()) else "https"
    return f"; did you mean '{scheme}://{url}'?"


def _ascii_rest(rest: str, shown: str) -> str:
    """``host[:port][/path]`` in ASCII: the host IDNA-encoded, the path's non-ASCII
    characters percent-encoded as UTF-8 (``%XX`` escapes and ``/`` kept as they are)."""
    netloc, slash, path = rest.partition("/")
    if not netloc.isascii():
        host, colon, port = netloc, "", ""
        if not netloc.startswith("["):
            head, colon, tail = netloc.rpartition(":")
            if colon:
                host, port = head, tail
        if not port.isascii():
            raise InvalidRequestError(
                f"base_url has a port that is not a number: {shown!r}", field="base_url"
            )
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:  # an empty or too long label, a prohibited character
            raise InvalidRequestError(
                f"base_url has a host name that cannot be encoded for DNS (IDNA): {shown!r}",
                field="base_url",
            ) from None
        netloc = f"{host}{colon}{port}"
    try:
        path = _NON_ASCII.sub(lambda match: quote(match.group(), safe=""), path)
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it
        raise InvalidRequestError(
            f"base_url has a path that is not valid Unicode: {shown!r}", field="base_url"
        ) from None
    return f"{netloc}{slash}{path}"


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
        raise ProtocolError(
            f"the token response is not JSON: {_preview(body)}", retryable=True
        ) from exc
    token = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token.strip():
        raise ProtocolError(
            "the token response has no non-empty string 'data' field", retryable=True
        )
    if not is_header_token(token):
        raise ProtocolError(
            "the token response's 'data' cannot be sent as a header value", retryable=True
        )
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
        # json.dumps of the two-key object, spelled out: the same bytes, a third the time.
        text = (
            f'{{"conversationId":{_json_string(self.conversation_id)},'
            f'"prompt":{_json_string(self.prompt)}}}'
        )
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


_RESERVED_HEADERS = frozenset(
    {"uniqueid", "host", "content-length", "content-type", "transfer-encoding"}
)


def check_headers(headers: Mapping[str, str] | None, what: str = "extra_headers") -> dict[str, str]:
    """Validate headers the caller adds to a request (before any I/O); return them as a dict.

    Names must be HTTP tokens and values printable ASCII. The token header and the ones
    that frame the request (``Host``, ``Content-Type``, ``Content-Length``,
    ``Transfer-Encoding``) are the SDK's to set.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidRequestError(
            f"{what} must be a mapping of names to values, not {type(headers).__name__}",
            field=what,
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not all(c in _TOKEN_CHARS for c in name):
            raise InvalidRequestError(f"{what}: {name!r} is not a header name", field=what)
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidRequestError(
                f"{what}: the SDK sets {name!r} itself; it cannot be given", field=what
            )
        if not isinstance(value, str) or not is_header_text(value):
            raise InvalidRequestError(
                f"{what}: the value of {name!r} must be a string of printable ASCII",
                field=what,
            )
        checked[name] = value
    return checked


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class Outcome(Enum):
    """What a response status means for the call: the one status table of PROTOCOL.md."""

    OK = "ok"
    TOKEN_REJECTED = "token rejected"
    BLOCKED = "blocked by a Cloudflare challenge"
    RATE_LIMITED = "rate limited"
    TRANSIENT = "transient"
    REDIRECTED = "redirected"
    FATAL = "fatal"


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
    """Classify a response by status, headers and the start of its body (PROTOCOL.md).

    ``headers`` must be case-insensitive or use lower-case names.
    """
    if 200 <= status < 300:
        return Outcome.OK
    if status in (403, 503) and _is_challenge(headers, body):
        return Outcome.BLOCKED
    if status in (401, 403):
        return Outcome.TOKEN_REJECTED
    if status == 429 or (status == 402 and "retry-after" in headers):
        return Outcome.RATE_LIMITED
    if status in (408, 409) or status >= 500:
        return Outcome.TRANSIENT
    if 300 <= status < 400:
        return Outcome.REDIRECTED
    return Outcome.FATAL


#: The outcomes worth another attempt (the retry policy still weighs ``Retry-After``).
RETRYABLE = frozenset({Outcome.RATE_LIMITED, Outcome.TRANSIENT})


def status_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    secrets: tuple[str, ...] = (),
    request: Request | None = None,
) -> APIStatusError:
    """The typed error for a response that is not a success.

    ``headers`` must be case-insensitive or use lower-case names. ``secrets`` (the token
    sent) are masked if the body echoes them; ``request`` is the request that got this
    answer (its method and URL go into the error, the query left out).
    """
    secrets = (*secrets, *(request.secrets if request is not None else ()))
    lowered = {name.lower(): redact(value, *secrets) for name, value in headers.items()}
    outcome = classify(status, lowered, body)
    preview = redact(_preview(body), *secrets)
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown Status"
    message = f"HTTP {status} {phrase}"
    details = {
        "status_code": status,
        "body": preview,
        "headers": lowered,
        "method": request.method if request is not None else None,
        "url": redact(request.shown_url, *secrets) if request is not None else None,
        "retry_after": parse_retry_after(lowered.get("retry-after"), now=now),
        "retryable": outcome in RETRYABLE,
    }
    if outcome is Outcome.BLOCKED:
        return BlockedError(
            f"{message}: blocked by the site's Cloudflare bot protection (a challenge page)",
            **details,  # type: ignore[arg-type]
        )
    if outcome is Outcome.REDIRECTED:
        where = redact(lowered.get("location", "?"), *secrets)
        return APIStatusError(
            f"{message}: the service redirected to {where!r}; redirects are not followed "
            "(the token and the prompt go to the configured base URL only)",
            **details,  # type: ignore[arg-type]
        )
    if preview:
        message = f"{message}: {preview}"
    if outcome is Outcome.TOKEN_REJECTED:
        return AuthenticationError(message, **details)  # type: ignore[arg-type]
    if status in (402, 429):
        return RateLimitError(message, **details)  # type: ignore[arg-type]
    if status >= 500:
        return ServerError(message, **details)  # type: ignore[arg-type]
    return APIStatusError(message, **details)  # type: ignore[arg-type]


def check_content_encoding(value: str | None) -> None:
    """Refuse a body in a coding we did not ask for (httpx would pass it on undecoded).

    Any list of gzip and deflate is fine, in any order: httpx undoes each.
    """
    if value is None:
        return
    codings = [part.strip().lower() for part in value.split(",") if part.strip()]
    if not set(codings) <= _CODINGS:
        raise ProtocolError(
            f"the body is encoded as {value!r}, which was not asked for (only gzip and "
            "deflate are)",
            retryable=False,
        )


def check_expansion(decoded: int) -> None:
    """Refuse a decoded chunk of the body larger than :data:`EXPANSION_LIMIT`.

    What one network read expands to is in memory at once (deflate reaches about a
    thousandfold: some 64 MiB for a read of 64 KiB), and is gone once the decoder has read
    it; a body that expands like that is refused at its first such read.
    """
    if decoded > EXPANSION_LIMIT:
        raise ProtocolError(
            f"one read of the compressed body expands to {decoded} bytes, past the limit of "
            f"{EXPANSION_LIMIT}: refused (a decompression bomb)",
            retryable=False,
        )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime  # rare: imported when first needed

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
