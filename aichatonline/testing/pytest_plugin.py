"""Pytest plugin of ``aichatonline``: fixtures that run the local server.

Registered through the ``pytest11`` entry point, so pytest loads it in every run of every
project that has ``aichatonline`` installed; it therefore imports nothing at import time beyond
pytest itself, and loads the server only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from aichatonline.testing._server import LocalServer


@pytest.fixture
def aichatonline_server() -> Iterator[LocalServer]:
    """A started ``aichatonline.testing.LocalServer`` on loopback, stopped after the test.

    Inject faults with ``aichatonline_server.inject(Fault(...))`` and inspect
    ``aichatonline_server.requests``.
    """
    from aichatonline.testing._server import LocalServer

    with LocalServer() as server:
        yield server


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
