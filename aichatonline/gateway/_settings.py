"""The gateway's settings: one frozen object, checked once, passed to every worker.

``create_app(...)`` builds a :class:`GatewaySettings` from its keyword arguments and the
environment (``AICHATONLINE_GATEWAY_API_KEY``; the SDK itself reads
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
from dataclasses import asdict, dataclass, field
from typing import Any

from .._exceptions import InvalidRequestError

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BUFFER_CHARS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONCURRENCY",
    "SETTINGS_ENV",
    "GatewaySettings",
    "is_loopback",
]

API_KEY_ENV = "AICHATONLINE_GATEWAY_API_KEY"
#: How ``aichatonline gateway --workers N`` passes its settings to the workers.
SETTINGS_ENV = "AICHATONLINE_GATEWAY_SETTINGS"
DEFAULT_MAX_CONCURRENCY = 1000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Characters of text one stream may hold while its client reads slower than the service
#: sends; beyond it the gateway stops reading from the service (TCP slows the service down).
DEFAULT_BUFFER_CHARS = 64 * 1024


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
        return json.dumps(data)

    @classmethod
    def from_env(cls) -> GatewaySettings:
        """The settings a parent process put in :data:`SETTINGS_ENV` (the key: API_KEY_ENV)."""
        data = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        data["cors_origins"] = tuple(data.get("cors_origins", ()))
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
