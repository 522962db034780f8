"""The blocking backend: plain sockets, each wait bounded by the timeout its caller gives.

CPython bounds a blocking socket call by the socket's timeout: ``recv`` per call, and
``sendall``, ``connect`` and the TLS handshake as a whole. The caller sizes every timeout
from the call's limits just before the call, so a server that trickles its answer a byte
at a time still meets the whole-call bound at the next read.

``abort()`` may come from another thread while one is blocked in ``recv``: it shuts the
socket down, which wakes that ``recv`` with an end of stream (closing the descriptor
instead would neither wake it nor be safe, as the number could be reused at once). The
owner closes the socket when it next touches the stream.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

from . import is_socket_readable

__all__ = ["SyncBackend", "SyncStream"]

_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
# The longest timeout a socket takes (about 292 years would overflow time_t): longer
# limits are the same as none in practice.
_LONGEST = float(threading.TIMEOUT_MAX)  # not on Windows: sendall with a timeout there


class SyncStream:
    """A blocking TCP or TLS stream."""

    __slots__ = ("_aborted", "_plain", "_sock", "_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout: float | None = sock.gettimeout()
        self._aborted = False
        # TLS sockets take no flags on send.
        self._plain = _DONTWAIT and not isinstance(sock, ssl.SSLSocket)

    def _set_timeout(self, timeout: float | None) -> None:
        # Zero would switch the socket to non-blocking (BlockingIOError instead of a
        # timeout): a limit that has run out still waits a millisecond, then times out.
        if timeout is not None:
            timeout = min(max(timeout, 0.001), _LONGEST)
        # settimeout is a system call on every use: only when the value changes.
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout

    def read(self, max_bytes: int, timeout: float | None) -> bytes:
        """Up to ``max_bytes`` bytes (``b""`` at the end of the stream)."""
        if self._aborted:
            raise ConnectionAbortedError("the connection was closed")
        self._set_timeout(timeout)
        try:
            data = self._sock.recv(max_bytes)
        except OSError:
            if self._aborted:
                raise ConnectionAbortedError("the connection was closed") from None
            raise
        if not data and self._aborted:
            raise ConnectionAbortedError("the connection was closed")
        return data

    def write(self, data: bytes, timeout: float | None) -> None:
        """Send all of ``data``."""
        if self._aborted:
            raise ConnectionAbortedError("the connection was closed")
        if self._plain:
            # A request fits the kernel's buffer: sent without waiting, and without
            # switching the socket's timeout to the write limit and back (a system call
            # each way, on every request).
            try:
                sent = self._sock.send(data, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                if self._aborted:
                    raise ConnectionAbortedError("the connection was closed") from None
                raise
            if sent == len(data):
                return
            data = data[sent:]
        self._set_timeout(timeout)
        try:
            self._sock.sendall(data)
        except OSError:
            if self._aborted:  # closed by its owner: not a stale connection to retry on
                raise ConnectionAbortedError("the connection was closed") from None
            raise

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str, timeout: float | None
    ) -> SyncStream:
        """TLS over this stream (the handshake bounded by ``timeout`` as a whole)."""
        if isinstance(self._sock, ssl.SSLSocket):
            raise ssl.SSLError(
                "TLS inside TLS (an https:// proxy in front of an https:// service) is not "
                "supported by the blocking client; use an http:// proxy URL"
            )
        self._set_timeout(timeout)
        wrapped = ssl_context.wrap_socket(self._sock, server_hostname=server_hostname)
        return SyncStream(wrapped)

    def is_readable(self) -> bool:
        """Whether data or an end of stream is waiting (for an idle connection: stale)."""
        return is_socket_readable(self._sock)

    def abort(self) -> None:
        """End the stream now; safe from any thread, wakes a blocked ``read``."""
        self._aborted = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Release the socket (the owner's call, once nobody reads it)."""
        self._aborted = True
        with contextlib.suppress(OSError):
            self._sock.close()

    @property
    def socket(self) -> socket.socket:
        """The socket underneath."""
        return self._sock


class SyncBackend:
    """Opens blocking TCP connections."""

    def connect_tcp(self, host: str, port: int, timeout: float | None) -> SyncStream:
        """Connect to ``host:port`` within ``timeout`` seconds, all addresses together.

        ``socket.create_connection`` would give each address the whole timeout (two
        addresses that never answer: twice the limit); here they share one deadline. The
        name lookup itself cannot be bounded by a blocking call (the resolver has no
        timeout parameter); it is the system resolver's own (a few seconds).
        """
        if timeout is not None and timeout <= 0:
            raise TimeoutError()
        deadline = None if timeout is None else time.monotonic() + min(timeout, _LONGEST)
        error: OSError = OSError(f"no address found for {host!r}")
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        ):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError()
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(None if left is None else max(left, 0.001))
                sock.connect(address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            break
        else:
            raise error
        with contextlib.suppress(OSError):  # already gone: the first read says so
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SyncStream(sock)
