"""How a client is configured: arguments, the environment, and their defaults.

- ``base_url`` falls back to ``AICHATONLINE_BASE_URL`` and defaults to the real service; an
  explicit one wins. A non-ASCII path goes out percent-encoded as UTF-8 and a non-ASCII host
  IDNA-encoded; one that cannot be encoded is refused when the client is made.
- ``proxy`` falls back to ``AICHATONLINE_PROXY``; an https proxy in front of the https
  service is taken (TLS inside TLS), its credentials masked in ``repr``.
- A caller's own httpx client (``http_client=``) carries every request and is left open.
- ``timeout`` takes a number, ``None``, ``Timeout`` or ``httpx.Timeout`` (the setter too);
  ``max_retries`` is a shortcut for the retry policy, ``0`` sending one request;
  ``aichatonline.set_testing(True)`` turns the back-off off.

Every test runs on the blocking ``Client`` and on the ``AsyncClient`` under asyncio and trio
(``tests/faces.py``). Arguments refused: ``test_client_bad_input.py``; proxies at work:
``test_client_proxy.py``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aichatonline
from aichatonline import (
    DEFAULT_BASE_URL,
    APIError,
    APIStatusError,
    InvalidRequestError,
    RetryPolicy,
    Timeout,
)
from aichatonline._core import normalize_base_url
from aichatonline.testing import Fault, LocalServer
from tests import hostile
from tests.faces import Api, backend_of
from tests.helpers import PROMPT, REPLY, assert_ours, closed_port, fast

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


# --------------------------------------------------------------------------- base_url


async def test_base_url_falls_back_to_the_environment(
    api: Api, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", server.base_url + "/")
    async with api.entered(api.kind(retry_policy=fast())) as client:
        assert client.base_url == server.base_url
        assert await api(client.complete(PROMPT)) == REPLY
    assert len(server.chat_requests) == 1


async def test_explicit_base_url_wins_over_the_environment(
    api: Api, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    async with api.entered(api.client(server)) as client:
        assert await api(client.complete(PROMPT)) == REPLY


async def test_base_url_defaults_to_the_real_service(api: Api) -> None:
    async with api.entered(api.kind()) as client:
        assert client.base_url == DEFAULT_BASE_URL == "https://aichatonlineorg.erweima.ai"
        assert client.proxy is None
        assert client.max_retries == 2
        assert client.timeout == aichatonline.DEFAULT_TIMEOUT
        assert client.timeout.total is None


def _head(server: hostile.HostileServer) -> bytes:
    """The one request head the server received, as bytes."""
    assert len(server.requests) == 1
    head, _, _ = server.received.partition(b"\r\n\r\n")
    return head


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


async def _complete(api: Api, **options: Any) -> None:
    """``complete("hi")`` with a client made with ``options`` (no retries), which fails."""
    async with api.entered(api.kind(max_retries=0, timeout=10, **options)) as client:
        await api(client.complete("hi"))


async def test_a_non_ascii_path_goes_out_percent_encoded(api: Api) -> None:
    with hostile.HostileServer(hostile.reply(404)) as server:
        base_url = f"{server.base_url}/日本/ü%20x/"
        prefix = "/%E6%97%A5%E6%9C%AC/%C3%BC%20x"  # the existing %20 is kept as it is
        assert api.kind(base_url=base_url).base_url == f"{server.base_url}{prefix}"
        with pytest.raises(APIStatusError) as info:
            await _complete(api, base_url=base_url)
        head = _head(server)
    assert_ours(info.value)
    assert info.value.status_code == 404
    assert head.isascii()
    assert head.startswith(f"GET {prefix}/api/v1/user/getUniqueId?".encode())
    assert _header(head, b"Referer") == f"{server.base_url}{prefix}/chatgpt/chat/".encode()


async def test_an_idn_host_goes_out_idna_encoded(api: Api) -> None:
    # Through an HTTP proxy (a raw server here), an http:// request names its host in full.
    with hostile.HostileServer(hostile.reply(404)) as proxy:
        with pytest.raises(APIStatusError) as info:
            await _complete(api, base_url="http://Bücher.example/ü", proxy=proxy.base_url)
        head = _head(proxy)
    assert_ours(info.value)
    assert head.isascii()
    target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
    assert target.startswith("http://xn--bcher-kva.example/%C3%BC/api/v1/user/getUniqueId?")
    assert _header(head, b"Host") == b"xn--bcher-kva.example"


@pytest.mark.parametrize(
    "base_url",
    [
        "http://bü..example",  # an empty label
        "http://" + "ü" * 64 + ".example",  # a label too long for DNS
        "http://example.com/\udc80",  # a lone surrogate: no UTF-8 for it
        "http://bücher.example:８０/",  # a port in non-ASCII digits
    ],
    ids=["empty-label", "long-label", "surrogate", "fullwidth-port"],
)
async def test_a_base_url_that_cannot_be_encoded_is_refused_up_front(
    api: Api, base_url: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        api.kind(base_url=base_url)
    assert info.value.field == "base_url"
    assert "Unicode" not in type(info.value).__name__


# Path characters that are not a URL's delimiters, spaces or controls.
PATH_TEXT = st.text(
    st.characters(
        blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
        blacklist_characters="?#@%\\\x7f",
    ),
    max_size=30,
)


@given(segments=st.lists(PATH_TEXT, min_size=1, max_size=4))
def test_any_unicode_path_becomes_ascii_and_decodes_back(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    url = normalize_base_url(f"http://example.com{path}")
    assert url.isascii()
    assert unquote(urlsplit(url).path) == path.rstrip("/")


def test_an_ascii_base_url_is_unchanged() -> None:
    url = "http://Example.COM:8080/Pre%2Ffix"
    assert normalize_base_url(url) == url


# --------------------------------------------------------------------------- proxy


async def test_proxy_falls_back_to_the_environment(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AICHATONLINE_PROXY", "socks5://127.0.0.1:1080")
    async with api.entered(api.kind()) as client:
        assert client.proxy == "socks5://127.0.0.1:1080"
    async with api.entered(api.kind(proxy="https://127.0.0.1:3128")) as client:
        assert client.proxy == "https://127.0.0.1:3128"
    async with api.entered(
        api.kind(proxy="https://127.0.0.1:3128", base_url="http://127.0.0.1:1")
    ) as client:
        assert client.proxy == "https://127.0.0.1:3128"


async def test_an_https_proxy_in_front_of_the_https_service_is_taken(api: Api) -> None:
    # httpcore runs TLS inside TLS, on blocking sockets too (the SDK's own stack could not).
    client = api.kind(
        base_url="https://example.invalid", proxy="https://user:pw-1234@127.0.0.1:3128"
    )
    async with api.entered(client):
        assert client.proxy == "https://user:pw-1234@127.0.0.1:3128"
        assert "pw-1234" not in repr(client)


# --------------------------------------------------------------------------- your own httpx client


async def test_own_http_client_is_used_and_left_open(api: Api, server: LocalServer) -> None:
    seen: list[str] = []
    async with api.entered(api.http_client(event_hooks=api.recording_hooks(seen))) as own:
        client = api.kind(base_url=server.base_url, http_client=own, retry_policy=fast())
        assert await api(client.complete(PROMPT)) == REPLY
        assert (await api.run(client.stream(PROMPT))).text == REPLY
        # Every request went through your client.
        assert seen == [
            "GET /api/v1/user/getUniqueId",
            "POST /aichatonline/api/chat/gpt",
            "POST /aichatonline/api/chat/gpt",
        ]
        await api.close(client)
        assert not own.is_closed
        assert (await api(own.get(server.base_url + "/nowhere"))).status_code == 404


# --------------------------------------------------------------------------- time and retries


async def test_timeout_forms_are_accepted(api: Api, server: LocalServer) -> None:
    forms = [
        5.0,
        None,
        Timeout(total=5.0, connect=1.0, read=2.0, write=1.0, pool=1.0),
        Timeout(5.0, first_piece=3.0),
        httpx.Timeout(3.0),
    ]
    for timeout in forms:
        async with api.entered(api.client(server, timeout=timeout)) as client:
            assert await api(client.complete(PROMPT)) == REPLY
    # A number sets the four per-operation limits, as in httpx; no whole-call bound.
    async with api.entered(api.kind(base_url=server.base_url, timeout=2.5)) as client:
        assert client.timeout == Timeout(connect=2.5, read=2.5, write=2.5, pool=2.5)
        assert (client.timeout.total, client.timeout.first_piece) == (None, None)
    timeout = httpx.Timeout(3.0, connect=1.0)
    async with api.entered(api.kind(base_url=server.base_url, timeout=timeout)) as client:
        assert client.timeout == Timeout(3.0, connect=1.0)
    async with api.entered(api.kind(base_url=server.base_url, timeout=None)) as client:
        assert client.timeout == Timeout(None)
        assert client.timeout.total is None
        client.timeout = 4  # converted, as httpx's setter does
        assert client.timeout == Timeout(4.0)


async def test_max_retries_is_a_shortcut_for_the_policy(api: Api, server: LocalServer) -> None:
    async with api.entered(api.kind(base_url=server.base_url, max_retries=5)) as client:
        assert client.max_retries == 5
        assert client.retry_policy.max_retries == 5
        client.max_retries = 1
        assert client.retry_policy.max_retries == 1


async def test_max_retries_zero_sends_one_request(api: Api, server: LocalServer) -> None:
    server.inject(Fault(status=503))
    async with api.entered(api.kind(base_url=server.base_url, max_retries=0)) as client:
        with pytest.raises(APIError):
            await api(client.complete(PROMPT))
    assert len(server.chat_requests) == 1


async def test_set_testing_turns_the_back_off_off(api: Api, server: LocalServer) -> None:
    slow = RetryPolicy(max_retries=2, initial_backoff=2.0, max_backoff=2.0, jitter=0.0)
    server.inject(Fault(status=503), Fault(status=503))
    with aichatonline.set_testing(True):
        async with api.entered(api.kind(base_url=server.base_url, retry_policy=slow)) as client:
            assert aichatonline.is_testing()
            started = time.monotonic()
            assert await api(client.complete(PROMPT)) == REPLY
            assert time.monotonic() - started < 1.0
    assert not aichatonline.is_testing()
    assert len(server.chat_requests) == 3
