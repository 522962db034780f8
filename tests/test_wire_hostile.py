"""What broken and hostile servers get from the SDK now that httpx carries the bytes.

Each case is one the SDK's own HTTP/1.1 stack got wrong, run on the blocking client, asyncio
and trio against raw socket servers (``tests/hostile.py``):

- bytes a server sent on an idle connection (stray bytes after an answer, the 408 of an idle
  timeout) are never read as the next request's answer;
- a request the server received and then dropped is sent again only as a counted retry;
- an error answer written while a large prompt uploads is read when the server lets it be
  (a lingering close); when it resets the connection instead, the error is still typed and
  the body went up once;
- framing that HTTP allows is read (obs-fold headers, long chunk extensions, trailers), and
  framing it refuses (``Transfer-Encoding: gzip, chunked``) is an error, never a wrong text;
- cookies follow RFC 6265 (deleted, path-bound and Secure cookies are not sent back);
- ``NO_PROXY`` names an IPv6 host; a proxy's 407 is a non-retried error that names it.
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any

import anyio
import pytest

from aichatonline import APIConnectionError, APIError, APIStatusError, ProtocolError
from aichatonline.testing import ForwardProxy
from tests import hostile
from tests.faces import Api, backend_of
from tests.helpers import assert_ours

pytestmark = pytest.mark.usefixtures("isolated")

TOKEN_BODY = json.dumps({"code": 200, "data": hostile.TOKEN}).encode()
HELLO = "Hello"


@pytest.fixture
def anyio_backend(flavor: str) -> str:
    return backend_of(flavor)


@contextlib.asynccontextmanager
async def client_of(api: Api, server: Any, **options: Any) -> Any:
    options.setdefault("max_retries", 0)
    options.setdefault("timeout", 10)
    made = api.client(server, **options)
    try:
        yield made
    finally:
        await api.close(made)


# --------------------------------------------------------------------------- idle connections


@pytest.mark.anyio
async def test_stray_bytes_after_an_answer_are_not_the_next_answer(api: Api) -> None:
    # The junk arrives on the idle connection: httpx checks the socket before reusing it.
    stray = hostile.response(200, hostile.ndjson("WRONG"))
    token = hostile.raw(hostile.response(200, TOKEN_BODY), 0.1, stray, keep=True)
    with hostile.HostileServer(hostile.route(token_=token)) as server:
        async with client_of(api, server) as client:
            await api(client.get_token())
            await anyio.sleep(0.3)
            assert await api(client.complete("hi")) == HELLO
        assert server.connections == 2  # the dirty connection was not used again


def _token_then_idle_timeout(request: hostile.Request, conn: hostile.Conn) -> bool:
    conn.send(hostile.response(200, TOKEN_BODY))
    conn.pause(0.2)
    conn.send(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    return False


@pytest.mark.anyio
async def test_an_idle_timeouts_408_is_not_the_next_answer(api: Api) -> None:
    with hostile.HostileServer(hostile.route(token_=_token_then_idle_timeout)) as server:
        async with client_of(api, server) as client:
            await api(client.get_token())
            await anyio.sleep(0.5)  # the server timed the idle connection out meanwhile
            assert await api(client.complete("hi")) == HELLO
        assert server.connections == 2


# --------------------------------------------------------------------------- dropped requests


def _received_then_dropped(request: hostile.Request, conn: hostile.Conn) -> bool:
    return False  # the whole request was read (read_bodies): close without a word


@pytest.mark.anyio
@pytest.mark.parametrize("retries", [0, 2])
async def test_a_request_received_then_dropped_is_resent_only_as_a_counted_retry(
    api: Api, retries: int
) -> None:
    with hostile.HostileServer(hostile.route(chat=_received_then_dropped)) as server:
        async with client_of(api, server, max_retries=retries) as client:
            await api(client.get_token())  # the chat request goes on a reused connection
            stream = client.stream("hi")
            pieces, error = await api.collect(stream)
    assert isinstance(error, APIConnectionError), repr(error)
    assert pieces == []
    assert len(server.chat_requests) == retries + 1
    assert stream.retries == retries


# --------------------------------------------------------------------------- early answers

BIG_PROMPT = "x" * (8 * 1024 * 1024)
TOO_LARGE = b'{"error": "too large"}'
REFUSAL = (
    b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(TOO_LARGE), TOO_LARGE)
)


def _refuse_then_linger(request: hostile.Request, conn: hostile.Conn) -> bool:
    """Answer 413 at once, stop writing, read (and drop) the upload until the client is done,
    as a careful server does, so that the client can read the answer."""
    conn.send(REFUSAL)
    sock = conn.sock
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5.0)
        while sock.recv(1 << 20):
            pass
    return False


def _refuse_then_reset(request: hostile.Request, conn: hostile.Conn) -> bool:
    """Answer 413 and close at once, the upload unread: the kernel resets the connection."""
    conn.send(REFUSAL)
    return False


@pytest.mark.anyio
async def test_an_early_413_is_read_when_the_server_lingers(api: Api) -> None:
    handler = hostile.route(chat=_refuse_then_linger)
    with hostile.HostileServer(handler, read_bodies=False) as server:
        async with client_of(api, server, max_retries=2) as client:
            client.token = hostile.TOKEN  # a server that reads no bodies answers one request
            with pytest.raises(APIStatusError) as info:
                await api(client.complete(BIG_PROMPT))
    assert info.value.status_code == 413
    assert "too large" in info.value.body
    assert len(server.chat_requests) == 1  # a 413 is not retried: the body went up once


@pytest.mark.anyio
async def test_an_early_413_then_a_reset_is_a_typed_error_and_one_upload(api: Api) -> None:
    # With the connection reset under an upload in progress, the 413 is lost with it when
    # the reset arrives before httpx reads the answer (on an event loop it mostly does:
    # httpx cannot do better). Either way the error is typed, and nothing is re-sent.
    handler = hostile.route(chat=_refuse_then_reset)
    with hostile.HostileServer(handler, read_bodies=False) as server:
        async with client_of(api, server, max_retries=0) as client:
            client.token = hostile.TOKEN  # a server that reads no bodies answers one request
            with pytest.raises(APIError) as info:
                await api(client.complete(BIG_PROMPT))
    assert_ours(info.value)
    if isinstance(info.value, APIStatusError):
        assert info.value.status_code == 413
    else:
        assert isinstance(info.value, APIConnectionError), repr(info.value)
    assert len(server.chat_requests) == 1


# --------------------------------------------------------------------------- framing


def _chunked(*chunks: bytes, head: bytes = hostile.CHUNKED_HEAD, tail: bytes = b"") -> Any:
    return hostile.raw(head, *chunks, b"0\r\n" + tail + b"\r\n", keep=True)


LINE = hostile.ndjson(HELLO)
FRAMINGS = {
    "obs-fold header": _chunked(
        hostile.chunk(LINE),
        head=hostile.CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nX-Folded: one\r\n two\r\n\r\n"),
    ),
    "2 KiB chunk extension": _chunked(b"%x;note=%s\r\n%s\r\n" % (len(LINE), b"x" * 2048, LINE)),
    "trailers": _chunked(hostile.chunk(LINE), tail=b"X-Checksum: 1234\r\nX-Other: y\r\n"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("framing", list(FRAMINGS))
async def test_framing_that_http_allows_is_read(api: Api, framing: str) -> None:
    with hostile.HostileServer(hostile.route(chat=FRAMINGS[framing])) as server:
        async with client_of(api, server) as client:
            assert await api(client.complete("hi")) == HELLO


@pytest.mark.anyio
@pytest.mark.parametrize("coding", ["gzip, chunked", "chunked, chunked"])
async def test_a_transfer_coding_httpx_refuses_is_an_error_not_a_wrong_body(
    api: Api, coding: str
) -> None:
    head = hostile.CHUNKED_HEAD.replace(b"chunked", coding.encode())
    chat = _chunked(hostile.chunk(LINE), head=head)
    with hostile.HostileServer(hostile.route(chat=chat)) as server:
        async with client_of(api, server) as client:
            with pytest.raises((ProtocolError, APIConnectionError)) as info:
                await api(client.complete("hi"))
    assert_ours(info.value)


# --------------------------------------------------------------------------- cookies


def _token_with_cookies(request: hostile.Request, conn: hostile.Conn) -> bool:
    cookies = [
        "session=abc; Path=/",
        "gone=1; Max-Age=0",
        "expired=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "elsewhere=1; Path=/other",
        "secure=1; Secure",
    ]
    head = "".join(f"Set-Cookie: {cookie}\r\n" for cookie in cookies)
    conn.send(
        f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(TOKEN_BODY)}\r\n\r\n".encode() + TOKEN_BODY
    )
    return True


def _chat_deleting_the_session(request: hostile.Request, conn: hostile.Conn) -> bool:
    head = hostile.CHUNKED_HEAD.replace(
        b"\r\n\r\n", b"\r\nSet-Cookie: session=; Path=/; Max-Age=0\r\n\r\n"
    )
    return bool(_chunked(hostile.chunk(LINE), head=head)(request, conn))


@pytest.mark.anyio
async def test_cookies_follow_their_attributes(api: Api) -> None:
    handler = hostile.route(token_=_token_with_cookies, chat=_chat_deleting_the_session)
    with hostile.HostileServer(handler) as server:
        async with client_of(api, server) as client:
            assert await api(client.complete("hi")) == HELLO
            assert await api(client.complete("hi again")) == HELLO
    first, second = server.chat_requests
    assert first.headers.get("cookie") == "session=abc"  # none deleted, elsewhere or Secure
    assert "cookie" not in second.headers  # the answer deleted it


# --------------------------------------------------------------------------- proxies


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def nowhere() -> str:
    """A proxy URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.anyio
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_no_proxy_names_an_ipv6_host(
    api: Api, monkeypatch: pytest.MonkeyPatch, nowhere: str
) -> None:
    monkeypatch.setenv("HTTP_PROXY", nowhere)
    monkeypatch.setenv("NO_PROXY", "::1")
    with hostile.HostileServer(hostile.route(), host="::1") as server:
        async with client_of(api, server) as client:
            assert await api(client.complete("hi")) == HELLO


@pytest.mark.anyio
async def test_a_proxys_407_is_not_retried_and_names_the_proxy(api: Api) -> None:
    with ForwardProxy("http", username="user", password="right-password") as proxy:
        wrong = proxy.url.replace("://", "://user:wrong-password@")
        shown = proxy.url.split("://", 1)[1]
        # https: the proxy is asked for a tunnel (CONNECT), which it refuses.
        client = api.client(_Url("https://example.invalid"), proxy=wrong, max_retries=2, timeout=10)
        try:
            with pytest.raises(APIConnectionError) as info:
                await api(client.complete("hi"))
        finally:
            await api.close(client)
        assert proxy.connections == 1  # not retried
        assert proxy.auth_failures == 1
    assert_ours(info.value)
    assert "407" in str(info.value)
    assert shown in str(info.value)  # the proxy, named
    assert "wrong-password" not in str(info.value)
    assert not info.value.retryable


class _Url:
    """What ``Api.client`` needs of a server: its base URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
