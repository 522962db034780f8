"""Where settings come from when the caller does not give them, and how secrets are hidden.

``base_url``: the argument, then ``AICHATONLINE_BASE_URL``, then the real
service. ``proxy``: the argument, then ``AICHATONLINE_PROXY``; otherwise
httpx's own handling of ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``
applies. :func:`redact` keeps tokens and proxy credentials out of every log
line, repr and error message.
"""

from __future__ import annotations

import os
import re

from ._core import DEFAULT_BASE_URL, normalize_base_url
from ._exceptions import InvalidRequestError

__all__ = ["BASE_URL_ENV", "PROXY_ENV", "redact", "resolve_base_url", "resolve_proxy"]

BASE_URL_ENV = "AICHATONLINE_BASE_URL"
PROXY_ENV = "AICHATONLINE_PROXY"
_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def resolve_base_url(base_url: str | None) -> str:
    """The API base URL to use, validated and without a trailing slash."""
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return normalize_base_url(base_url)


def resolve_proxy(proxy: str | None) -> str | None:
    """The explicit proxy URL to use, if any (validated)."""
    if proxy is None:
        proxy = os.environ.get(PROXY_ENV) or None
    if proxy is None:
        return None
    if not isinstance(proxy, str):
        raise InvalidRequestError(
            f"proxy must be a URL string, not {type(proxy).__name__}", field="proxy"
        )
    scheme, sep, rest = proxy.partition("://")
    if not sep or scheme.lower() not in _PROXY_SCHEMES or not rest.strip("/"):
        raise InvalidRequestError(
            f"proxy must be an http://, https:// or socks5:// URL, got {redact(proxy)!r}",
            field="proxy",
        )
    return proxy


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with URL credentials and each of ``secrets`` replaced by ``***``."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
