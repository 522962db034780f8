"""The async client on uvloop, the event loop uvicorn picks when it is installed.

uvloop's transports are not ``asyncio.Transport`` subclasses; the SDK's asyncio backend
must not care (a gateway under ``uvicorn[standard]`` runs the client there).
"""

from __future__ import annotations

import pytest

from aichatonline import AsyncClient, StreamInterrupted
from aichatonline.testing import Fault, LocalServer

uvloop = pytest.importorskip("uvloop")


def test_streams_resume_and_fail_the_same_on_uvloop(no_backoff: None) -> None:
    async def main(server: LocalServer) -> None:
        async with AsyncClient(base_url=server.base_url, timeout=5) as client:
            assert await client.complete("Hi") == server.reply_for("Hi")
            server.inject(Fault(drop_after=3))
            stream = client.stream("Hi")
            assert "".join([piece async for piece in stream]) == server.reply_for("Hi")
            assert stream.retries == 1
            server.inject(Fault(drop_after=3), Fault(variant=True))
            pieces: list[str] = []

            async def drain() -> None:
                async for piece in client.stream("Hi"):
                    pieces.append(piece)

            with pytest.raises(StreamInterrupted) as info:
                await drain()
            assert info.value.partial == "".join(pieces)

    with LocalServer() as server:
        uvloop.run(main(server))
        assert server.wait_for(lambda s: s.open_connections == 0)
