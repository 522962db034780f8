"""Issue 8, item 4: secrets never leave.

- A 307 to another origin is never followed, even with the caller's
  ``httpx.Client(follow_redirects=True)``: the other server receives neither the token nor
  the prompt, and its answer is not taken.
- httpx failing on chunked framing that echoes the token (``illegal chunk header:
  bytearray(b'TOK...')``) leaks it nowhere: not in ``str``/``repr`` of the error, of any
  error chained to it, in ``repr(client)`` or a log record.
- A proxy password with ``@``, spaces, quotes or ``) `` is fully masked in ``repr(client)``
  and in httpcore's SOCKS debug log.
- ``base_url`` with ``user:pass@`` is refused (``InvalidRequestError``) without printing it.

Sync client, and async client on asyncio and trio, against ``tests/hostile.py`` servers.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import httpx
import pytest

from aichatonline import (
    AiChatOnlineError,
    APIError,
    APIStatusError,
    AsyncClient,
    Client,
    InvalidRequestError,
    StreamInterrupted,
)
from aichatonline.testing import ForwardProxy
from tests import hostile
from tests.helpers import fast

SECRET_PROMPT = "my secret plan: PROMPT-5e11c0de"
USER = "proxy-user"
#: A password with every character the issue names: ``@``, spaces, quotes, ``) ``.
PASSWORD = "s3cr3t) t41l-x9@h \"q9'z w0rd"
#: Pieces of the password that must not show up anywhere, in any encoding.
PASSWORD_FRAGMENTS = {
    "s3cr3t",
    "t41l-x9",
    "q9'z",
    "q9%27z",
    "w0rd",
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
}


pytestmark = pytest.mark.usefixtures("isolated")


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every error chained to it (causes and contexts, all branches)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


def shown(exc: BaseException | None, caplog: pytest.LogCaptureFixture | None = None) -> list[str]:
    """Everything a user could see: the error chain's messages and reprs, the log records."""
    texts = [text for error in chain(exc) for text in (str(error), repr(error))]
    if caplog is not None:
        texts.append(caplog.text)
        for record in caplog.records:
            texts += [record.getMessage(), repr(record.args), record.exc_text or ""]
    return texts


def assert_hidden(texts: Iterable[str], secrets: Iterable[str]) -> None:
    for text in texts:
        for secret in secrets:
            at = text.find(secret)
            assert at < 0, f"{secret!r} leaked: ...{text[max(0, at - 120) : at + 60]!r}..."


# --------------------------------------------------------------------------- redirects


def _redirecting(target: hostile.HostileServer, endpoint: str) -> hostile.Handler:
    if endpoint == "chat":
        return hostile.route(chat=hostile.redirect(target.base_url + hostile.CHAT_PATH))
    return hostile.route(token_=hostile.redirect(target.base_url + hostile.TOKEN_PATH))


def _check_not_followed(
    outcome: hostile.Outcome, target: hostile.HostileServer, origin: hostile.HostileServer
) -> None:
    assert isinstance(outcome.error, APIStatusError), outcome
    assert outcome.error.status_code == 307
    assert outcome.text == ""  # the other server's answer was not taken
    assert_hidden([target.received.decode("latin-1")], [hostile.TOKEN, SECRET_PROMPT])
    assert target.requests == []
    assert_hidden(shown(outcome.error), [hostile.TOKEN])
    assert len(origin.requests) >= 1


@pytest.mark.parametrize("own_client", [True, False], ids=["own-httpx-client", "sdk-pool"])
@pytest.mark.parametrize("endpoint", ["chat", "token"])
def test_redirect_to_another_origin_is_never_followed_sync(own_client: bool, endpoint: str) -> None:
    target = hostile.HostileServer(hostile.route())
    origin = hostile.HostileServer(_redirecting(target, endpoint))
    http = httpx.Client(follow_redirects=True) if own_client else None
    try:
        with (
            target,
            origin,
            Client(base_url=origin.base_url, http_client=http, retry_policy=fast(1)) as client,
        ):
            outcome = hostile.drain(client.stream(SECRET_PROMPT))
    finally:
        if http is not None:
            http.close()
    _check_not_followed(outcome, target, origin)


@pytest.mark.anyio
@pytest.mark.parametrize("own_client", [True, False], ids=["own-httpx-client", "sdk-pool"])
@pytest.mark.parametrize("endpoint", ["chat", "token"])
async def test_redirect_to_another_origin_is_never_followed_async(
    anyio_backend: str, own_client: bool, endpoint: str
) -> None:
    target = hostile.HostileServer(hostile.route())
    origin = hostile.HostileServer(_redirecting(target, endpoint))
    http = httpx.AsyncClient(follow_redirects=True) if own_client else None
    try:
        with target, origin:
            async with AsyncClient(
                base_url=origin.base_url, http_client=http, retry_policy=fast(1)
            ) as client:
                outcome = await hostile.adrain(client.stream(SECRET_PROMPT))
    finally:
        if http is not None:
            await http.aclose()
    _check_not_followed(outcome, target, origin)


# --------------------------------------------------------------------------- an echoed token


def echo_token_in_framing(text_first: bool) -> hostile.Handler:
    """A chunked answer (one piece of text, or none) whose next chunk header is the token."""

    def handle(request: hostile.Request, conn: hostile.Conn) -> bool:
        conn.send(hostile.CHUNKED_HEAD)
        if text_first:
            conn.send(hostile.chunk(hostile.ndjson("Hello")))
            conn.pause(0.2)  # the client reads (and delivers) the text first
        conn.send(request.headers["uniqueid"].encode() + b"\r\n")
        return False

    return handle


