"""Issue 8, item 6: arguments are checked before any I/O.

A base URL that cannot be parsed (``http://[::1``), that carries ``\\r\\n`` or a space, a
port out of range, ``retry_policy="x"``, ``timeout="x"``, ``max_retries`` together with
``retry_policy``: each is an ``InvalidRequestError`` when the client is made (not a raw
``ExceptionGroup(OverflowError)`` or ``AttributeError`` at the first call), and the server
sees nothing. The constructors are keyword-only, and the attribute setters validate too.
(``base_url`` with credentials: ``test_hardening_secrets.py``; the CLI:
``test_hardening_cli.py``.)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aichatonline import AsyncClient, Client, InvalidRequestError, RetryPolicy
from tests import hostile

#: name -> the constructor's arguments, given the server the client must never reach.
BAD_ARGUMENTS: dict[str, Callable[[hostile.HostileServer], dict[str, object]]] = {
    "base-url-unclosed-ipv6": lambda server: {"base_url": "http://[::1"},
    "base-url-crlf": lambda server: {"base_url": f"{server.base_url}\r\nX-Injected: yes"},
    "base-url-space": lambda server: {"base_url": f"{server.base_url}/a b"},
    "base-url-port-99999": lambda server: {"base_url": "http://127.0.0.1:99999"},
    "retry-policy-str": lambda server: {"base_url": server.base_url, "retry_policy": "x"},
    "timeout-str": lambda server: {"base_url": server.base_url, "timeout": "x"},
    "max-retries-and-retry-policy": lambda server: {
        "base_url": server.base_url,
        "max_retries": 3,
        "retry_policy": RetryPolicy(max_retries=1),
    },
}


pytestmark = pytest.mark.usefixtures("isolated")


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_are_refused_at_construction_sync(case: str) -> None:
    with hostile.HostileServer(hostile.route()) as server, pytest.raises(InvalidRequestError):
        Client(**BAD_ARGUMENTS[case](server))  # type: ignore[arg-type]
    assert server.connections == 0


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
async def test_bad_arguments_are_refused_at_construction_async(
    anyio_backend: str, case: str
) -> None:
    with hostile.HostileServer(hostile.route()) as server, pytest.raises(InvalidRequestError):
        AsyncClient(**BAD_ARGUMENTS[case](server))  # type: ignore[arg-type]
    assert server.connections == 0


@pytest.mark.parametrize("kind", [Client, AsyncClient])
def test_constructors_are_keyword_only(kind: type[Client]) -> None:
    with pytest.raises(TypeError):
        kind("http://127.0.0.1:9")  # type: ignore[misc]


def _check_setters(client: Client | AsyncClient) -> None:
    with pytest.raises(InvalidRequestError):
        client.timeout = "x"  # type: ignore[assignment]
    with pytest.raises(InvalidRequestError):
        client.max_retries = -1
    with pytest.raises(InvalidRequestError):
        client.token = "a token\r\nX-Injected: yes"
    with pytest.raises(AttributeError):
        client.base_url = "http://127.0.0.1:1"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        client.proxy = "http://127.0.0.1:1"  # type: ignore[misc]


def test_setters_validate_sync() -> None:
    server = hostile.HostileServer(hostile.route())
    with server, Client(base_url=server.base_url) as client:
        _check_setters(client)
    assert server.connections == 0


@pytest.mark.anyio
async def test_setters_validate_async(anyio_backend: str) -> None:
    with hostile.HostileServer(hostile.route()) as server:
        async with AsyncClient(base_url=server.base_url) as client:
            _check_setters(client)
    assert server.connections == 0
