"""The httpx clients a user can start from, with openai-python's names and meaning.

- :class:`DefaultHttpxClient` / :class:`DefaultAsyncHttpxClient`: an ``httpx.Client`` /
  ``httpx.AsyncClient`` with the SDK's defaults. The SDK makes one of these itself when no
  ``http_client=`` is given; make your own to add event hooks, mounts, auth, HTTP/2 or a
  transport, and pass it as ``http_client=``.
- :class:`DefaultAioHttpClient`: an ``httpx.AsyncClient`` whose transport is
  ``httpx_aiohttp.AiohttpTransport`` (the ``aiohttp`` extra), for the most streams at once
  on asyncio, as openai-python's ``DefaultAioHttpClient``.

The defaults: the SDK's per-operation time limits (connect 10 s, read 60 s, write 30 s,
pool 30 s), no cap on connections (a cap would queue one stream behind another), and
redirects never followed. Unless ``transport=`` or ``mounts=`` is given, requests are spread
over small stock httpx transports (:class:`~aichatonline._async.shards.AsyncShardedTransport`)
so that ten thousand concurrent streams cost no more per stream than ten; ``proxy``,
``verify``, ``cert``, ``trust_env``, ``http1``, ``http2`` and ``limits`` mean what they mean
to httpx, and ``socket_options``, ``local_address``, ``uds`` and ``retries`` what they mean
to ``httpx.HTTPTransport`` (the shards take them). Environment proxies (``HTTPS_PROXY`` and
the rest, with ``trust_env``) are httpx's own business, as always: when the environment
names one, httpx's own transports carry every request (and those four cannot be given).
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from ._async.shards import AsyncShardedTransport
from ._core import DEFAULT_TIMEOUT
from ._exceptions import InvalidRequestError
from ._sync.shards import ShardedTransport

__all__ = [
    "DEFAULT_CONNECTION_LIMITS",
    "DEFAULT_HTTPX_TIMEOUT",
    "DefaultAioHttpClient",
    "DefaultAsyncHttpxClient",
    "DefaultHttpxClient",
]

#: The SDK's per-operation time limits, as an ``httpx.Timeout``.
DEFAULT_HTTPX_TIMEOUT = httpx.Timeout(
    connect=DEFAULT_TIMEOUT.connect,
    read=DEFAULT_TIMEOUT.read,
    write=DEFAULT_TIMEOUT.write,
    pool=DEFAULT_TIMEOUT.pool,
)
#: No cap on connections (each stream holds one while it streams), 20 kept alive for 5 s.
DEFAULT_CONNECTION_LIMITS = httpx.Limits(
    max_connections=None, max_keepalive_connections=20, keepalive_expiry=5.0
)
# How many requests one stock transport carries at once. On an event loop, a few: cheap
# per stream, and a small pool's scans are short. On threads, one: the shard then knows the
# connection of its one request, which the blocking client may have to shut down.
_ASYNC_SHARD_SIZE = 8
_SYNC_SHARD_SIZE = 1
_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits")
# What httpx's transports take and its clients do not: passed to the shards only.
_SHARD_ONLY_OPTIONS = ("socket_options", "local_address", "uds", "retries")


def _with_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("timeout", DEFAULT_HTTPX_TIMEOUT)
    kwargs.setdefault("limits", DEFAULT_CONNECTION_LIMITS)
    kwargs.setdefault("follow_redirects", False)
    return kwargs


def _sharded(kwargs: dict[str, Any], kind: Any, shard_size: int) -> dict[str, Any]:
    """``kwargs`` with the requests spread over shards (unless a transport was chosen, or
    the environment names proxies)."""
    kwargs = _with_defaults(kwargs)
    if "transport" in kwargs or "mounts" in kwargs:
        return kwargs
    verify = kwargs.get("verify", True)
    if not isinstance(verify, ssl.SSLContext) and "cert" not in kwargs:
        # One context for every shard (loading the CA bundle costs milliseconds), and for
        # the stock transport httpx makes beside them.
        verify = kwargs["verify"] = _ssl_context(verify, kwargs.get("trust_env", True))
    options = {name: kwargs[name] for name in _TRANSPORT_OPTIONS if name in kwargs}
    options.update({name: kwargs.pop(name) for name in _SHARD_ONLY_OPTIONS if name in kwargs})
    options["verify"] = verify
    proxy = kwargs.pop("proxy", None)
    if proxy is not None:
        # As httpx does for proxy=: this proxy for every request, no environment proxy.
        kwargs["transport"] = kind(shard_size=shard_size, proxy=proxy, **options)
    elif not (kwargs.get("trust_env", True) and _environment_has_proxies()):
        kwargs["transport"] = kind(shard_size=shard_size, **options)
    elif any(name in options for name in _SHARD_ONLY_OPTIONS):
        raise InvalidRequestError(
            f"{', '.join(name for name in _SHARD_ONLY_OPTIONS if name in options)}: the "
            "environment names proxies, whose transports httpx makes itself; pass "
            "trust_env=False (and proxy=) or a transport of your own"
        )
    # else: the environment names proxies, which httpx applies (NO_PROXY and all) to its
    # own transports only.
    return kwargs


def _environment_has_proxies() -> bool:
    """Whether the environment names a proxy (the standard library reads it for httpx)."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def _ssl_context(verify: Any, trust_env: bool) -> ssl.SSLContext:
    if isinstance(verify, str):  # a CA bundle's path (httpx 0.28 wants a context for it)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify, trust_env=trust_env)


