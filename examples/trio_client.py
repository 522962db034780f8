"""The async client on trio: the same client, a nursery, and a deadline.

    python examples/trio_client.py        (needs trio: pip install trio)

Runs against ``AICHATONLINE_BASE_URL`` when it is set, else against the bundled local
server, started here: no network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import trio

from aichatonline import AsyncClient
from aichatonline.testing import LocalServer


@contextlib.contextmanager
def service() -> Iterator[str | None]:
    """The base URL to use: None (the client reads AICHATONLINE_BASE_URL), or a local server's."""
    if os.environ.get("AICHATONLINE_BASE_URL"):
        yield None
    else:
        with LocalServer(pieces=40, delay=0.01) as server:  # a long answer, to cut short
            yield server.base_url


async def main(base_url: str | None) -> None:
    answers: dict[str, str] = {}
    async with AsyncClient(base_url=base_url) as client:

        async def ask(question: str) -> None:
            answers[question] = await client.complete(question)

        async with trio.open_nursery() as nursery:
            for question in ("What is trio?", "What is a nursery?"):
                nursery.start_soon(ask, question)
        for question, answer in answers.items():
            print(f"{question} -> {answer}")

        # trio's own deadline stops a stream cleanly (its connection is closed).
        with trio.move_on_after(0.1) as scope:
            async with client.stream("Tell me a long story.") as stream:
                async for piece in stream:
                    print(piece, end="", flush=True)
        print(
            f"\n(stopped by the deadline: {scope.cancelled_caught}; {len(stream.text)} characters)"
        )


if __name__ == "__main__":
    with service() as url:
        trio.run(main, url)
