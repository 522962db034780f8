"""Pytest plugin of ``aichatonline``: fixtures that run the local server for your tests.

Registered through the ``pytest11`` entry point, so pytest loads it in every run of every
project that has ``aichatonline`` installed; it therefore imports nothing at import time beyond
pytest itself, and loads the server only when a fixture is used.

- ``aichatonline_server``: a started ``LocalServer``, stopped after the test. While it runs,
  retries do not wait (``aichatonline.set_testing(True)``, as stamina's testing switch): a
  test of your code's handling of two 503s takes milliseconds, not seconds of back-off. Its
  options come from the ``aichatonline_server`` marker::

      @pytest.mark.aichatonline_server(pieces=3, delay=0.01)
      def test_slow_answers(aichatonline_server): ...

- ``aichatonline_server_factory``: starts more servers, each with its own options
  (``aichatonline_server_factory(pieces=3)``), all stopped after the test, back-off off.
- ``aichatonline_base_url``: the server's ``http://127.0.0.1:PORT``.
- ``aichatonline_env``: the server, with ``AICHATONLINE_BASE_URL`` pointing at it.

The server runs in a thread of its own, so the fixtures serve sync tests and async ones
alike (``@pytest.mark.anyio``, with anyio's pytest plugin, on asyncio and trio). To test a
back-off itself, ``with aichatonline.set_testing(False):`` turns the waits on again inside
the test.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from aichatonline.testing._server import LocalServer

MARKER = "aichatonline_server"
_MARKER_HELP = (
    f"{MARKER}(**options): how the {MARKER} fixture's LocalServer answers (pieces, "
    "piece_size, delay, token_ttl, require_token, record_requests, or options=ServerOptions)"
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so that ``--strict-markers`` runs accept it."""
    config.addinivalue_line("markers", _MARKER_HELP)


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keyword arguments of the closest ``aichatonline_server`` marker, checked by name."""
    from aichatonline.testing._options import ServerOptions

    marker = request.node.get_closest_marker(MARKER)
    if marker is None:
        return {}
    known = {field.name for field in dataclasses.fields(ServerOptions)} | {"options"}
    unknown = sorted(set(marker.kwargs) - known)
    if marker.args or unknown:
        given = ", ".join(unknown) if unknown else "positional arguments"
        names = ", ".join(sorted(known))
        pytest.fail(
            f"@pytest.mark.{MARKER} takes the server's options by name ({names}); got {given}",
            pytrace=False,
        )
    return dict(marker.kwargs)


@contextlib.contextmanager
def _no_backoff() -> Iterator[None]:
    import aichatonline

    with aichatonline.set_testing(True):
        yield


@pytest.fixture
def aichatonline_server(request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    """A started ``aichatonline.testing.LocalServer`` on loopback, stopped after the test.

    Retry back-off is off meanwhile (retries still happen, at once). Options come from the
    ``@pytest.mark.aichatonline_server(...)`` marker. Inject faults with
    ``aichatonline_server.inject(Fault(...))`` and inspect ``aichatonline_server.requests``.
    """
    from aichatonline.testing._server import LocalServer

    options = _marker_options(request)
    with _no_backoff(), LocalServer(**options) as server:
        yield server


@pytest.fixture
def aichatonline_server_factory() -> Iterator[Callable[..., LocalServer]]:
    """A function that starts a ``LocalServer`` with the options given to it.

    Every server it started is stopped after the test; retry back-off is off meanwhile.
    """
    from aichatonline.testing._server import LocalServer

    with _no_backoff(), contextlib.ExitStack() as servers:

        def start(**options: Any) -> LocalServer:
            return servers.enter_context(LocalServer(**options))

        yield start


@pytest.fixture
def aichatonline_base_url(aichatonline_server: LocalServer) -> str:
    """The base URL (``http://127.0.0.1:PORT``) of the ``aichatonline_server`` fixture."""
    return aichatonline_server.base_url


@pytest.fixture
def aichatonline_env(
    aichatonline_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> LocalServer:
    """The ``aichatonline_server`` fixture with ``AICHATONLINE_BASE_URL`` pointing at it.

    Clients created without an explicit base URL talk to the local server.
    """
    monkeypatch.setenv("AICHATONLINE_BASE_URL", aichatonline_server.base_url)
    return aichatonline_server
