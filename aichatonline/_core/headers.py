"""The headers of a request: the SDK's own, the caller's extra ones, and what a header
value may hold. No I/O.

The SDK sends the browser-like headers the original provider sent (its User-Agent
replaceable). A caller's extra headers are checked before any I/O: names that are HTTP
tokens, values of printable ASCII, and none of the headers that are the SDK's to set.
"""

from __future__ import annotations

from collections.abc import Mapping

from .._exceptions import InvalidRequestError

__all__ = [
    "BROWSER_USER_AGENT",
    "build_headers",
    "check_headers",
    "is_header_text",
    "is_header_token",
]

BROWSER_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


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


def is_header_token(value: str) -> bool:
    """Whether ``value`` can travel as a token header: visible ASCII, no spaces."""
    return bool(value) and all("!" <= char <= "~" for char in value)


def is_header_text(value: str) -> bool:
    """Whether ``value`` can travel as a header value like User-Agent: printable ASCII."""
    return all(" " <= char <= "~" for char in value)


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
