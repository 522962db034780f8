"""The gateway's settings: one frozen object, checked once, passed to every worker.

Each field is a keyword argument of ``create_app(...)``, a flag of ``aichatonline gateway``
and an environment variable ``AICHATONLINE_GATEWAY_<FIELD>`` (:data:`ENV_NAMES`), read by
:meth:`GatewaySettings.from_environ` for every field not given (an argument or a flag wins
over the variable). The SDK itself reads ``AICHATONLINE_BASE_URL`` and
``AICHATONLINE_PROXY``, so ``base_url`` and ``proxy`` have no gateway variable of their own.
``aichatonline gateway --workers N`` hands the settings to its worker processes through one
variable (:data:`SETTINGS_ENV`, JSON without the API key, which travels in its own
variable), read back by :meth:`GatewaySettings.from_env`. No Starlette, no uvicorn here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .._exceptions import InvalidRequestError

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BUFFER_CHARS",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_READY_TTL",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "ENV_NAMES",
    "LOG_FORMATS",
    "SETTINGS_ENV",
    "GatewaySettings",
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
DEFAULT_BUFFER_CHARS = 4 * 1024
#: Seconds running requests get to finish once the gateway is asked to stop.
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
#: Seconds an answer from the service keeps ``/ready`` at 200 without asking again.
DEFAULT_READY_TTL = 30.0
LOG_FORMATS = ("text", "json")
#: Seconds a connection has to send a whole request head, from its accept or the last response:
#: nginx's default. A client whose request is cancelled can leave a connected socket in
#: httpx's pool that it sends nothing on (encode/httpcore#1099); when the gateway closed such
#: connections after 10 s, about 1-2 % of the soak's requests ended in a connection error
#: with no answer, and none with 60 s.
DEFAULT_HEADER_TIMEOUT = 60.0
#: Seconds an idle keep-alive connection stays open after a response: nginx's default, and
#: longer than its clients keep an idle connection (httpx and openai 5 s, aiohttp 15 s, load
#: balancers 60 s), so that the client always lets an idle connection go first. With both at
#: 5 s (uvicorn's default) a client sends its next request onto a connection the gateway is
#: closing that moment, and gets a connection error with no answer (about one request in 100
#: of the soak, under load).
DEFAULT_KEEP_ALIVE_TIMEOUT = 75.0


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
    sse_keepalive: float | None = None
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    ready_ttl: float = DEFAULT_READY_TTL
    log_format: str = "text"
    drop_params: bool = False
    aiohttp: bool = False
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
        _check_seconds("timeout", self.timeout, optional=True)
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
        for name in ("trust_env", "no_auth", "drop_params", "aiohttp"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRequestError(f"{name} must be True or False", field=name)
        _check_seconds("sse_keepalive", self.sse_keepalive, optional=True)
        _check_seconds("shutdown_timeout", self.shutdown_timeout, zero=True)
        _check_seconds("ready_ttl", self.ready_ttl, zero=True)
        if self.log_format not in LOG_FORMATS:
            raise InvalidRequestError(
                f"log_format must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}",
                field="log_format",
            )
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
        for name in _TUPLES:
            data[name] = tuple(data.get(name, ()))
        return cls(api_key=os.environ.get(API_KEY_ENV) or None, **data)

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, **given: Any
    ) -> GatewaySettings:
        """The settings ``given`` (``None`` counts as not given), the rest from ``environ``.

        ``environ`` defaults to ``os.environ``; a field is read from its variable in
        :data:`ENV_NAMES` (an empty variable counts as unset). A value that does not parse is an
        :class:`~aichatonline.InvalidRequestError` naming the variable.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, env_name in ENV_NAMES.items():
            value = given.pop(name, None)
            if value is None and environ.get(env_name):
                value = _parse_env(name, env_name, environ[env_name])
            if isinstance(value, str) and name in _TUPLES:  # "a, b", as a flag gives it
                value = split_addresses(value)
            if value is not None:
                values[name] = tuple(value) if name in _TUPLES else value
        for name, value in given.items():  # base_url, proxy: the SDK reads their variables
            if name not in _FIELDS:
                raise TypeError(f"GatewaySettings has no field {name!r}")
            if value is not None:
                values[name] = value
        return cls(**values)


_FIELDS = frozenset(f.name for f in dataclasses.fields(GatewaySettings))
_TUPLES = ("cors_origins", "forwarded_allow_ips")
#: The field each ``AICHATONLINE_GATEWAY_*`` variable sets (``base_url`` and ``proxy``: the
#: SDK's own ``AICHATONLINE_BASE_URL`` and ``AICHATONLINE_PROXY``).
ENV_NAMES: dict[str, str] = {
    name: "AICHATONLINE_GATEWAY_" + name.upper() for name in sorted(_FIELDS - {"base_url", "proxy"})
}
_ENV_KINDS: dict[str, type] = {
    "timeout": float,
    "max_retries": int,
    "max_concurrency": int,
    "max_body_bytes": int,
    "buffer_chars": int,
    "cors_origins": tuple,
    "trust_env": bool,
    "no_auth": bool,
    "sse_keepalive": float,
    "shutdown_timeout": float,
    "ready_ttl": float,
    "drop_params": bool,
    "aiohttp": bool,
    "header_timeout": float,
    "keep_alive_timeout": float,
    "max_connections": int,
    "forwarded_allow_ips": tuple,
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse_env(name: str, env_name: str, text: str) -> Any:
    kind = _ENV_KINDS.get(name, str)
    try:
        if kind is bool:
            if text.strip().lower() not in _TRUE + _FALSE:
                raise ValueError(text)
            return text.strip().lower() in _TRUE
        if kind is tuple:
            return split_addresses(text)
        return kind(text)
    except ValueError:
        what = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "")
        raise InvalidRequestError(f"{env_name} must be {what}, not {text!r}", field=name) from None


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


def _check_seconds(name: str, value: object, *, optional: bool = False, zero: bool = False) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value >= 0 if zero else value > 0)
        or not value < math.inf
    ):
        what = "a number of seconds >= 0" if zero else "a positive number of seconds"
        raise InvalidRequestError(f"{name} must be {what}, not {value!r}", field=name)


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