def _check_echo(
    outcome: hostile.Outcome, text_first: bool, texts: list[str], server: hostile.HostileServer
) -> None:
    assert isinstance(outcome.error, APIError), outcome
    if text_first:
        assert isinstance(outcome.error, StreamInterrupted), outcome
        assert outcome.error.partial == outcome.text == "Hello"
    else:
        assert not isinstance(outcome.error, StreamInterrupted), outcome
    assert server.chat_requests  # the framing error really happened
    assert_hidden(texts, [hostile.TOKEN])


@pytest.mark.parametrize("text_first", [True, False], ids=["after-text", "before-text"])
def test_token_echoed_in_chunk_framing_never_leaks_sync(
    text_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = hostile.HostileServer(hostile.route(chat=echo_token_in_framing(text_first)))
    with server, Client(base_url=server.base_url, retry_policy=fast(1)) as client:
        outcome = hostile.drain(client.stream("Hi"))
        texts = [*shown(outcome.error, caplog), repr(client), repr(outcome.stream)]
    _check_echo(outcome, text_first, texts, server)


@pytest.mark.anyio
@pytest.mark.parametrize("text_first", [True, False], ids=["after-text", "before-text"])
async def test_token_echoed_in_chunk_framing_never_leaks_async(
    anyio_backend: str, text_first: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with hostile.HostileServer(hostile.route(chat=echo_token_in_framing(text_first))) as server:
        async with AsyncClient(base_url=server.base_url, retry_policy=fast(1)) as client:
            outcome = await hostile.adrain(client.stream("Hi"))
            texts = [*shown(outcome.error, caplog), repr(client), repr(outcome.stream)]
    _check_echo(outcome, text_first, texts, server)


# --------------------------------------------------------------------------- proxy passwords

#: The password as users write it: percent-encoded (correct), or pasted as it is.
PROXY_FORMS = {
    "encoded": f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:9",
    "raw": f"http://{USER}:{PASSWORD}@127.0.0.1:9",
}


def _proxy_texts(make: type[Client] | type[AsyncClient], proxy: str) -> list[str]:
    """What a user sees of a client made with ``proxy``: its repr, or the error refusing it."""
    try:
        client = make(base_url="http://127.0.0.1:9", proxy=proxy)
    except InvalidRequestError as exc:  # refusing the raw form is fine, if it says nothing
        return shown(exc)
    texts = [repr(client), str(client)]
    if isinstance(client, Client):
        client.close()
    return texts


@pytest.mark.parametrize("form", list(PROXY_FORMS))
def test_proxy_password_is_fully_masked_in_repr_sync(form: str) -> None:
    assert_hidden(_proxy_texts(Client, PROXY_FORMS[form]), PASSWORD_FRAGMENTS)


@pytest.mark.anyio
@pytest.mark.parametrize("form", list(PROXY_FORMS))
async def test_proxy_password_is_fully_masked_in_repr_async(anyio_backend: str, form: str) -> None:
    assert_hidden(_proxy_texts(AsyncClient, PROXY_FORMS[form]), PASSWORD_FRAGMENTS)


@pytest.fixture
def socks_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy("socks5", username=USER, password=PASSWORD) as proxy:
        yield proxy


def test_socks_password_is_masked_in_the_debug_log_sync(
    socks_proxy: ForwardProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = hostile.HostileServer(hostile.route())
    with server, Client(base_url=server.base_url, proxy=socks_proxy.url_with_credentials) as client:
        assert client.complete("Hi") == "Hello"
        texts = [*shown(None, caplog), repr(client)]
    assert socks_proxy.connections >= 1
    assert_hidden(texts, PASSWORD_FRAGMENTS)


@pytest.mark.anyio
async def test_socks_password_is_masked_in_the_debug_log_async(
    anyio_backend: str, socks_proxy: ForwardProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with hostile.HostileServer(hostile.route()) as server:
        async with AsyncClient(
            base_url=server.base_url, proxy=socks_proxy.url_with_credentials
        ) as client:
            assert await client.complete("Hi") == "Hello"
            texts = [*shown(None, caplog), repr(client)]
    assert socks_proxy.connections >= 1
    assert_hidden(texts, PASSWORD_FRAGMENTS)


# --------------------------------------------------------------------------- base_url credentials

BASE_PASSWORD = "B4seS3cret"


def _base_url_with_credentials(server: hostile.HostileServer) -> str:
    return f"http://someone:{BASE_PASSWORD}@127.0.0.1:{server.port}"


def _refused(make: type[Client] | type[AsyncClient], url: str) -> AiChatOnlineError:
    with pytest.raises(InvalidRequestError) as caught:
        make(base_url=url)
    return caught.value


def test_base_url_with_credentials_is_refused_without_showing_them_sync() -> None:
    with hostile.HostileServer(hostile.route()) as server:
        error = _refused(Client, _base_url_with_credentials(server))
    assert_hidden(shown(error), [BASE_PASSWORD])
    assert server.connections == 0


@pytest.mark.anyio
async def test_base_url_with_credentials_is_refused_without_showing_them_async(
    anyio_backend: str,
) -> None:
    with hostile.HostileServer(hostile.route()) as server:
        error = _refused(AsyncClient, _base_url_with_credentials(server))
    assert_hidden(shown(error), [BASE_PASSWORD])
    assert server.connections == 0
