"""Where the service is, and checking a base URL before any request goes there. No I/O.

:func:`normalize_base_url` refuses, before any I/O, every base URL a request would trip
over later (or that would leak credentials), and turns a non-ASCII one into what goes on
the wire: an IDNA host and a percent-encoded UTF-8 path, as a browser would.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from .._exceptions import InvalidRequestError
from .redact import redact

__all__ = ["DEFAULT_BASE_URL", "SITE_URL", "normalize_base_url"]

SITE_URL = "https://aichatonline.org"
DEFAULT_BASE_URL = "https://aichatonlineorg.erweima.ai"

_BRACKETED_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\](?::[0-9]*)?")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


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
