"""Review fix: ``AiChatOnline.grab_token`` with an aiohttp session never follows a redirect.

aiohttp follows redirects by default; the rest of the SDK never does (the token request,
and the token it brings back, belong to the configured origin only). A token endpoint that
redirects elsewhere is the clients' redirect error, and the other origin receives nothing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from aichatonline import AiChatOnline, APIStatusError
from tests.helpers import assert_ours, fast
from tests.test_review_network import RawServer, read_head

pytestmark = pytest.mark.usefixtures("isolated", "no_backoff")

TOKEN = b'{"data": "stolen-origin-token"}'


def elsewhere_handle(connection: socket.socket, server: RawServer) -> None:
    """The other origin: records what reaches it, and would hand out a token."""
    server.received.append(read_head(connection))
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(TOKEN), TOKEN)
    )


@pytest.fixture
def origins() -> Iterator[tuple[RawServer, RawServer]]:
    elsewhere = RawServer(elsewhere_handle)

    def redirect(connection: socket.socket, server: RawServer) -> None:
        server.received.append(read_head(connection))
        location = f"http://127.0.0.1:{elsewhere.port}/api/v1/user/getUniqueId?canvas=-x"
        connection.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )

    service = RawServer(redirect)
    try:
        yield service, elsewhere
    finally:
        service.close()
        elsewhere.close()


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    AiChatOnline._tokens.clear()
    yield
    AiChatOnline._tokens.clear()


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
def test_grab_token_does_not_follow_a_redirect_to_another_origin(
    origins: tuple[RawServer, RawServer], kind: str
) -> None:
    service, elsewhere = origins

    async def main() -> str:
        session: aiohttp.ClientSession | httpx.AsyncClient
        session = aiohttp.ClientSession() if kind == "aiohttp" else httpx.AsyncClient()
        async with session:
            return await AiChatOnline.grab_token(
                session, base_url=f"http://127.0.0.1:{service.port}", retry_policy=fast(0)
            )

    with pytest.raises(APIStatusError) as info:
        asyncio.run(main())

    assert_ours(info.value)
    assert info.value.status_code == 302
    assert "redirect" in str(info.value)
    assert len(service.received) == 1
    assert elsewhere.received == []  # not a byte of the request went to the other origin
