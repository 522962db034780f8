"""Testing your own code with the package's pytest fixtures (no network, no waiting).

    python -m pytest examples/test_with_fixture.py

``aichatonline_server`` is a bundled server for one test, with retry back-off off; the
``aichatonline_server`` marker sets its options; ``aichatonline_env`` points
``AICHATONLINE_BASE_URL`` at it. Async tests need ``@pytest.mark.anyio``.
"""

from __future__ import annotations

import time

import pytest

from aichatonline import AsyncClient, Client, StreamInterrupted
from aichatonline.testing import Fault, LocalServer


def shout(client: Client, text: str) -> str:
    """The code under test: an answer, in capitals."""
    return client.complete(text).upper()


def test_shout(aichatonline_server: LocalServer) -> None:
    with Client(base_url=aichatonline_server.base_url) as client:
        assert shout(client, "Hi") == aichatonline_server.reply_for("Hi").upper()


def test_two_503s_cost_no_waiting(aichatonline_server: LocalServer) -> None:
    aichatonline_server.inject(Fault(status=503), Fault(status=503))
    started = time.monotonic()
    with Client(base_url=aichatonline_server.base_url) as client:
        assert shout(client, "Hi") == aichatonline_server.reply_for("Hi").upper()
    assert time.monotonic() - started < 0.5  # the default back-off would wait 1.5 s or more


@pytest.mark.aichatonline_server(pieces=5)
def test_a_diverging_resume_keeps_the_partial_text(aichatonline_server: LocalServer) -> None:
    aichatonline_server.inject(Fault(drop_after=2), Fault(variant=True))  # resent: differs
    received: list[str] = []
    client = Client(base_url=aichatonline_server.base_url)
    with client, pytest.raises(StreamInterrupted) as info:
        received.extend(piece for piece in client.stream("Hi"))  # the pieces until it broke
    assert info.value.partial == "".join(received)
    assert received == aichatonline_server.pieces_for("Hi")[:2]


def test_code_that_reads_the_environment(aichatonline_env: LocalServer) -> None:
    with Client() as client:  # AICHATONLINE_BASE_URL points at the fixture's server
        assert shout(client, "Hi") == aichatonline_env.reply_for("Hi").upper()


@pytest.mark.anyio
async def test_async_code(aichatonline_server: LocalServer) -> None:
    async with AsyncClient(base_url=aichatonline_server.base_url) as client:
        assert await client.complete("Hi") == aichatonline_server.reply_for("Hi")
