"""``proxy=`` for real: both clients through a loopback ``ForwardProxy`` (HTTP and SOCKS5, with
and without credentials), the ``AICHATONLINE_PROXY`` and standard proxy variables, and the
failures a proxy adds (wrong credentials, a proxy that is down). Each case runs on the
blocking client and, as its ``_async`` twin, on the async one (asyncio and trio)."""

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
from aichatonline.testing import Fault, ForwardProxy, LocalServer
from tests.helpers import (
    PROMPT,
    REPLY,
    assert_no_secret,
    assert_ours,
    closed_port,
    error_texts,
    fast,
)

USER, PASSWORD = "proxy-user", "pr0xy-Pa55word"

pytestmark = pytest.mark.usefixtures("isolated")


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


def assert_wrong_credentials(exc: BaseException, kind: str) -> None:
    """How a proxy that refuses the credentials shows: 407 (HTTP), a connection error (SOCKS)."""
    assert_ours(exc)
    if kind == "http":
        # The proxy answers 407: a client error, not retried.
        assert isinstance(exc, APIStatusError)
        assert exc.status_code == 407
    else:
        assert isinstance(exc, APIConnectionError)
    assert_no_secret(error_texts(exc), {"wrong-Pa55word", PASSWORD})


def assert_names_the_proxy(exc: BaseException, port: int) -> None:
    """A connection failure through a proxy names the proxy, its credentials masked."""
    assert isinstance(exc, APIConnectionError)
    assert f"127.0.0.1:{port}" in str(exc), str(exc)
    assert_no_secret(error_texts(exc), {PASSWORD, f"{USER}:{PASSWORD}"})


# --------------------------------------------------------------------------- through a proxy


def test_sync_client_through_the_proxy(proxy: ForwardProxy, server: LocalServer) -> None:
    with Client(
        base_url=server.base_url, proxy=proxy.url_with_credentials, retry_policy=fast()
    ) as client:
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
    async with AsyncClient(base_url=server.base_url, proxy=url, retry_policy=fast()) as client:
        assert await client.complete(PROMPT) == REPLY
        async with client.stream(PROMPT) as stream:
            assert [piece async for piece in stream] == server.pieces_for(PROMPT)
        # A dropped stream is resumed exactly through the proxy too.
        server.inject(Fault(drop_after=3))
        async with client.stream(PROMPT) as stream:
            assert [piece async for piece in stream] == server.pieces_for(PROMPT)
        assert PASSWORD not in repr(client)
    assert_carried(proxy, server)
    assert len(server.chat_requests) == 4


# --------------------------------------------------------------------------- from the environment


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
    proxy: ForwardProxy, server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    monkeypatch.setenv("AICHATONLINE_PROXY", proxy.url_with_credentials)
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url)
    async with AsyncClient(retry_policy=fast()) as client:
        assert await client.complete(PROMPT) == REPLY
    assert_carried(proxy, server)


STANDARD_VARIABLES = ["HTTP_PROXY", "http_proxy", "ALL_PROXY"]


