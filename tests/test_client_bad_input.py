"""Bad input is an ``InvalidRequestError`` before any I/O: the server sees nothing.

- Constructor arguments: a base URL that cannot be parsed or sent (``http://[::1``, ``\\r\\n``,
  a space, a port out of range, another scheme, a query), a proxy URL of another scheme or
  with a bad port, a timeout or retry count out of range or of the wrong type, ``max_retries``
  together with ``retry_policy``, a ``proxy`` together with ``http_client``, an httpx client of
  the other kind, a header value that would inject a header. The constructors are
  keyword-only, and the attribute setters validate too.
- Call arguments: messages of the wrong shape, a conversation id or token that is not a
  non-empty string (or not ASCII), text that cannot be encoded (a lone surrogate).
- A caller's own httpx client that is already closed says so at the first call.

Every test runs on the blocking ``Client`` and on the ``AsyncClient`` under asyncio and trio
(``tests/faces.py``). What a bad *proxy* URL may show of its password:
``test_secrets.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from aichatonline import Client, InvalidRequestError, RetryPolicy
from aichatonline.testing import LocalServer
from tests import hostile
from tests.faces import Api, backend_of
from tests.helpers import PROMPT

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("isolated")]


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


# --------------------------------------------------------------------------- the constructor

#: name -> the constructor's arguments, given the URL of the server the client must never reach.
BAD_ARGUMENTS: dict[str, Callable[[str], dict[str, object]]] = {
    "base-url-unclosed-ipv6": lambda url: {"base_url": "http://[::1"},
    "base-url-crlf": lambda url: {"base_url": f"{url}\r\nX-Injected: yes"},
    "base-url-space": lambda url: {"base_url": f"{url}/a b"},
    "base-url-port-99999": lambda url: {"base_url": "http://127.0.0.1:99999"},
    "base-url-scheme": lambda url: {"base_url": "ftp://example.com"},
    "base-url-garbage": lambda url: {"base_url": "not a url"},
    "base-url-query": lambda url: {"base_url": "http://host/?q=1"},
    "proxy-scheme": lambda url: {"base_url": url, "proxy": "ftp://127.0.0.1:21"},
    "proxy-gopher": lambda url: {"base_url": url, "proxy": "gopher://127.0.0.1:70"},
    "proxy-no-scheme": lambda url: {"base_url": url, "proxy": "127.0.0.1:8080"},
    "timeout-negative": lambda url: {"base_url": url, "timeout": -1},
    "timeout-zero": lambda url: {"base_url": url, "timeout": 0},
    "timeout-string": lambda url: {"base_url": url, "timeout": "10"},
    "timeout-x": lambda url: {"base_url": url, "timeout": "x"},
    "timeout-inf": lambda url: {"base_url": url, "timeout": float("inf")},
    "max-retries-negative": lambda url: {"base_url": url, "max_retries": -1},
    "max-retries-float": lambda url: {"base_url": url, "max_retries": 1.5},
    "retry-policy-string": lambda url: {"base_url": url, "retry_policy": "x"},
    "max-retries-and-retry-policy": lambda url: {
        "base_url": url,
        "max_retries": 3,
        "retry_policy": RetryPolicy(max_retries=1),
    },
    "strict-string": lambda url: {"base_url": url, "strict": "yes"},
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
async def test_bad_arguments_are_refused_at_construction(api: Api, case: str) -> None:
    with hostile.HostileServer(hostile.route()) as server, pytest.raises(InvalidRequestError):
        api.kind(**BAD_ARGUMENTS[case](server.base_url))
    assert server.connections == 0


async def test_proxy_and_http_client_together_are_refused(api: Api, server: LocalServer) -> None:
    async with api.entered(api.http_client()) as own:
        with pytest.raises(InvalidRequestError, match="proxy"):
            api.kind(base_url=server.base_url, proxy="http://127.0.0.1:3128", http_client=own)
    assert server.requests == []


async def test_constructors_are_keyword_only(api: Api) -> None:
    with pytest.raises(TypeError):
        api.kind("http://127.0.0.1:9")


async def test_setters_validate(api: Api) -> None:
    with hostile.HostileServer(hostile.route()) as server:
        async with api.entered(api.kind(base_url=server.base_url)) as client:
            with pytest.raises(InvalidRequestError):
                client.timeout = "x"
            with pytest.raises(InvalidRequestError):
                client.max_retries = -1
            with pytest.raises(InvalidRequestError):
                client.token = "a token\r\nX-Injected: yes"
            with pytest.raises(AttributeError):
                client.base_url = "http://127.0.0.1:1"
            with pytest.raises(AttributeError):
                client.proxy = "http://127.0.0.1:1"
    assert server.connections == 0


#: Input that cannot go on the wire (made with ``kind(base_url=...)``).
UNSENDABLE: dict[str, Callable[[type, str], object]] = {
    "lone-surrogate": lambda kind, url: kind(base_url=url).stream("a lone surrogate \ud800"),
    "non-ascii-user-agent": lambda kind, url: kind(base_url=url, user_agent="Bot/é"),
    "header-injection-user-agent": lambda kind, url: kind(
        base_url=url, user_agent="Bot\r\nX-Injected: 1"
    ),
    "header-injection-extra-header": lambda kind, url: kind(base_url=url).stream(
        "Hi", extra_headers={"X-Trace": "a\r\nX-Injected: 1"}
    ),
    "non-ascii-token": lambda kind, url: setattr(kind(base_url=url), "token", "tök"),
    "token-with-space": lambda kind, url: setattr(kind(base_url=url), "token", "a b"),
    "proxy-bad-port": lambda kind, url: kind(
        base_url=url, proxy="http://user:secret@proxy:notaport"
    ),
    "wrong-httpx-class": lambda kind, url: kind(
        base_url=url, http_client=httpx.AsyncClient() if kind is Client else httpx.Client()
    ),
}


@pytest.mark.parametrize("bad", list(UNSENDABLE))
async def test_input_that_cannot_be_sent_is_an_invalid_request_before_any_io(
    api: Api, server: LocalServer, bad: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        UNSENDABLE[bad](api.kind, server.base_url)
    assert "secret" not in str(info.value)
    with pytest.raises(InvalidRequestError):
        await api(api.kind(base_url=server.base_url).complete("a lone surrogate \ud800"))
    assert server.requests == []


# --------------------------------------------------------------------------- the call

BAD_MESSAGES = [
    pytest.param([], id="empty-list"),
    pytest.param([{"role": "user"}], id="no-content"),
    pytest.param([{"role": "robot", "content": "x"}], id="bad-role"),
    pytest.param([{"role": "user", "content": 5}], id="content-int"),
    pytest.param([{"role": "user", "content": None}], id="content-none"),
    pytest.param([{"role": "user", "content": [{"type": "image_url"}]}], id="image-part"),
    pytest.param(["hello"], id="message-not-a-mapping"),
    pytest.param({"role": "user", "content": "x"}, id="a-mapping-not-a-list"),
    pytest.param(None, id="none"),
    pytest.param(b"bytes", id="bytes"),
]


@pytest.mark.parametrize("messages", BAD_MESSAGES)
async def test_bad_messages_fail_before_any_request(
    api: Api, client: Any, server: LocalServer, messages: object
) -> None:
    with pytest.raises(InvalidRequestError):
        client.stream(messages)
    with pytest.raises(InvalidRequestError):
        await api(client.complete(messages))
    assert server.requests == []


async def test_bad_conversation_id_and_token(api: Api, client: Any, server: LocalServer) -> None:
    with pytest.raises(InvalidRequestError):
        client.stream(PROMPT, conversation_id="")
    with pytest.raises(InvalidRequestError):
        await api(client.complete(PROMPT, conversation_id=123))
    with pytest.raises(InvalidRequestError):
        client.token = ""
    with pytest.raises(InvalidRequestError):
        client.token = 42
    assert server.requests == []


async def test_a_closed_httpx_client_of_yours_is_a_clear_error(
    api: Api, server: LocalServer
) -> None:
    http = api.http_client()
    await api.close(http)
    with pytest.raises(InvalidRequestError, match="closed"):
        await api(api.kind(base_url=server.base_url, http_client=http).complete("Hi"))
    assert server.requests == []
