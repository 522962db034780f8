"""Review fixes on secrets: a bad proxy URL never echoes its password, and masking is exact.

- An invalid proxy URL's message shows the scheme, ``***@`` and the host at most: no part
  of the password, whatever shape the URL has (the credentials end at the *last* ``@``).
- Masking a short password (``t``) everywhere garbled messages ("Conn***c***ion
  r***fus***d"): a secret of fewer than four characters is now masked only where it stands
  as a credential (a URL's userinfo, an ``Authorization``-like header value); a longer
  one everywhere, as before; the username, next to a password, is not a secret.
- A masked copy of an ``OSError`` keeps its ``errno`` and ``strerror``.
"""

from __future__ import annotations

import errno

import pytest

from aichatonline import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    Client,
    InvalidRequestError,
)
from aichatonline._core.redact import redact, sanitized
from aichatonline.testing import ForwardProxy, LocalServer
from tests import hostile
from tests.helpers import caused_by, closed_port, error_texts, find_cause

pytestmark = pytest.mark.usefixtures("isolated")

# -- 3. an invalid proxy URL never shows its password ------------------------------------------

#: Proxy URLs with the password ``se/cret`` (or ``se?cret``, ``se#cret``), each invalid.
MALFORMED_PROXIES = [
    "http://name:se/cret@proxy:bad",  # a port that is not a number
    "http://name:se/cret@proxy:99999",  # a port out of range
    "http://name:se/cret@",  # no host
    "http://name:se/cret@/path",  # no host, a path
    "ftp://name:se/cret@proxy:21",  # a scheme not supported
    "name:se/cret@proxy:3128",  # no scheme
    "se/cret",  # no scheme, the password alone
    "u:se/cret://x@proxy:1",  # "://" inside the credentials, no scheme before them
    "http://name:se/cret@pro xy:3128",  # a space in the host
    "http://name:se/cret@[::1:3128",  # an IPv6 host not closed
    "http://name:se/cret",  # the host forgotten: the password reads as a port
    "http://name:se?cret@proxy:bad",
    "http://name:se#cret@proxy:bad",
    "socks5://name:se/cret@proxy:x",
]
FRAGMENTS = ("se/cret", "cret", "se", "se?cret", "se#cret", "se%2Fcret")


