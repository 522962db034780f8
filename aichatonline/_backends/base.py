"""The shape every network backend has: a backend opens streams; a stream moves bytes.

Typing only (``Protocol`` classes); see the package docstring for the contract.
"""

from __future__ import annotations

import ssl
from typing import Protocol

__all__ = ["AsyncNetworkBackend", "AsyncNetworkStream", "NetworkBackend", "NetworkStream"]


class NetworkStream(Protocol):
    """A blocking TCP (or TLS) stream."""

    def read(self, max_bytes: int, timeout: float | None) -> bytes: ...

    def write(self, data: bytes, timeout: float | None) -> None: ...

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str, timeout: float | None
    ) -> NetworkStream: ...

    def is_readable(self) -> bool: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


class NetworkBackend(Protocol):
    """Opens blocking streams."""

    def connect_tcp(self, host: str, port: int, timeout: float | None) -> NetworkStream: ...


class AsyncNetworkStream(Protocol):
    """A TCP (or TLS) stream on an event loop."""

    async def read(self, max_bytes: int, timeout: float | None) -> bytes: ...

    async def write(self, data: bytes, timeout: float | None) -> None: ...

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str, timeout: float | None
    ) -> AsyncNetworkStream: ...

    def is_readable(self) -> bool: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


class AsyncNetworkBackend(Protocol):
    """Opens streams on the running event loop."""

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None
    ) -> AsyncNetworkStream: ...