@pytest.mark.parametrize("variable", STANDARD_VARIABLES)
def test_standard_proxy_variables_apply(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv(variable, proxy.url)
        with Client(base_url=server.base_url, retry_policy=fast()) as client:
            assert client.complete(PROMPT) == REPLY
        assert_carried(proxy, server)


@pytest.mark.anyio
@pytest.mark.parametrize("variable", STANDARD_VARIABLES)
async def test_async_standard_proxy_variables_apply(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str, variable: str
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv(variable, proxy.url)
        async with AsyncClient(base_url=server.base_url, retry_policy=fast()) as client:
            assert await client.complete(PROMPT) == REPLY
        assert_carried(proxy, server)


def test_no_proxy_bypasses_the_standard_proxy(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with Client(base_url=server.base_url, retry_policy=fast()) as client:
            assert client.complete(PROMPT) == REPLY
        assert proxy.requests == []
        assert proxy.connections == 0


@pytest.mark.anyio
async def test_async_no_proxy_bypasses_the_standard_proxy(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with AsyncClient(base_url=server.base_url, retry_policy=fast()) as client:
            assert await client.complete(PROMPT) == REPLY
        assert proxy.requests == []
        assert proxy.connections == 0


def test_trust_env_false_ignores_the_proxy_variables(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        with Client(base_url=server.base_url, retry_policy=fast(), trust_env=False) as client:
            assert client.proxy is None
            assert client.complete(PROMPT) == REPLY
        assert proxy.connections == 0


@pytest.mark.anyio
async def test_async_trust_env_false_ignores_the_proxy_variables(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    with ForwardProxy("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        async with AsyncClient(
            base_url=server.base_url, retry_policy=fast(), trust_env=False
        ) as client:
            assert client.proxy is None
            assert await client.complete(PROMPT) == REPLY
        assert proxy.connections == 0


def test_explicit_proxy_wins_over_the_variables(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy("http") as chosen, ForwardProxy("http") as other:
        monkeypatch.setenv("AICHATONLINE_PROXY", other.url)
        monkeypatch.setenv("HTTP_PROXY", other.url)
        with Client(base_url=server.base_url, proxy=chosen.url, retry_policy=fast()) as client:
            assert client.complete(PROMPT) == REPLY
        assert chosen.requests
        assert other.requests == []


@pytest.mark.anyio
async def test_async_explicit_proxy_wins_over_the_variables(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    with ForwardProxy("http") as chosen, ForwardProxy("http") as other:
        monkeypatch.setenv("AICHATONLINE_PROXY", other.url)
        monkeypatch.setenv("HTTP_PROXY", other.url)
        async with AsyncClient(
            base_url=server.base_url, proxy=chosen.url, retry_policy=fast()
        ) as client:
            assert await client.complete(PROMPT) == REPLY
        assert chosen.requests
        assert other.requests == []


# --------------------------------------------------------------------------- proxy failures


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_wrong_proxy_credentials(server: LocalServer, kind: str) -> None:
    with ForwardProxy(kind, username=USER, password=PASSWORD) as proxy:  # type: ignore[arg-type]
        wrong = f"{kind}://{USER}:wrong-Pa55word@{proxy.url.split('://')[1]}"
        with Client(base_url=server.base_url, proxy=wrong, retry_policy=fast(1)) as client:
            with pytest.raises(AiChatOnlineError) as info:
                client.complete(PROMPT)
            assert PASSWORD not in repr(client)
            assert "wrong-Pa55word" not in repr(client)
        assert proxy.auth_failures >= 1
    assert_wrong_credentials(info.value, kind)
    assert server.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_async_wrong_proxy_credentials(
    server: LocalServer, anyio_backend: str, kind: str
) -> None:
    with ForwardProxy(kind, username=USER, password=PASSWORD) as proxy:  # type: ignore[arg-type]
        wrong = f"{kind}://{USER}:wrong-Pa55word@{proxy.url.split('://')[1]}"
        async with AsyncClient(
            base_url=server.base_url, proxy=wrong, retry_policy=fast(1)
        ) as client:
            with pytest.raises(AiChatOnlineError) as info:
                await client.complete(PROMPT)
            assert PASSWORD not in repr(client)
            assert "wrong-Pa55word" not in repr(client)
        assert proxy.auth_failures >= 1
    assert_wrong_credentials(info.value, kind)
    assert server.requests == []


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_proxy_that_is_down(server: LocalServer, kind: str) -> None:
    port = closed_port()
    url = f"{kind}://{USER}:{PASSWORD}@127.0.0.1:{port}"
    with Client(base_url=server.base_url, proxy=url, retry_policy=fast(1)) as client:
        with pytest.raises(APIConnectionError) as info:
            client.complete(PROMPT)
        assert PASSWORD not in repr(client)
    assert_names_the_proxy(info.value, port)
    assert server.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_async_proxy_that_is_down(server: LocalServer, anyio_backend: str, kind: str) -> None:
    port = closed_port()
    url = f"{kind}://{USER}:{PASSWORD}@127.0.0.1:{port}"
    async with AsyncClient(base_url=server.base_url, proxy=url, retry_policy=fast(1)) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.complete(PROMPT)
        assert PASSWORD not in repr(client)
    assert_names_the_proxy(info.value, port)
    assert server.requests == []


@pytest.mark.parametrize("kind", [Client, AsyncClient], ids=["sync", "async"])
def test_https_proxy_url_is_accepted(kind: type[Client]) -> None:
    # No TLS proxy here to talk to: the URL is accepted and kept as given.
    client = kind(base_url="http://127.0.0.1:1", proxy="https://127.0.0.1:3128")
    assert client.proxy == "https://127.0.0.1:3128"


@pytest.mark.parametrize("kind", [Client, AsyncClient], ids=["sync", "async"])
def test_a_socks_proxy_without_socksio_is_a_clear_error_at_once(
    monkeypatch: pytest.MonkeyPatch, kind: type[Client]
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
        kind(base_url="http://127.0.0.1:9", proxy="socks5://127.0.0.1:1080")
