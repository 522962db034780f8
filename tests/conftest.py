"""Shared fixtures: the async backends every async test runs on.

The local AiChatOnline server fixtures (``aichatonline_server`` and friends)
come from the package's own pytest plugin, ``aichatonline.testing.pytest_plugin``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each ``@pytest.mark.anyio`` test on asyncio and on trio."""
    return str(request.param)