@pytest.mark.parametrize("proxy", MALFORMED_PROXIES)
@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_an_invalid_proxy_url_never_shows_the_password(kind: type, proxy: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        kind(base_url="http://127.0.0.1:1", proxy=proxy)
    assert info.value.field == "proxy"
    for text in error_texts(info.value):
        for fragment in FRAGMENTS:
            assert fragment not in text, f"{fragment!r} shows in {text!r}"


def test_a_message_shows_the_host_but_not_the_credentials() -> None:
    with pytest.raises(InvalidRequestError) as info:
        Client(base_url="http://127.0.0.1:1", proxy="http://name:se/cret@proxy.example:bad")
    assert "http://***@proxy.example" in str(info.value)


def test_a_password_with_a_slash_reaches_the_proxy_whole(server: LocalServer) -> None:
    # The credentials end at the last "@": "se/cret" is the password, not "se".
    with ForwardProxy(username="name", password="se/cret") as proxy:
        authority = proxy.url.split("://", 1)[1]
        with Client(base_url=server.base_url, proxy=f"http://name:se/cret@{authority}") as client:
            assert client.complete("hi")
            assert "cret" not in repr(client)
        assert proxy.requests  # it went through the proxy


# -- 4. masking: exact for short secrets, errno kept ---------------------------------------------


def test_a_short_password_does_not_garble_a_connection_error() -> None:
    proxy = f"http://e:t@127.0.0.1:{closed_port()}"
    client = Client(base_url="http://example.invalid", proxy=proxy, max_retries=0)
    with client, pytest.raises(APIConnectionError) as info:
        client.complete("hi")
    texts = error_texts(info.value)
    assert any("Connection refused" in text for text in texts), texts
    assert not any("***" in text.replace("http://***@", "") for text in texts), texts
    cause = find_cause(info.value, ConnectionRefusedError)
    assert cause is not None
    assert cause.errno == errno.ECONNREFUSED


@pytest.mark.anyio
async def test_a_short_password_does_not_garble_a_connection_error_async(
    anyio_backend: str,
) -> None:
    proxy = f"http://e:t@127.0.0.1:{closed_port()}"
    async with AsyncClient(base_url="http://example.invalid", proxy=proxy, max_retries=0) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.complete("hi")
    texts = error_texts(info.value)
    # Nothing masked but the proxy URL's credentials (asyncio says "Connect call failed",
    # trio "all attempts to connect ... failed").
    assert not any("***" in text.replace("http://***@", "") for text in texts), texts
    assert caused_by(info.value, OSError)


def test_a_long_password_is_masked_wherever_it_appears() -> None:
    password = "pr0xy-Pa55word"
    text = f"refused: {password}; said {password!r} at http://u:{password}@h:1/"
    masked = redact(text, password)
    assert password not in masked
    assert masked == "refused: ***; said '***' at http://***@h:1/"


@pytest.mark.parametrize("secret", ["t", "ab", "x9z"])
def test_a_short_secret_is_masked_where_it_stands_as_a_credential(secret: str) -> None:
    # In a URL's userinfo, and in credential header values (text, dict repr, byte pairs).
    assert redact(f"GET http://user:{secret}@host:1/ failed", secret) == (
        "GET http://***@host:1/ failed"
    )
    assert redact(f"{{'Proxy-Authorization': 'Basic {secret}'}}", secret) == (
        "{'Proxy-Authorization': 'Basic ***'}"
    )
    assert redact(f"Authorization: Bearer {secret}\r\n", secret) == "Authorization: Bearer ***\r\n"
    assert redact(f"[(b'UniqueId', b'{secret}')]", secret) == "[(b'UniqueId', b'***')]"
    # ... and nowhere else: ordinary words stay as they are.
    sentence = "Connection refused by the proxy at 127.0.0.1 (t, ab, x9z)"
    assert redact(sentence, secret) == sentence


def test_the_username_next_to_a_password_is_not_masked() -> None:
    from aichatonline._config import parse_proxy

    proxy = parse_proxy("http://e:long-password@127.0.0.1:3128")
    assert "e" not in proxy.secrets
    assert "long-password" in proxy.secrets
    # Without a password the username is the credential (an API key given as the user).
    assert "key-1234" in parse_proxy("http://key-1234@127.0.0.1:3128").secrets


def test_a_masked_os_error_keeps_its_errno() -> None:
    password = "pr0xy-Pa55word"
    original = ConnectionRefusedError(errno.ECONNREFUSED, f"refused by {password}")
    copy = sanitized(original, password)
    assert copy is not original
    assert type(copy) is ConnectionRefusedError
    assert isinstance(copy, OSError)
    assert copy.errno == errno.ECONNREFUSED
    assert copy.strerror == "refused by ***"
    assert str(copy) == f"[Errno {errno.ECONNREFUSED}] refused by ***"

    with_file = FileNotFoundError(errno.ENOENT, "No such file", f"/tmp/{password}")
    copy = sanitized(with_file, password)
    assert isinstance(copy, OSError)
    assert (copy.errno, copy.strerror, copy.filename) == (errno.ENOENT, "No such file", "/tmp/***")
    assert password not in str(copy)

    plain = OSError(f"plain {password}")
    copy = sanitized(plain, password)
    assert isinstance(copy, OSError)
    assert copy.errno is None
    assert str(copy) == "plain ***"


# -- a proxy that echoes its credentials in an error page ---------------------------------------

ECHOED_PASSWORD = "pr0xy-Pa55word"


@pytest.mark.parametrize("token", [None, "TOK-given-1234"], ids=["token-fetch", "chat"])
def test_a_proxy_echoing_its_password_in_an_error_page_is_masked(token: str | None) -> None:
    # A proxy's 502 page that quotes the request's credentials: the password must not
    # reach the error's message, body or headers, on the token fetch or the chat request.
    page = f"Bad gateway for user:{ECHOED_PASSWORD} ({ECHOED_PASSWORD})".encode()
    echoing = hostile.reply(502, page, {"X-Debug": f"auth={ECHOED_PASSWORD}"})
    with hostile.HostileServer(echoing) as proxy_server:
        port = proxy_server.base_url.rsplit(":", 1)[1]
        proxy = f"http://user:{ECHOED_PASSWORD}@127.0.0.1:{port}"
        with Client(base_url="http://127.0.0.1:1", proxy=proxy, max_retries=0) as client:
            if token is not None:
                client.token = token
            with pytest.raises(APIStatusError) as info:
                client.complete("Hi")
    error = info.value
    assert error.status_code == 502
    assert ECHOED_PASSWORD not in str(error.body)
    assert ECHOED_PASSWORD not in repr(error.headers)
    for text in error_texts(error):
        assert ECHOED_PASSWORD not in text
    assert proxy_server.requests  # the proxy was asked: the page did come back
