"""The async client on asyncio: several questions at once on one client, and a stream.

    python examples/asyncio_client.py

Runs against ``AICHATONLINE_BASE_URL`` when it is set, else against the bundled local
server, started here: no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

from aichatonline import AsyncClient
from aichatonline.testing import LocalServer

QUESTIONS = ["What is HTTP?", "What is TLS?", "What is DNS?"]


@contextlib.contextmanager
def service() -> Iterator[str | None]:
    """The base URL to use: None (the client reads AICHATONLINE_BASE_URL), or a local server's."""
    if os.environ.get("AICHATONLINE_BASE_URL"):
        yield None
    else:
        with LocalServer(delay=0.01) as server:
            yield server.base_url


async def main(base_url: str | None) -> None:
    async with AsyncClient(base_url=base_url) as client:
        # One token fetch is shared by the three first calls; each is one round trip.
        answers = await asyncio.gather(*(client.complete(q) for q in QUESTIONS))
        for question, answer in zip(QUESTIONS, answers, strict=True):
            print(f"{question} -> {answer}")

        async with client.stream("Tell me a story.") as stream:
            async for piece in stream:
                print(piece, end="", flush=True)
        print(f"\n({len(stream.text)} characters)")


if __name__ == "__main__":
    with service() as url:
        asyncio.run(main(url))
