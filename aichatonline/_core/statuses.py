"""What a response status means, and the typed error for one that is not a success. No I/O.

The one status table of ``docs/protocol.md`` is :func:`classify`: a status, the headers and
the start of the body become an :class:`Outcome` (a Cloudflare challenge page is told from
a refused token by its header or its title). :func:`status_error` turns a refused response
into its typed error (``AuthenticationError``, ``BlockedError``, ``RateLimitError``,
``ServerError``, ``APIStatusError``), with the start of the body quoted, the server's
``Retry-After`` read (:func:`parse_retry_after`) and every secret masked.
"""

from __future__ import annotations

import http
import time
from collections.abc import Mapping
from enum import Enum

from .._exceptions import (
    APIStatusError,
    AuthenticationError,
    BlockedError,
    RateLimitError,
    ServerError,
)
from .redact import redact
from .request import Request

__all__ = [
    "ERROR_BODY_LIMIT",
    "RETRYABLE",
    "Outcome",
    "body_preview",
    "classify",
    "parse_retry_after",
    "status_error",
]

#: How much of an error response body is read: enough to classify it and quote its start.
ERROR_BODY_LIMIT = 64 * 1024
_PREVIEW_CHARS = 300
_CHALLENGE_MARKER = b"<title>just a moment...</title>"


class Outcome(Enum):
    """What a response status means for the call: the one status table of docs/protocol.md."""

    OK = "ok"
    TOKEN_REJECTED = "token rejected"
    BLOCKED = "blocked by a Cloudflare challenge"
    RATE_LIMITED = "rate limited"
    TRANSIENT = "transient"
    REDIRECTED = "redirected"
    FATAL = "fatal"


def classify(status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
    """Classify a response by status, headers and the start of its body (docs/protocol.md).

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
    preview = redact(body_preview(body), *secrets)
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


def body_preview(body: bytes) -> str:
    """The start of ``body`` as one line of text, for a message (at most 300 characters)."""
    text = body[: _PREVIEW_CHARS * 4].decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:_PREVIEW_CHARS] + ("…" if len(text) > _PREVIEW_CHARS else "")
