"""``proxy=`` for real: both clients through a loopback ``ForwardProxy`` (HTTP and SOCKS5, with
and without credentials), the ``AICHATONLINE_PROXY`` and standard proxy variables, and the
failures a proxy adds (wrong credentials, a proxy that is down)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aichatonline import (
    AiChatOnlineError,
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    Client,
    InvalidRequestError,
)
from aichatonline.testing import Fault, ForwardProxy, LocalServer, reply_for
from tests.helpers import (
    PROMPT,
    assert_no_secret,
    assert_ours,
    closed_port,
    error_texts,
    fast,
    isolate,
)

REPLY = reply_for(PROMPT)
USER, PASSWORD = "proxy-user", "pr0xy-Pa55word"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch)


@pytest.fixture
def server(aichatonline_server: LocalServer) -> LocalServer:
    return aichatonline_server


def start_proxy(kind: str, credentials: bool) -> ForwardProxy:
    if credentials:
        return ForwardProxy(kind, username=USER, password=PASSWORD).start()  # type: ignore[arg-type]
    return ForwardProxy(kind).start()  # type: ignore[arg-type]


@pytest.fixture(
    params=[
        ("http", False),
        ("http", True),
        ("socks5", False),
        ("socks5", True),
    ],
    ids=["http", "http-auth", "socks5", "socks5-auth"],
)
def proxy(request: pytest.FixtureRequest) -> Iterator[ForwardProxy]:
    kind, credentials = request.param
    running = start_proxy(kind, credentials)
    try:
        yield running
    finally:
        running.stop()


def assert_carried(proxy: ForwardProxy, server: LocalServer) -> None:
    """The proxy carried the token fetch and the chats to the server."""
    assert proxy.requests, "the proxy saw nothing"
    assert proxy.auth_failures == 0
    authority = server.base_url.removeprefix("http://")
    if proxy.kind == "http":
        # Plain-HTTP origin: absolute-form requests, one per request the server received.
        assert proxy.requests[0].startswith(f"GET {server.base_url}/api/v1/user/getUniqueId?")
        chats = [r for r in proxy.requests if r.startswith("POST ")]
        assert chats == [f"POST {server.base_url}/aichatonline/api/chat/gpt"] * len(
            server.chat_requests
        )
    else:
        assert set(proxy.requests) == {f"SOCKS5 {authority}"}
    assert len(server.chat_requests) >= 1


def test_sync_client_through_the_proxy(proxy: ForwardProxy, server: LocalServer) -> None:
    with Client(server.base_url, proxy=proxy.url_with_credentials, retry_policy=fast()) as client:
        assert client.complete(PROMPT) == REPLY
        assert list(client.stream(PROMPT)) == server.pieces_for(PROMPT)
        # A dropped stream is resumed exactly through the proxy too.
        server.inject(Fault(drop_after=3))
        assert list(client.stream(PROMPT)) == server.pieces_for(PROMPT)
        assert PASSWORD not in repr(client)
    assert_carried(proxy, server)
    assert len(server.chat_requests) == 4


@pytest.mark.anyio
async def test_async_client_through_the_proxy(
    proxy: ForwardProxy, server: LocalServer, anyio_backend: str
) -> None:
    url = proxy.url_with_credentials
    async with AsyncClient(server.base_url, proxy=url, retry_policy=fast()) as client:
        assert await client.complete(PROMPT) == REPLY
        server.inject(Fault(drop_after=3))
        async with client.stream(PROMPT) as stream:
            assert [piece async for piece in stream] == server.pieces_for(PROMPT)
    assert_carried(proxy, server)
    assert len(server.chat_requests) == 3


def test_proxy_from_aichatonline_proxy_variable(
    proxy: ForwardProxy, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_PROXY", proxy.url_with_credentials)
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url)
    with Client(retry_policy=fast()) as client:
        assert client.complete(PROMPT) == REPLY
    assert_carried(proxy, server)


@pytest.mark.anyio
async def test_async_proxy_from_aichatonline_proxy_variable(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    with ForwardProxy("socks5") as proxy:
        monkeypatch.setenv("AICHATONLINE_PROXY", proxy.url)
        async with AsyncClient(server.base_url, retry_policy=fast()) as client:
            assert await client.complete(PROMPT) == REPLY
        assert_carried(proxy, server)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_standard_proxy_variables_apply(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv(variable, proxy.url)
        with Client(server.base_url, retry_policy=fast()) as client:
            assert client.complete(PROMPT) == REPLY
        assert_carried(proxy, server)


def test_no_proxy_bypasses_the_standard_proxy(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with Client(server.base_url, retry_policy=fast()) as client:
            assert client.complete(PROMPT) == REPLY
        assert proxy.requests == []
        assert proxy.connections == 0


def test_explicit_proxy_wins_over_the_variables(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy("http") as chosen, ForwardProxy("http") as other:
        monkeypatch.setenv("AICHATONLINE_PROXY", other.url)
        monkeypatch.setenv("HTTP_PROXY", other.url)
        with Client(server.base_url, proxy=chosen.url, retry_policy=fast()) as client:
            assert client.complete(PROMPT) == REPLY
        assert chosen.requests
        assert other.requests == []


# --------------------------------------------------------------------------- proxy failures


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_wrong_proxy_credentials(server: LocalServer, kind: str) -> None:
    with ForwardProxy(kind, username=USER, password=PASSWORD) as proxy:  # type: ignore[arg-type]
        wrong = f"{kind}://{USER}:wrong-Pa55word@{proxy.url.split('://')[1]}"
        with Client(server.base_url, proxy=wrong, retry_policy=fast(1)) as client:
            with pytest.raises(AiChatOnlineError) as info:
                client.complete(PROMPT)
            assert PASSWORD not in repr(client)
            assert "wrong-Pa55word" not in repr(client)
        assert proxy.auth_failures >= 1
    exc = info.value
    assert_ours(exc)
    if kind == "http":
        # The proxy answers 407: a client error, not retried.
        assert isinstance(exc, APIStatusError)
        assert exc.status_code == 407
    else:
        assert isinstance(exc, APIConnectionError)
    assert_no_secret(error_texts(exc), {"wrong-Pa55word", PASSWORD})
    assert server.requests == []


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_proxy_that_is_down(server: LocalServer, kind: str) -> None:
    url = f"{kind}://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}"
    with Client(server.base_url, proxy=url, retry_policy=fast(1)) as client:
        with pytest.raises(APIConnectionError) as info:
            client.complete(PROMPT)
        assert PASSWORD not in repr(client)
    assert_no_secret(error_texts(info.value), {PASSWORD, f"{USER}:{PASSWORD}"})
    assert server.requests == []


@pytest.mark.anyio
async def test_async_proxy_that_is_down(server: LocalServer, anyio_backend: str) -> None:
    url = f"socks5://{USER}:{PASSWORD}@127.0.0.1:{closed_port()}"
    async with AsyncClient(server.base_url, proxy=url, retry_policy=fast(1)) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.complete(PROMPT)
    assert_no_secret(error_texts(info.value), {PASSWORD})
    assert server.requests == []


def test_https_proxy_url_is_accepted() -> None:
    # No TLS proxy here to talk to: the URL is accepted and handed to httpx as given.
    with Client("http://127.0.0.1:1", proxy="https://127.0.0.1:3128") as client:
        assert client.proxy == "https://127.0.0.1:3128"


def test_a_socks_proxy_without_socksio_is_a_clear_error_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the socks extra, say so when the client is made, not as an
    # ImportError from inside the first request.
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "socksio" else real_find_spec(name, *args),
    )
    with pytest.raises(InvalidRequestError, match=r"aichatonline\[socks\]"):
        Client("http://127.0.0.1:9", proxy="socks5://127.0.0.1:1080")
