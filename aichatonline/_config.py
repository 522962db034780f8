"""Where settings come from when the caller does not give them, and how proxies are read.

``base_url``: the argument, then ``AICHATONLINE_BASE_URL``, then the real service.
``proxy``: the argument, then ``AICHATONLINE_PROXY``; without either, the standard
``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` are httpx's business (its
``trust_env``), as for any httpx client.

A proxy URL becomes a :class:`ProxyURL`: its parts, its credentials percent-decoded, and a
``shown`` form with the credentials replaced by ``***`` whatever characters they hold (the
URL is taken apart, not searched with a pattern), for reprs, logs and errors.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from ._core import DEFAULT_BASE_URL, normalize_base_url, redact
from ._exceptions import InvalidRequestError

__all__ = [
    "BASE_URL_ENV",
    "PROXY_ENV",
    "ProxyURL",
    "environment_proxy_secrets",
    "redact",
    "resolve_base_url",
    "resolve_proxy",
]

BASE_URL_ENV = "AICHATONLINE_BASE_URL"
PROXY_ENV = "AICHATONLINE_PROXY"
_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


@dataclass(frozen=True)
class ProxyURL:
    """A proxy: scheme (http, https, socks5), host, port, and optional credentials."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    #: The URL as given (credentials and all): never shown.
    url: str = field(default="", repr=False, compare=False)

    @property
    def shown(self) -> str:
        """The URL with its credentials masked, for messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        userinfo = "***@" if self.username is not None or self.password is not None else ""
        return f"{self.scheme}://{userinfo}{host}:{self.port}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credentials, to mask wherever a message might repeat them: the password, and
        ``user:password`` as it travels (base64, in ``Proxy-Authorization``).

        Next to a password the username is not a secret (httpx shows it too), and masking
        it would garble messages; without one, it is the credential (an API key given as
        the username) and is masked instead.
        """
        secret = self.password or self.username
        if not secret:
            return ()
        pair = f"{self.username or ''}:{self.password or ''}".encode()
        return (secret, base64.b64encode(pair).decode("ascii"))

    def for_httpx(self) -> Any:
        """An ``httpx.Proxy``: the URL without credentials, and the credentials as ``auth``
        (so a password holding ``/``, ``@`` or ``:`` reaches the proxy whole)."""
        import httpx

        host = f"[{self.host}]" if ":" in self.host else self.host
        url = f"{self.scheme}://{host}:{self.port}"
        if self.username is None and self.password is None:
            return httpx.Proxy(url)
        return httpx.Proxy(url, auth=(self.username or "", self.password or ""))

    def __repr__(self) -> str:
        return f"ProxyURL({self.shown!r})"


def resolve_base_url(base_url: str | None) -> str:
    """The API base URL to use, validated and without a trailing slash."""
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return normalize_base_url(base_url)


def resolve_proxy(proxy: str | None, *, trust_env: bool = True) -> ProxyURL | None:
    """The proxy the SDK gives its httpx client, if any (validated).

    The argument, then (unless ``trust_env`` is false) ``AICHATONLINE_PROXY``. The
    standard variables are left to httpx.
    """
    if proxy is None and trust_env:
        proxy = os.environ.get(PROXY_ENV) or None
    if proxy is None:
        return None
    return parse_proxy(proxy)


def environment_proxy_secrets() -> tuple[str, ...]:
    """The credentials of every proxy the environment names (``*_PROXY`` variables), to mask
    wherever a message might repeat them."""
    secrets: list[str] = []
    for name, value in os.environ.items():
        if name.lower().endswith("_proxy") and "@" in value:
            with contextlib.suppress(InvalidRequestError):
                secrets += parse_proxy(value if "://" in value else f"http://{value}").secrets
    return tuple(secrets)


def parse_proxy(proxy: object) -> ProxyURL:
    """Take a proxy URL apart; an :class:`InvalidRequestError` that never repeats it if bad.

    The credentials end at the last ``@`` (a password may hold ``/``, ``?``, ``#`` or ``@``
    unencoded), and a message about a bad URL shows only what cannot be part of them.
    """
    if not isinstance(proxy, str):
        raise InvalidRequestError(
            f"proxy must be a URL string, not {type(proxy).__name__}", field="proxy"
        )
    scheme, sep, rest = proxy.strip().partition("://")
    if not sep or _SCHEME.fullmatch(scheme) is None:
        raise InvalidRequestError(
            "proxy must be an http://, https:// or socks5:// URL (got a value without a "
            "scheme; it is not repeated, as it may hold credentials)",
            field="proxy",
        )
    scheme = scheme.lower()
    userinfo, at, hostport = _split_authority(rest)
    shown = _shown(scheme, at, hostport)
    if scheme not in _PROXY_SCHEMES or not rest.strip("/"):
        raise InvalidRequestError(
            f"proxy must be an http://, https:// or socks5:// URL (got {shown!r})",
            field="proxy",
        )
    if any(char <= " " or char == "\x7f" for char in hostport):
        raise InvalidRequestError(f"proxy is not a valid URL: {shown!r}", field="proxy")
    parts, port = _host_and_port(scheme, hostport)
    if parts is None:
        # Raised outside the ValueError's handler: its message quotes the port, which may
        # be a password (``http://user:password``), and must not ride along as context.
        raise InvalidRequestError(f"proxy is not a valid URL: {shown!r}", field="proxy")
    if not parts.hostname:
        raise InvalidRequestError(f"proxy has no host: {shown!r}", field="proxy")
    username = password = None
    if at:
        name, colon, secret = userinfo.partition(":")
        username = unquote(name)
        password = unquote(secret) if colon else None
    if scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
        # Said now, not as an ImportError from deep inside the first request.
        raise InvalidRequestError(
            'a socks5:// proxy needs the socks extra: pip install "aichatonline[socks]"',
            field="proxy",
        )
    return ProxyURL(
        scheme=scheme,
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[scheme],
        username=username,
        password=password,
        url=proxy,
    )


def _host_and_port(scheme: str, hostport: str) -> tuple[SplitResult | None, int | None]:
    """``hostport`` taken apart, or ``(None, None)`` if it is no ``host[:port]``."""
    try:
        parts = urlsplit(f"{scheme}://{hostport}")
        return parts, parts.port
    except ValueError:
        return None, None


def _split_authority(rest: str) -> tuple[str, str, str]:
    """``(userinfo, "@" or "", host[:port])`` of what follows ``scheme://``.

    The userinfo ends at the *last* ``@``: one in a password (or a ``/`` before it, which
    would end the authority by the URL rules) must not make part of it the host.
    """
    userinfo, at, after = rest.rpartition("@")
    hostport = after.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return userinfo, at, hostport


def _shown(scheme: str, at: str, hostport: str) -> str:
    """A proxy URL for a message: the scheme, ``***@`` for credentials, and the host.

    Only what is certainly not a credential: the port is left out, as in a URL without
    credentials (``http://user:password``, the host forgotten) it would be the password.
    """
    if hostport.startswith("["):
        host = hostport.partition("]")[0] + "]" if "]" in hostport else "["
    else:
        host = hostport.partition(":")[0]
    return f"{scheme}://{'***@' if at else ''}{host}"
