"""Fixtures shared by the test files: one definition each.

- ``anyio_backend``: every ``@pytest.mark.anyio`` test runs on asyncio and on trio.
- ``no_backoff``: retry back-off off, with the SDK's documented switch for test suites.
- ``isolated``: no proxy or base-URL variable from the machine reaches a test's clients
  (a module asks for it with ``pytestmark = pytest.mark.usefixtures("isolated")``).
- ``server``: a fresh local AiChatOnline server for the test. Not the package's own
  ``aichatonline_server`` fixture (``tests/test_pytest_plugin.py`` tests that one): this
  suite's tests choose their back-off themselves, and that fixture turns it off.
- ``shared_server``: one local server for a whole module (a module-scoped fixture, such as a
  gateway in front of it, can stand on it). ``pytestmark =
  pytest.mark.shared_server(pieces=12)`` gives it ``LocalServer`` options.
- ``upstream``: the module's ``shared_server``, reset before and after the test (no recorded
  request, no queued fault), for tests that count what it received.
- ``paced``: the test's server, slowed down so that a client can leave mid-stream.
- ``flavor``, ``api``, ``client``: one test body for the three faces of the SDK (the
  blocking ``Client``, the ``AsyncClient`` on asyncio and on trio): ``tests/faces.py``.

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

#: Environment variables that route traffic through a proxy or to another server.
ROUTING_ENV = (
    "AICHATONLINE_BASE_URL",
    "AICHATONLINE_PROXY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)

settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "long", max_examples=5_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")  # ``--hypothesis-profile long`` loads the other one after this


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shared_server(**options): the LocalServer options of the module's shared_server"
    )


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
    for name in ROUTING_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A local AiChatOnline server, started for this test and stopped after it."""
    with LocalServer() as running:
        yield running


@pytest.fixture(scope="module")
def shared_server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    """One local AiChatOnline server for every test of a module (options: the module's
    ``shared_server`` marker)."""
    marker = request.node.get_closest_marker("shared_server")
    with LocalServer(**(marker.kwargs if marker else {})) as running:
        yield running


@pytest.fixture
def upstream(shared_server: LocalServer) -> Iterator[LocalServer]:
    """The module's shared server, reset before and after the test."""
    shared_server.reset()
    yield shared_server
    shared_server.reset()


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
    """A client of the test's server, closed after the test."""
    made = api.client(server)
    try:
        yield made
    finally:
        await api.close(made)
