"""The blocking client: stream an answer, get one whole, handle the errors.

    python examples/sync_client.py

Runs against ``AICHATONLINE_BASE_URL`` when it is set (the real service, or the server of
``aichatonline serve``), else against the bundled local server, started here: no network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import aichatonline
from aichatonline import Client
from aichatonline.testing import LocalServer


@contextlib.contextmanager
def service() -> Iterator[str | None]:
    """The base URL to use: None (the client reads AICHATONLINE_BASE_URL), or a local server's."""
    if os.environ.get("AICHATONLINE_BASE_URL"):
        yield None
    else:
        with LocalServer(delay=0.01) as server:
            yield server.base_url


def main(base_url: str | None) -> None:
    with Client(base_url=base_url) as client:
        with client.stream("Hello! Who are you?") as stream:
            for piece in stream:
                print(piece, end="", flush=True)
        print(f"\n({len(stream.text)} characters, {stream.retries} retries)")

        messages = [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is AiChatOnline?"},
        ]
        print(client.complete(messages))

        try:
            client.complete("")  # refused before anything is sent
        except aichatonline.InvalidRequestError as exc:
            print(f"refused: {exc}")


if __name__ == "__main__":
    with service() as url:
        main(url)