class DefaultHttpxClient(httpx.Client):
    """An ``httpx.Client`` with the SDK's defaults; every httpx argument is accepted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**_sharded(kwargs, ShardedTransport, _SYNC_SHARD_SIZE))


class DefaultAsyncHttpxClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` with the SDK's defaults; every httpx argument is accepted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**_sharded(kwargs, AsyncShardedTransport, _ASYNC_SHARD_SIZE))


class DefaultAioHttpClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` on aiohttp (``httpx_aiohttp.AiohttpTransport``), asyncio only.

    Needs the ``aiohttp`` extra: ``pip install "aichatonline[aiohttp]"``. ``verify``,
    ``trust_env``, ``limits`` and ``proxy`` are passed to the transport (no cap on
    connections by default, as for the other clients); the rest to ``httpx.AsyncClient``.
    """

    #: aiohttp runs on asyncio only: the SDK says so clearly when used on trio.
    asyncio_only = True

    def __init__(self, **kwargs: Any) -> None:
        try:
            import aiohttp
            from httpx_aiohttp import AiohttpTransport
        except ImportError as exc:
            raise ImportError(
                'DefaultAioHttpClient needs the aiohttp extra: pip install "aichatonline[aiohttp]"'
            ) from exc
        kwargs = _with_defaults(kwargs)
        if "transport" not in kwargs:
            verify = kwargs.pop("verify", True)
            trust_env = kwargs.get("trust_env", True)
            context = (
                verify if isinstance(verify, ssl.SSLContext) else _ssl_context(verify, trust_env)
            )
            limits: httpx.Limits = kwargs.pop("limits")
            proxy = kwargs.pop("proxy", None)

            def session() -> aiohttp.ClientSession:
                # Made on the loop of the first request, as aiohttp wants.
                connector = aiohttp.TCPConnector(
                    limit=limits.max_connections or 0,  # 0: no cap
                    keepalive_timeout=limits.keepalive_expiry,
                    ssl=context,
                )
                return aiohttp.ClientSession(connector=connector, trust_env=trust_env)

            kwargs["transport"] = AiohttpTransport(
                verify=context,
                limits=limits,
                proxy=httpx.Proxy(proxy) if isinstance(proxy, str) else proxy,
                client=session,
            )
        super().__init__(**kwargs)
