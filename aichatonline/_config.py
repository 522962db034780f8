"""Where settings come from when the caller does not give them, and how secrets are hidden.

``base_url``: the argument, then ``AICHATONLINE_BASE_URL``, then the real
service. ``proxy``: the argument, then ``AICHATONLINE_PROXY``, then the
standard ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (minus ``NO_PROXY``) for
the base URL, read by the standard library's ``urllib.request.getproxies``
(which on macOS and Windows also sees the system's proxy settings).
:func:`redact` keeps tokens and proxy credentials out of every log line,
repr and error message.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.request

import httpx

from ._core import DEFAULT_BASE_URL, normalize_base_url, redact
from ._exceptions import InvalidRequestError

__all__ = ["BASE_URL_ENV", "PROXY_ENV", "redact", "resolve_base_url", "resolve_proxy"]

BASE_URL_ENV = "AICHATONLINE_BASE_URL"
PROXY_ENV = "AICHATONLINE_PROXY"
_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def resolve_base_url(base_url: str | None) -> str:
    """The API base URL to use, validated and without a trailing slash."""
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return normalize_base_url(base_url)


def resolve_proxy(proxy: str | None, base_url: str | None = None) -> str | None:
    """The proxy URL to use for ``base_url``, if any (validated).

    The argument, then ``AICHATONLINE_PROXY``, then (for ``base_url``) the
    standard variables: ``HTTPS_PROXY``/``HTTP_PROXY``, ``ALL_PROXY``, and
    ``NO_PROXY`` to bypass.
    """
    if proxy is None:
        proxy = os.environ.get(PROXY_ENV) or None
    if proxy is None and base_url is not None:
        proxy = _environment_proxy(base_url)
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
    try:
        httpx.URL(proxy)
    except (httpx.InvalidURL, ValueError, TypeError):
        # Not chained: httpx's message would repeat the URL, credentials and all.
        raise InvalidRequestError(
            f"proxy is not a valid URL: {redact(proxy)!r}", field="proxy"
        ) from None
    if scheme.lower().startswith("socks") and importlib.util.find_spec("socksio") is None:
        # Said now, not as an ImportError from deep inside the first request.
        raise InvalidRequestError(
            'a socks5:// proxy needs the socks extra: pip install "aichatonline[socks]"',
            field="proxy",
        )
    return proxy


def _environment_proxy(base_url: str) -> str | None:
    # The SDK talks to one origin only, so the proxy can be chosen once for it.
    scheme, _, rest = base_url.partition("://")
    host = rest.split("/", 1)[0]
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
