"""Fixtures shared by the test files: one definition each.

- ``anyio_backend``: every ``@pytest.mark.anyio`` test runs on asyncio and on trio.
- ``no_backoff``: retry back-off off, with the SDK's documented switch for test suites.
- ``isolated``: no proxy or base-URL variable from the machine reaches a test's clients
  (a module asks for it with ``pytestmark = pytest.mark.usefixtures("isolated")``).
- ``server``: a fresh local AiChatOnline server for the test. Not the package's own
  ``aichatonline_server`` fixture (``tests/test_pytest_plugin.py`` tests that one): this
  suite's tests choose their back-off themselves, and that fixture turns it off.
- ``shared_server``: one local server for a whole module (for files whose tests only read
  answers, or reset it themselves: a subprocess per test is slow enough already).
- ``paced``: the test's server, slowed down so that a client can leave mid-stream.

Hypothesis profiles: ``ci`` (the default: Hypothesis's usual 100 examples, no deadline,
since a test against a server meets the machine's load) and ``long``
(``pytest --hypothesis-profile long``: 5,000 examples a test, for the fuzz tests'
longer runs). Tests that set their own ``max_examples`` keep it in both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import aichatonline
from aichatonline.testing import LocalServer
from tests.faces import Api
from tests.helpers import clear_routing_env

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "long", max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")  # ``--hypothesis-profile long`` loads the other one after this


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """Retry back-off waits turned off for the test, with the SDK's switch for test suites."""
    with aichatonline.set_testing(True):
        yield


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the environment's proxies and base URL away from the test's clients."""
    clear_routing_env(monkeypatch)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A local AiChatOnline server, started for this test and stopped after it."""
    with LocalServer() as running:
        yield running


@pytest.fixture(scope="module")
def shared_server() -> Iterator[LocalServer]:
    """One local AiChatOnline server for every test of a module."""
    with LocalServer() as running:
        yield running


@pytest.fixture
def paced(server: LocalServer) -> LocalServer:
    """The test's server, with answers that take about two seconds (40 pieces, 50 ms apart)."""
    server.pieces, server.delay = 40, 0.05
    return server


# -- one test body for the blocking client and the async client (tests/faces.py) ------------


@pytest.fixture(params=["sync", "asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> str:
    """``sync``, ``asyncio`` or ``trio``."""
    return str(request.param)


@pytest.fixture
def api(flavor: str) -> Api:
    """The face of the SDK under test."""
    return Api(flavor)


@pytest.fixture
async def client(api: Api, server: LocalServer) -> AsyncIterator[Any]:
    """A client of the shared test server, closed after the test."""
    made = api.client(server)
    try:
        yield made
    finally:
        await api.close(made)
