"""Where settings come from when the caller does not give them, and how proxies are read.

``base_url``: the argument, then ``AICHATONLINE_BASE_URL``, then the real service.
``proxy``: the argument, then ``AICHATONLINE_PROXY``; without either, the standard
``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and ``NO_PROXY`` are httpx's business (its
``trust_env``), as for any httpx client.

A proxy URL becomes a :class:`ProxyURL`: its parts, its credentials percent-decoded, and a
``shown`` form with the credentials replaced by ``***`` whatever characters they hold (the
URL is taken apart, not searched with a pattern), for reprs, logs and errors.

``AICHATONLINE_LOG=info`` (retries) or ``debug`` (also skipped stream lines and ignored
options) shows the ``aichatonline`` logger's lines on stderr, as ``OPENAI_LOG`` does for
openai-python (:func:`log_from_env`, run by ``import aichatonline``); the command line's
``-v`` uses the same handler (:func:`log_to_stderr`). Lines pass through :func:`redact`, a
second guard after the SDK's own masking of tokens and credentials.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from ._core import DEFAULT_BASE_URL, normalize_base_url, redact
from ._exceptions import InvalidRequestError

__all__ = [
    "BASE_URL_ENV",
    "LOG_ENV",
    "PROXY_ENV",
    "ProxyURL",
    "environment_proxy_secrets",
    "log_from_env",
    "log_to_stderr",
    "redact",
    "resolve_base_url",
    "resolve_proxy",
]

BASE_URL_ENV = "AICHATONLINE_BASE_URL"
PROXY_ENV = "AICHATONLINE_PROXY"
LOG_ENV = "AICHATONLINE_LOG"
#: ``AICHATONLINE_LOG``'s values.
LOG_LEVELS = {"info": logging.INFO, "debug": logging.DEBUG}
#: The format of ``AICHATONLINE_LOG``'s lines: when, how grave, which logger, what.
LOG_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"
_PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# An OpenAI-style path at the end of a base URL: (the prefix before it, the part itself).
_OPENAI_PATH = re.compile(r"(.*?)(/v1(?:/chat/completions)?)/?", re.IGNORECASE)


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
    """The API base URL to use, validated and without a trailing slash.

    A URL whose path ends in ``/v1`` (or ``/v1/chat/completions``) is refused here, before
    any I/O: that is the shape of an OpenAI-compatible URL (most often this package's own
    gateway, given to the SDK by mistake), and the service has no such prefix (its paths
    are ``/api/v1/...`` and ``/aichatonline/api/...`` from its origin), so every request
    would end in a bare 404. The message names the URL to use instead, and says when the
    bad one came from the environment.
    """
    from_env = False
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV) or None
        from_env = base_url is not None
        base_url = base_url or DEFAULT_BASE_URL
    source = f" (from ${BASE_URL_ENV})" if from_env else ""
    try:
        url = normalize_base_url(base_url)
    except InvalidRequestError as exc:
        if not from_env:
            raise
        raise InvalidRequestError(f"{exc}{source}", field="base_url") from None
    scheme, _, rest = url.partition("://")
    origin, slash, path = rest.partition("/")
    openai_style = _OPENAI_PATH.fullmatch(slash + path)
    if openai_style is not None:
        suggestion = f"{scheme}://{origin}{openai_style.group(1)}"
        raise InvalidRequestError(
            f"base_url {redact(url)!r}{source} ends in {openai_style.group(2)}, the path of an "
            "OpenAI-compatible API (such as `aichatonline gateway`, for OpenAI clients); this "
            "SDK talks to the AiChatOnline service itself, from its origin: did you mean "
            f"{suggestion!r}?",
            field="base_url",
        )
    return url


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


# --------------------------------------------------------------------------- logging


class _RedactingFormatter(logging.Formatter):
    """Log lines with URL credentials hidden (the SDK hides them too: a second guard)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _StderrHandler(logging.Handler):
    """The one handler the SDK itself puts on its logger (found again by its class).

    It writes to ``sys.stderr`` as it is at each line, not as it was when the handler was
    made (at import, for ``AICHATONLINE_LOG``): pytest's capture and redirections swap it.
    """

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.setFormatter(_RedactingFormatter(fmt, datefmt="%Y-%m-%d %H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 (logging's contract: handleError reports it)
            self.handleError(record)


def log_to_stderr(level: int, fmt: str = LOG_FORMAT) -> Callable[[], None]:
    """Show the ``aichatonline`` logger's lines from ``level`` up on stderr; returns the undo.

    One handler at most: called again (``AICHATONLINE_LOG`` and the command line's ``-v``
    together), the existing one is kept and the lower level wins, so no line shows twice.
    The undo puts the logger's level back and removes the handler if this call added it.
    """
    logger = logging.getLogger("aichatonline")
    previous = logger.level
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    added = handler is None
    if handler is None:
        handler = _StderrHandler(fmt)
        logger.addHandler(handler)
    logger.setLevel(min(level, previous) if previous else level)

    def undo() -> None:
        logger.setLevel(previous)
        if added:
            logger.removeHandler(handler)

    return undo


def log_from_env() -> None:
    """Act on ``AICHATONLINE_LOG``: ``info`` or ``debug`` (any case); unset or empty: nothing.

    Another value is named in a warning and ignored (an import must not fail over it).
    """
    value = os.environ.get(LOG_ENV, "").strip()
    if not value:
        return
    level = LOG_LEVELS.get(value.lower())
    if level is None:
        warnings.warn(
            f"{LOG_ENV}={value!r} is ignored: use info or debug", RuntimeWarning, stacklevel=3
        )
        return
    log_to_stderr(level)
