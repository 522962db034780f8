"""Tests of ``aichatonline.testing.ForwardProxy``: HTTP forwarding, CONNECT, SOCKS5, credentials."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from aichatonline.testing import CHAT_PATH, TOKEN_PATH, Fault, ForwardProxy, LocalServer, pieces_for

CANVAS = "?canvas=-abcdefghij"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


def round_trip(client: httpx.Client, base_url: str, prompt: str = "Hi") -> str:
    """Fetch a token and chat through ``client``; return the answer's text."""
    token = client.get(base_url + TOKEN_PATH + CANVAS).json()["data"]
    response = client.post(
        base_url + CHAT_PATH,
        json={"conversationId": "x", "prompt": prompt},
        headers={"UniqueId": token},
    )
    assert response.status_code == 200
    return "".join(json.loads(line)["data"]["message"] for line in response.text.splitlines())


def test_http_proxy_forwards_absolute_form_requests(server: LocalServer) -> None:
    with ForwardProxy() as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        assert proxy.url == f"http://127.0.0.1:{proxy.port}"
        assert round_trip(client, server.base_url) == "".join(pieces_for("Hi"))
        assert round_trip(client, server.base_url, "again") == "".join(pieces_for("again"))
        assert proxy.requests == [
            f"GET {server.base_url}{TOKEN_PATH}{CANVAS}",
            f"POST {server.base_url}{CHAT_PATH}",
            f"GET {server.base_url}{TOKEN_PATH}{CANVAS}",
            f"POST {server.base_url}{CHAT_PATH}",
        ]
        assert proxy.connections == 1  # keep-alive through the proxy
    # The origin sees origin-form requests without proxy headers.
    assert all("proxy-authorization" not in r.headers for r in server.requests)
    assert server.requests[1].path == CHAT_PATH


def test_http_proxy_streams_chunks_as_they_arrive(server: LocalServer) -> None:
    server.pieces = 4
    server.delay = 0.15
    with ForwardProxy() as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        token = client.get(server.base_url + TOKEN_PATH).json()["data"]
        started = time.monotonic()
        arrivals = []
        with client.stream(
            "POST",
            server.base_url + CHAT_PATH,
            json={"conversationId": "x", "prompt": "Hi"},
            headers={"UniqueId": token},
        ) as response:
            for _ in response.iter_lines():
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 4
    # Not buffered: the first piece arrives long before the last one is sent (0.45 s).
    assert arrivals[0] < 0.3
    assert arrivals[-1] >= 0.4


def test_http_proxy_passes_on_a_dropped_stream(server: LocalServer) -> None:
    server.inject(Fault(drop_after=2))
    with ForwardProxy() as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        token = client.get(server.base_url + TOKEN_PATH).json()["data"]
        lines: list[str] = []
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream(
                "POST",
                server.base_url + CHAT_PATH,
                json={"conversationId": "x", "prompt": "Hi"},
                headers={"UniqueId": token},
            ) as response,
        ):
            lines.extend(response.iter_lines())
    assert len(lines) == 2


def test_http_proxy_requires_credentials_when_set(server: LocalServer) -> None:
    with ForwardProxy(username="user", password="p@ss word") as proxy:
        assert "user" not in proxy.url
        assert proxy.url_with_credentials == f"http://user:p%40ss%20word@127.0.0.1:{proxy.port}"
        with httpx.Client(proxy=proxy.url, timeout=5) as client:
            response = client.get(server.base_url + TOKEN_PATH)
            assert response.status_code == 407
            assert response.headers["proxy-authenticate"].startswith("Basic")
        with httpx.Client(proxy=proxy.url_with_credentials, timeout=5) as client:
            assert round_trip(client, server.base_url) == "".join(pieces_for("Hi"))
        assert proxy.auth_failures == 1
    assert len(server.requests) == 2  # the refused request never reached the origin


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("credentials", [False, True])
def test_http_proxy_connect_tunnel(server: LocalServer, credentials: bool) -> None:
    options = {"username": "u", "password": "p"} if credentials else {}
    with ForwardProxy(**options) as proxy:  # type: ignore[arg-type]
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
            auth = b"Proxy-Authorization: Basic " + base64.b64encode(b"u:p") + b"\r\n"
            sock.sendall(
                f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode()
                + (auth if credentials else b"")
                + b"\r\n"
            )
            assert recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 200")
            sock.sendall(f"GET {TOKEN_PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            response = recv_until(sock, b'"}')
        assert response.startswith(b"HTTP/1.1 200 OK")
        assert b'"data"' in response
        assert proxy.requests == [f"CONNECT 127.0.0.1:{server.port}"]
        if credentials:
            with socket.create_connection((proxy.host, proxy.port), timeout=5) as sock:
                sock.sendall(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n\r\n".encode())
                assert recv_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 407")
            assert proxy.auth_failures == 1


def test_socks5_proxy(server: LocalServer) -> None:
    with ForwardProxy("socks5") as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        assert proxy.url == f"socks5://127.0.0.1:{proxy.port}"
        assert round_trip(client, server.base_url) == "".join(pieces_for("Hi"))
        assert proxy.requests == [f"SOCKS5 127.0.0.1:{server.port}"]


def test_socks5_proxy_with_domain_address(server: LocalServer) -> None:
    url = f"http://localhost:{server.port}"
    try:
        socket.getaddrinfo("localhost", server.port)
    except OSError:
        pytest.skip("localhost does not resolve")
    with ForwardProxy("socks5") as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        assert round_trip(client, url) == "".join(pieces_for("Hi"))
        assert proxy.requests == [f"SOCKS5 localhost:{server.port}"]


def test_socks5_proxy_credentials(server: LocalServer) -> None:
    with ForwardProxy("socks5", username="user", password="secret") as proxy:
        with httpx.Client(proxy=proxy.url_with_credentials, timeout=5) as client:
            assert round_trip(client, server.base_url) == "".join(pieces_for("Hi"))
        assert proxy.auth_failures == 0
        wrong = f"socks5://user:wrong@127.0.0.1:{proxy.port}"
        with httpx.Client(proxy=wrong, timeout=5) as client, pytest.raises(httpx.ProxyError):
            client.get(server.base_url + TOKEN_PATH)
        with httpx.Client(proxy=proxy.url, timeout=5) as client, pytest.raises(httpx.ProxyError):
            client.get(server.base_url + TOKEN_PATH)
        assert proxy.auth_failures == 2


def test_socks5_tunnel_passes_on_a_client_leaving(server: LocalServer) -> None:
    server.inject(Fault(stall=10))
    with ForwardProxy("socks5") as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        token = client.get(server.base_url + TOKEN_PATH).json()["data"]
        with client.stream(
            "POST",
            server.base_url + CHAT_PATH,
            json={"conversationId": "x", "prompt": "Hi"},
            headers={"UniqueId": token},
        ) as response:
            assert response.status_code == 200
        # Leaving the block closed the client's connection: the server notices via the proxy.
        assert server.wait_for(lambda s: s.disconnects == 1, timeout=2)


def test_proxy_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="kind"):
        ForwardProxy("ftp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both"):
        ForwardProxy(username="only")
    with pytest.raises(RuntimeError, match="not started"):
        _ = ForwardProxy().url


@pytest.mark.anyio
async def test_proxy_async_context_manager(server: LocalServer, anyio_backend: str) -> None:
    async with ForwardProxy() as proxy, httpx.AsyncClient(proxy=proxy.url) as client:
        response = await client.get(server.base_url + TOKEN_PATH + CANVAS)
        assert response.status_code == 200
    assert not proxy.running
    assert repr(proxy).startswith("<ForwardProxy stopped")
