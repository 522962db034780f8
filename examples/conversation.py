"""A conversation: the history goes with every turn, under one conversation id.

    python examples/conversation.py

Runs against ``AICHATONLINE_BASE_URL`` when it is set, else against the bundled local
server, started here: no network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from aichatonline import Client
from aichatonline.testing import LocalServer


@contextlib.contextmanager
def service() -> Iterator[str | None]:
    """The base URL to use: None (the client reads AICHATONLINE_BASE_URL), or a local server's."""
    if os.environ.get("AICHATONLINE_BASE_URL"):
        yield None
    else:
        with LocalServer() as server:
            yield server.base_url


def main(base_url: str | None) -> None:
    with Client(base_url=base_url) as client:
        chat = client.conversation(system="Answer briefly.")
        print(chat.complete("What is HTTP?"))
        for piece in chat.stream("And HTTPS?"):
            print(piece, end="", flush=True)
        print()
        print(chat)  # <Conversation conversation_id=... system='Answer briefly.' messages=4>

        removed = chat.undo()  # take the last exchange back
        print(f"took back {len(removed)} messages; {len(chat.history)} left")
        for message in chat.history:
            print(f"  {message['role']}: {message['content'][:40]}")

        chat.reset()  # forget it all (a new conversation id; the system message stays)
        print(chat)


if __name__ == "__main__":
    with service() as url:
        main(url)
