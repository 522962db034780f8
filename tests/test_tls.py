"""TLS: the real service is https, so the SDK's own connections are tested over TLS too.

A small TLS terminator (a test CA from trustme, loopback only) sits in front of the bundled
server: the client talks https to it, it talks http to the server. Run on the blocking
client and the async client on asyncio and trio; directly, and through an HTTP proxy's
CONNECT tunnel.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from aichatonline import APIConnectionError, AsyncClient, Client
from aichatonline.testing import Fault, ForwardProxy, LocalServer
from tests.helpers import caused_by

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.shared_server(pieces=12)


class TLSTerminator:
    """Accepts TLS on loopback and relays the plain bytes to ``target`` (host, port)."""

    def __init__(self, target: tuple[str, int], context: ssl.SSLContext) -> None:
        self._target = target
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        #: The application protocol each TLS connection agreed on (ALPN).
        self.protocols: list[str | None] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        self.protocols.append(tls.selected_alpn_protocol())
        upstream = socket.create_connection(self._target)
        self._sockets += [tls, upstream]
        pump = threading.Thread(target=_pump, args=(upstream, tls), daemon=True)
        pump.start()
        _pump(tls, upstream)
        pump.join(5)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (close would not)
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked on it
            with contextlib.suppress(OSError):
                sock.close()
        for thread in [self._accepting, *self._threads]:
            thread.join(5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def terminator(shared_server: LocalServer, ca: trustme.CA) -> Iterator[TLSTerminator]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])  # it would speak HTTP/2 if asked
    terminator = TLSTerminator((shared_server.host, shared_server.port), context)
    try:
        yield terminator
    finally:
        terminator.close()


@pytest.fixture(scope="module")
def tls_url(terminator: TLSTerminator) -> str:
    return f"https://localhost:{terminator.port}"


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_sync_client_over_tls(
    tls_url: str, upstream: LocalServer, trusting: ssl.SSLContext, no_backoff: None
) -> None:
    expected = "".join(upstream.pieces_for("Hi"))
    with Client(base_url=tls_url, verify=trusting) as client:
        assert client.complete("Hi") == expected
        upstream.inject(Fault(drop_after=4))
        stream = client.stream("Hi")
        assert "".join(stream) == expected  # resumed exactly, over a new TLS connection
        assert stream.retries == 1


@pytest.mark.anyio
async def test_async_client_over_tls(
    tls_url: str,
    upstream: LocalServer,
    trusting: ssl.SSLContext,
    anyio_backend: str,
    no_backoff: None,
) -> None:
    expected = "".join(upstream.pieces_for("Hi"))
    async with AsyncClient(base_url=tls_url, verify=trusting) as client:
        assert await client.complete("Hi") == expected
        upstream.inject(Fault(drop_after=4))
        stream = client.stream("Hi")
        assert "".join([piece async for piece in stream]) == expected
        assert stream.retries == 1


def test_a_ca_bundle_path_is_accepted(tls_url: str, upstream: LocalServer, ca: trustme.CA) -> None:
    with ca.cert_pem.tempfile() as path, Client(base_url=tls_url, verify=path) as client:
        assert client.complete("Hi") == "".join(upstream.pieces_for("Hi"))


def test_an_unknown_certificate_authority_is_refused(tls_url: str) -> None:
    # The default trust (certifi's bundle) does not know the test CA.
    with (
        Client(base_url=tls_url, max_retries=0) as client,
        pytest.raises(APIConnectionError) as info,
    ):
        client.complete("Hi")
    assert caused_by(info.value, ssl.SSLError)
    assert "certificate" in str(info.value).lower()


@pytest.mark.anyio
async def test_async_unknown_certificate_authority_is_refused(
    tls_url: str, anyio_backend: str
) -> None:
    async with AsyncClient(base_url=tls_url, max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            await client.complete("Hi")


def test_trust_env_false_ignores_ssl_cert_file(
    tls_url: str, upstream: LocalServer, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSL_CERT_FILE names the test CA: trusted with trust_env (httpx's rule), not without.
    with ca.cert_pem.tempfile() as path:
        monkeypatch.setenv("SSL_CERT_FILE", path)
        with (
            Client(base_url=tls_url, max_retries=0, trust_env=False) as client,
            pytest.raises(APIConnectionError) as info,
        ):
            client.complete("Hi")
    assert caused_by(info.value, ssl.SSLError)


def test_tls_through_a_connect_tunnel(
    tls_url: str, upstream: LocalServer, trusting: ssl.SSLContext
) -> None:
    with ForwardProxy() as proxy, Client(base_url=tls_url, proxy=proxy.url, verify=trusting) as c:
        assert c.complete("Hi") == "".join(upstream.pieces_for("Hi"))
    assert proxy.requests, "the request went through the proxy"


@pytest.mark.anyio
async def test_async_tls_through_a_connect_tunnel(
    tls_url: str, upstream: LocalServer, trusting: ssl.SSLContext, anyio_backend: str
) -> None:
    with ForwardProxy() as proxy:
        async with AsyncClient(base_url=tls_url, proxy=proxy.url, verify=trusting) as client:
            assert await client.complete("Hi") == "".join(upstream.pieces_for("Hi"))
        assert proxy.requests


def test_verify_with_your_own_http_client_is_refused() -> None:
    import httpx

    from aichatonline import InvalidRequestError

    with httpx.Client() as own, pytest.raises(InvalidRequestError, match="verify"):
        Client(base_url="https://localhost:1", http_client=own, verify=False)


def test_a_context_offering_h2_still_speaks_http_1_1(
    terminator: TLSTerminator, tls_url: str, upstream: LocalServer, ca: trustme.CA
) -> None:
    # The caller's context offers h2 first; HTTP/2 was not asked for, so httpx negotiates
    # HTTP/1.1 by ALPN (the SDK's own stack used to negotiate h2 and speak HTTP/1.1 on it).
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["h2", "http/1.1"])
    before = len(terminator.protocols)
    with Client(base_url=tls_url, verify=context) as client:
        assert client.complete("Hi") == "".join(upstream.pieces_for("Hi"))
    assert terminator.protocols[before:]
    assert set(terminator.protocols[before:]) == {"http/1.1"}
