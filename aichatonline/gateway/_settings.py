"""The gateway's settings: one frozen object, checked once, passed to every worker.

``create_app(...)`` builds a :class:`GatewaySettings` from its keyword arguments and the
environment (``AICHATONLINE_GATEWAY_API_KEY``, the connection limits'
``AICHATONLINE_GATEWAY_*`` variables read by :func:`connection_options`; the SDK itself reads
``AICHATONLINE_BASE_URL`` and ``AICHATONLINE_PROXY``). ``aichatonline gateway --workers N``
hands the settings to its worker processes through one environment variable
(:data:`SETTINGS_ENV`, JSON without the API key, which travels in its own variable), read
back by ``app_from_env``. No Starlette, no uvicorn here.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .._exceptions import InvalidRequestError

__all__ = [
    "API_KEY_ENV",
    "CONNECTION_ENV",
    "DEFAULT_BUFFER_CHARS",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "SETTINGS_ENV",
    "GatewaySettings",
    "connection_options",
    "is_loopback",
    "split_addresses",
]

API_KEY_ENV = "AICHATONLINE_GATEWAY_API_KEY"
#: How ``aichatonline gateway --workers N`` passes its settings to the workers.
SETTINGS_ENV = "AICHATONLINE_GATEWAY_SETTINGS"
DEFAULT_MAX_CONCURRENCY = 1000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Characters of text one stream may hold while its client reads slower than the service
#: sends; beyond it the gateway stops reading from the service (TCP slows the service down).
DEFAULT_BUFFER_CHARS = 64 * 1024
#: Seconds a connection has to send a whole request head, from its accept or the last response.
DEFAULT_HEADER_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection stays open after a response (uvicorn's default).
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0
#: The environment variable of each connection setting (the flag without ``--``, upper-cased).
CONNECTION_ENV = {
    "header_timeout": "AICHATONLINE_GATEWAY_HEADER_TIMEOUT",
    "keep_alive_timeout": "AICHATONLINE_GATEWAY_KEEP_ALIVE_TIMEOUT",
    "max_connections": "AICHATONLINE_GATEWAY_MAX_CONNECTIONS",
    "forwarded_allow_ips": "AICHATONLINE_GATEWAY_FORWARDED_ALLOW_IPS",
}


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """Everything a gateway worker needs; see ``create_app`` for each field."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    proxy: str | None = field(default=None, repr=False)
    timeout: float | None = None
    max_retries: int | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    buffer_chars: int = DEFAULT_BUFFER_CHARS
    cors_origins: tuple[str, ...] = ()
    trust_env: bool = True
    no_auth: bool = False
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT
    #: Open connections per worker; None: sized from the descriptor limit when serving.
    max_connections: int | None = None
    #: Addresses whose X-Forwarded-For / X-Forwarded-Proto are believed ("*": any; none: no one).
    forwarded_allow_ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.api_key is not None and (
            not isinstance(self.api_key, str)
            or not self.api_key
            or not self.api_key.isascii()
            or not self.api_key.isprintable()
            or " " in self.api_key
        ):
            raise InvalidRequestError(
                "api_key must be a non-empty string of visible ASCII characters",
                field="api_key",
            )
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or not 0 < self.timeout < math.inf
        ):
            raise InvalidRequestError(
                "timeout must be a positive number of seconds", field="timeout"
            )
        _check_int("max_retries", self.max_retries, 0, optional=True)
        _check_int("max_concurrency", self.max_concurrency, 1)
        _check_int("max_body_bytes", self.max_body_bytes, 1)
        _check_int("buffer_chars", self.buffer_chars, 1)
        origins: object = self.cors_origins
        if not isinstance(origins, tuple) or not all(
            isinstance(origin, str) and origin for origin in origins
        ):
            raise InvalidRequestError(
                "cors_origins must be a sequence of origins such as 'https://example.com'",
                field="cors_origins",
            )
        if not isinstance(self.no_auth, bool):
            raise InvalidRequestError("no_auth must be True or False", field="no_auth")
        _check_seconds("header_timeout", self.header_timeout)
        _check_seconds("keep_alive_timeout", self.keep_alive_timeout)
        _check_int("max_connections", self.max_connections, 1, optional=True)
        _check_addresses(self.forwarded_allow_ips)

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of the SDK's ``AsyncClient`` that these settings give."""
        options: dict[str, Any] = {"base_url": self.base_url}
        if self.proxy is not None:
            options["proxy"] = self.proxy
        if self.timeout is not None:
            options["timeout"] = self.timeout
        if self.max_retries is not None:
            options["max_retries"] = self.max_retries
        if not self.trust_env:
            options["trust_env"] = False
        return options

    def to_env(self) -> str:
        """These settings as JSON for :data:`SETTINGS_ENV`, without the API key."""
        data = asdict(self)
        data.pop("api_key")
        data["cors_origins"] = list(self.cors_origins)
        data["forwarded_allow_ips"] = list(self.forwarded_allow_ips)
        return json.dumps(data)

    @classmethod
    def from_env(cls) -> GatewaySettings:
        """The settings a parent process put in :data:`SETTINGS_ENV` (the key: API_KEY_ENV)."""
        data = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        data["cors_origins"] = tuple(data.get("cors_origins", ()))
        data["forwarded_allow_ips"] = tuple(data.get("forwarded_allow_ips", ()))
        return cls(api_key=os.environ.get(API_KEY_ENV) or None, **data)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, ``[v6]`` or ``localhost``) is this machine's loopback.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, as a dual-stack socket reports an
    IPv4 peer) counts as its IPv4 address; any other host name is not loopback (it may
    resolve to any interface).
    """
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _check_int(name: str, value: object, low: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidRequestError(f"{name} must be an integer >= {low}, not {value!r}", field=name)


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InvalidRequestError(
            f"{name} must be a positive number of seconds, not {value!r}", field=name
        )


def _check_addresses(addresses: object) -> None:
    """``forwarded_allow_ips``: a tuple of addresses or networks (``10.0.0.0/8``), or ``*``."""
    if not isinstance(addresses, tuple):
        raise InvalidRequestError(
            "forwarded_allow_ips must be a sequence of addresses such as '10.0.0.1'",
            field="forwarded_allow_ips",
        )
    for address in addresses:
        try:
            if not isinstance(address, str):
                raise ValueError(address)
            if address != "*":
                ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise InvalidRequestError(
                f"forwarded_allow_ips: {address!r} is not an address, a network "
                "(such as 10.0.0.0/8) or '*'",
                field="forwarded_allow_ips",
            ) from None


def split_addresses(text: str) -> tuple[str, ...]:
    """``"10.0.0.1, 10.1.0.0/16"`` (a flag's or a variable's value) as a tuple of entries."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def connection_options(
    *,
    header_timeout: float | None = None,
    keep_alive_timeout: float | None = None,
    max_connections: int | None = None,
    forwarded_allow_ips: Sequence[str] | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The connection settings for :class:`GatewaySettings`: each given value, else its
    ``AICHATONLINE_GATEWAY_*`` variable (:data:`CONNECTION_ENV`), else left to the default.

    A variable that does not hold a valid value is an ``InvalidRequestError`` naming it.
    """
    env = os.environ if environ is None else environ
    given: dict[str, Any] = {
        "header_timeout": header_timeout,
        "keep_alive_timeout": keep_alive_timeout,
        "max_connections": max_connections,
        "forwarded_allow_ips": forwarded_allow_ips,
    }
    options: dict[str, Any] = {}
    for name, value in given.items():
        text = env.get(CONNECTION_ENV[name], "").strip()
        if value is None and text:
            kind = int if name == "max_connections" else float
            try:
                value = split_addresses(text) if name == "forwarded_allow_ips" else kind(text)
            except ValueError:
                raise InvalidRequestError(
                    f"{CONNECTION_ENV[name]}={text!r} is not a valid {name}", field=name
                ) from None
        if isinstance(value, str):  # forwarded_allow_ips="10.0.0.1,10.0.0.2", as uvicorn's
            value = split_addresses(value)
        elif name == "forwarded_allow_ips" and value is not None:
            value = tuple(value)
        if value is not None:
            options[name] = value
    return options
